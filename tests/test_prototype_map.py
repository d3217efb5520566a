"""Prototype maps (`posebh viz prototypes`): similarity, nearest-keypoint table, 2D projection, the picture."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from posebh_hf.cli import main
from posebh_hf.modeling import PoseBHConfig, PoseBHForPoseEstimation
from posebh_hf.visualize.prototype_map import (
    collect_prototypes,
    embed_2d,
    keypoint_similarity,
    nearest_keypoints,
    nearest_table_markdown,
    render_prototype_map,
)

SHARED = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee")


@pytest.fixture(scope="module")
def aligned() -> PoseBHForPoseEstimation:
    """coco + aic, where aic's prototypes of six body joints are coco's (negated: |cos| must still match them)."""
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco", "aic"])).eval()
    coco, aic = model.skeleton("coco"), model.skeleton("aic")
    coco_rows = model.keypoint_prototypes.prototypes[model.prototype_rows("coco")]
    aic_rows = model.keypoint_prototypes.prototypes[model.prototype_rows("aic")].clone()
    for name in SHARED:
        aic_rows[aic.index(name)] = -coco_rows[coco.index(name)].flip(0)  # other slot order, opposite sign
    model.set_skeleton_prototypes("aic", aic_rows)
    return model


def test_keypoint_similarity_matches_a_loop():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 2, 5))
    b = rng.normal(size=(4, 2, 5))
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    for mode, f in (("abs_cosine", abs), ("cosine", lambda v: v)):
        expected = np.array([[max(f(float(a[i, m] @ b[j, n])) for m in range(2) for n in range(2))
                              for j in range(4)] for i in range(3)])
        np.testing.assert_allclose(keypoint_similarity(a, b, mode), expected, atol=1e-12)
    np.testing.assert_allclose(keypoint_similarity(a[:1], -a[:1], "abs_cosine"), [[1.0]], atol=1e-12)
    assert keypoint_similarity(a[:1], -a[:1], "cosine")[0, 0] < 1.0
    with pytest.raises(ValueError, match="unknown similarity"):
        keypoint_similarity(a, b, "dot")


def test_nearest_table_finds_the_aligned_keypoints(aligned: PoseBHForPoseEstimation):
    protos = collect_prototypes(aligned)
    assert protos.skeletons == ("coco", "aic") and len(protos.names) == 17 + 14
    table = nearest_keypoints(protos, top_k=2)
    for name in SHARED:
        best = table["coco"][name]["aic"][0]
        assert best["keypoint"] == name and best["similarity"] == pytest.approx(1.0, abs=1e-6)
        assert table["aic"][name]["coco"][0]["keypoint"] == name
        assert len(table["coco"][name]["aic"]) == 2 and table["coco"][name]["aic"][1]["similarity"] < 0.99
    markdown = nearest_table_markdown(table)
    assert "| left_hip | left_hip (1.00); " in markdown and markdown.startswith("### coco")
    with pytest.raises(ValueError, match="no prototypes for \\['bee'\\]"):
        collect_prototypes(aligned, ["coco", "bee"])


def test_mds_recovers_points_on_a_circle():
    # unit prototypes in a plane (all M equal): the chord distances are Euclidean in 2D, so MDS is exact
    angles = np.linspace(0.0, 1.5, 6)
    vectors = np.zeros((6, 2, 4))
    vectors[:, :, 0], vectors[:, :, 1] = np.cos(angles)[:, None], np.sin(angles)[:, None]
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco"], embed_dim=4, num_prototypes=2))
    protos = collect_prototypes(model)
    protos = type(protos)(vectors, ("s",) * 6, tuple("abcdef"), ("s",), "cosine")
    coords = embed_2d(protos, "mds")
    got = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    want = np.linalg.norm(vectors[:, None, 0] - vectors[None, :, 0], axis=-1)
    np.testing.assert_allclose(got, want, atol=1e-9)


def _tsne_or_skip() -> None:
    """The t-SNE path needs scikit-learn (the `viz` extra); its tests skip with the install line without it."""
    pytest.importorskip("sklearn.manifold", reason="t-SNE maps need scikit-learn: pip install 'posebh-hf[viz]'")


def test_tsne_is_deterministic_and_keeps_aligned_keypoints_together(aligned: PoseBHForPoseEstimation):
    # Properties that hold for any scikit-learn version, not its exact coordinates: the same seed gives the same
    # map; keypoints with identical prototypes (distance 0) land nearer than almost every other pair.
    _tsne_or_skip()
    protos = collect_prototypes(aligned)
    coords = embed_2d(protos, "tsne", seed=0)
    assert coords.shape == (31, 2) and np.isfinite(coords).all()
    np.testing.assert_array_equal(coords, embed_2d(protos, "tsne", seed=0))
    np.testing.assert_allclose(coords.mean(axis=0), 0.0, atol=1e-6)
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    pairs = distances[np.triu_indices(len(coords), 1)]
    coco, aic = aligned.skeleton("coco"), aligned.skeleton("aic")
    aligned_d = np.array([distances[coco.index(name), 17 + aic.index(name)] for name in SHARED])
    assert aligned_d.mean() < 0.25 * np.median(pairs)        # measured: 7.7 vs a median of 50 (sklearn 1.9)
    assert all((pairs < d).mean() < 0.05 for d in aligned_d)  # each nearer than 95 % of all pairs (measured < 1.1 %)
    image = render_prototype_map(protos, coords, title="test", size=600)
    assert image.shape == (int(600 * 0.75) + 60, 600 + 260, 3) and image.dtype == np.uint8
    assert (image < 250).any(axis=-1).mean() > 0.01  # something was drawn


def test_without_scikit_learn_tsne_names_the_extra_and_mds_still_works(
        aligned: PoseBHForPoseEstimation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    from posebh_hf.visualize.prototype_map import tsne_available

    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now raises ImportError
    assert not tsne_available()
    protos = collect_prototypes(aligned)
    with pytest.raises(ImportError, match=r"pip install 'posebh-hf\[viz\]'"):
        embed_2d(protos, "tsne")
    assert embed_2d(protos, "mds").shape == (31, 2)
    aligned.save_pretrained(tmp_path / "model")
    assert main(["viz", "prototypes", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'posebh-hf[viz]'" in err and "--method mds" in err and "Traceback" not in err
    assert not (tmp_path / "m.png").exists()
    assert main(["viz", "prototypes", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "m.png"),
                 "--method", "mds"]) == 0
    assert (tmp_path / "m.png").is_file()


def test_cli_writes_the_map_and_the_table(aligned: PoseBHForPoseEstimation, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]):
    _tsne_or_skip()
    model = copy.deepcopy(aligned)
    from posebh_hf.skeletons import Skeleton

    mouse = Skeleton.from_dict({"name": "mouse4", "keypoints": ["snout", "left_ear", "right_ear", "tail_base"]})
    model.add_prototype_skeleton(mouse, F.normalize(torch.randn(4, 3, 64), dim=-1))
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "maps" / "map.png"
    assert main(["viz", "prototypes", "--model", str(tmp_path / "model"), "--out", str(out), "--format", "json",
                 "--table", str(tmp_path / "nearest.json")]) == 0
    assert Image.open(out).size == (1400 + 260, int(1400 * 0.75) + 60)
    table = json.loads((tmp_path / "nearest.json").read_text())
    assert set(table) == {"coco", "aic", "mouse4"} and set(table["mouse4"]["snout"]) == {"coco", "aic"}
    assert table["coco"]["right_knee"]["aic"][0]["keypoint"] == "right_knee"
    assert main(["viz", "prototypes", "--model", str(tmp_path / "model"), "--skeletons", "coco", "aic", "--out",
                 str(tmp_path / "two.png"), "--method", "mds", "--top-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert "### aic" in printed and "| right_shoulder | right_shoulder (1.00);" in printed
    assert main(["viz", "prototypes", "--model", str(tmp_path / "model"), "--skeletons", "bee", "--out",
                 str(tmp_path / "x.png")]) == 2
    assert "no prototypes for ['bee']" in capsys.readouterr().err


def test_links_join_exactly_the_aligned_pairs(aligned: PoseBHForPoseEstimation):
    from posebh_hf.visualize.prototype_map import _mutual_nearest

    protos = collect_prototypes(aligned)
    coco, aic = aligned.skeleton("coco"), aligned.skeleton("aic")
    expected = {(coco.index(n), 17 + aic.index(n)) for n in SHARED}
    assert set(_mutual_nearest(protos, threshold=0.99)) == expected
    assert expected < set(_mutual_nearest(protos, threshold=0.0))  # random pairs are mutual nearest too, below 0.99
