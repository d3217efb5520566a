"""Synthetic corpora (`posebh data synth`, `train: synth:KIND`): deterministic, exact keypoints, loadable by the
coco-custom converter, and what configs/smoke.yaml trains on (no ../shared needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from posebh_hf.cli import main
from posebh_hf.data.synth import KINDS, SynthSpec, ensure_synth_source, parse_synth_source, write_synth
from posebh_hf.skeletons import Skeleton

REPO = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    a = write_synth(tmp_path / "a", train=3, val=1, seed=0, size=(96, 128))
    write_synth(tmp_path / "b", train=3, val=1, seed=0, size=(96, 128))
    write_synth(tmp_path / "c", train=3, val=1, seed=1, size=(96, 128))
    assert set(a) == set(KINDS) and a["bird"]["val"] == tmp_path / "a" / "bird" / "bird_val.json"
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    differ = [k for k, v in _digest(tmp_path / "a").items() if v != _digest(tmp_path / "c")[k]]
    assert sum(k.endswith(".png") for k in differ) == 3 * 4  # every image differs for another seed
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("kind", list(KINDS))
def test_keypoints_are_exact_inside_and_the_category_is_a_valid_skeleton(tmp_path: Path, kind: str) -> None:
    files = write_synth(tmp_path, [kind], train=6, val=2, seed=3, size=(120, 160))[kind]
    doc = json.loads(files["train"].read_text())
    figure = KINDS[kind]
    skeleton = Skeleton.from_coco_category(doc["categories"][0])
    assert tuple(skeleton.keypoint_names) == figure.keypoints and len(skeleton.flip_pairs) == len(figure.flip_pairs)
    assert len(doc["images"]) == 6 and len(json.loads(files["val"].read_text())["images"]) == 2
    from PIL import Image

    for image, ann in zip(doc["images"], doc["annotations"], strict=True):
        assert ann["image_id"] == image["id"] and (image["width"], image["height"]) == (120, 160)
        assert Image.open(files["train"].parent / image["file_name"]).size == (120, 160)
        k = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
        assert k.shape == (len(figure.keypoints), 3) and (k[:, 2] == 2).all()
        assert (k[:, 0] >= 0).all() and (k[:, 0] < 120).all() and (k[:, 1] >= 0).all() and (k[:, 1] < 160).all()
        x, y, w, h = ann["bbox"]
        assert x <= k[:, 0].min() and y <= k[:, 1].min() and k[:, 0].max() <= x + w and k[:, 1].max() <= y + h
        assert w * h < 0.95 * 120 * 160 and w > 10 and h > 10
        # distinct keypoints lie apart (a figure, not a blob): median nearest-neighbour gap over 1.5 % of the side
        gaps = np.linalg.norm(k[:, None, :2] - k[None, :, :2], axis=-1) + np.eye(len(k)) * 1e9
        assert np.median(gaps.min(axis=1)) > 0.015 * 160


def test_figure_is_drawn_where_its_keypoints_are(tmp_path: Path) -> None:
    # The person's head disc is centred on the head keypoint: its pixels there differ from the background model
    # (an image drawn with the same seed minus the figure is not available, so compare with the far corner).
    from PIL import Image

    files = write_synth(tmp_path, ["person"], train=4, val=0, seed=0, size=(96, 128))["person"]
    doc = json.loads(files["train"].read_text())
    for image, ann in zip(doc["images"], doc["annotations"], strict=True):
        pixels = np.asarray(Image.open(files["train"].parent / image["file_name"]).convert("RGB"), dtype=float)
        hx, hy = (int(round(v)) for v in ann["keypoints"][:2])
        patch = pixels[max(hy - 1, 0):hy + 2, max(hx - 1, 0):hx + 2].reshape(-1, 3)
        assert patch.std(axis=0).max() < 12.0  # flat colour: the inside of the drawn disc, not noisy background


def test_synth_source_strings() -> None:
    assert parse_synth_source("synth:bird") == SynthSpec("bird")
    assert parse_synth_source("synth:person?train=5&val=0&seed=2&size=64x80") == SynthSpec("person", 5, 0, 2,
                                                                                          (64, 80))
    for bad, message in (("synth:dragon", "unknown synthetic kind"), ("synth:bird?n=3", "unknown option"),
                         ("synth:bird?train=x", "must be integers"), ("synth:bird?train=0", "train >= 1"),
                         ("bird", "not a synthetic source")):
        with pytest.raises(ValueError, match=message):
            parse_synth_source(bad)


def test_ensure_synth_source_writes_once_and_waits_for_the_main_process(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="main process writes it"):
        ensure_synth_source("synth:bird?train=2&val=1", "train", tmp_path, build=False)
    path = ensure_synth_source("synth:bird?train=2&val=1", "train", tmp_path)
    stamp = path.stat().st_mtime_ns
    assert ensure_synth_source("synth:bird?train=2&val=1", "val", tmp_path, build=False).is_file()
    assert ensure_synth_source("synth:bird?train=2&val=1", "train", tmp_path).stat().st_mtime_ns == stamp


def test_cli_writes_a_corpus_that_data_build_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--kinds", "quadruped", "--train", "3", "--val",
                 "1", "--size", "96x128"]) == 0
    assert "quadruped_train.json (3 images)" in capsys.readouterr().out
    ann = tmp_path / "s" / "quadruped" / "quadruped_train.json"
    assert main(["data", "build", "--format", "coco-custom", "--annotations", str(ann), "--images",
                 str(ann.parent), "--out", str(tmp_path / "ds")]) == 0
    from posebh_hf.data import load_pose_dataset

    dataset, skeleton = load_pose_dataset(tmp_path / "ds")
    assert len(dataset) == 3 and skeleton.num_keypoints == 14
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--kinds", "dragon"]) == 2
    assert "unknown synthetic kind" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--size", "big"]) == 2
    assert "--size must look like WxH" in capsys.readouterr().err


def test_smoke_config_uses_generated_data_only() -> None:
    from posebh_hf.training import load_train_config

    cfg = load_train_config(REPO / "configs" / "smoke.yaml")
    assert [d.train for d in cfg.data.datasets] == ["synth:person", "synth:quadruped", "synth:bird"]
    assert all(d.val == d.train for d in cfg.data.datasets)
    rows = sum(len(KINDS[d.train.split(":")[1]].keypoints) for d in cfg.data.datasets)
    assert cfg.model.num_cluster_prototypes <= rows
    assert "../shared" not in (REPO / "configs" / "smoke.yaml").read_text()
