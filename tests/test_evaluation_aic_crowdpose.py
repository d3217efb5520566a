"""`aic` and `crowdpose`: xtcocotools' use_area=False / keypoints_crowd, checked against pycocotools run directly
and against a literal transcription of xtcocotools' OKS formula."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_evaluation_common import (
    coco_from_dict,
    gt_as_predictions,
    load,
    perturbed_predictions,
    pycocotools_eval,
)

from posebh_hf.evaluation import COCO_STAT_NAMES, EvaluationInputError, evaluate, oks_matrix
from posebh_hf.evaluation.oks import oks_pairs
from posebh_hf.skeletons import get_skeleton


def _xtcocotools_oks_use_area_false(gt_ann: dict, dt_kpts: list[float], sigmas: np.ndarray) -> float:
    """xtcocotools COCOeval.computeOks for one pair with use_area=False, transcribed literally."""
    vars_ = (sigmas * 2) ** 2
    k = len(sigmas)
    g = np.array(gt_ann["keypoints"])
    xg, yg, vg = g[0::3], g[1::3], g[2::3]
    k1 = np.count_nonzero(vg > 0)
    bb = gt_ann["bbox"]
    x0, x1 = bb[0] - bb[2], bb[0] + bb[2] * 2
    y0, y1 = bb[1] - bb[3], bb[1] + bb[3] * 2
    d = np.array(dt_kpts)
    xd, yd = d[0::3], d[1::3]
    if k1 > 0:
        dx, dy = xd - xg, yd - yg
    else:
        z = np.zeros(k)
        dx = np.max((z, x0 - xd), axis=0) + np.max((z, xd - x1), axis=0)
        dy = np.max((z, y0 - yd), axis=0) + np.max((z, yd - y1), axis=0)
    tmparea = gt_ann["bbox"][3] * gt_ann["bbox"][2] * 0.53
    e = (dx**2 + dy**2) / vars_ / (tmparea + np.spacing(1)) / 2
    if k1 > 0:
        e = e[vg > 0]
    return float(np.sum(np.exp(-e)) / e.shape[0])


def _boxed(gt: dict) -> dict:
    """The GT as pycocotools sees xtcocotools' use_area=False: area := h * w * 0.53, iscrowd default 0."""
    out = json.loads(json.dumps(gt))
    for ann in out["annotations"]:
        ann["area"] = ann["bbox"][3] * ann["bbox"][2] * 0.53
        ann.setdefault("iscrowd", 0)
    return out


def test_aic_oks_matches_the_xtcocotools_formula(shared_data):
    gt = load(shared_data / "real" / "aic" / "test_aic.json")
    sigmas = get_skeleton("aic").oks_sigmas()
    preds = perturbed_predictions(gt, seed=5, noise=0.01)
    for img in gt["images"]:
        gts = [a for a in gt["annotations"] if a["image_id"] == img["id"]]
        dts = [p for p in preds if p["image_id"] == img["id"]]
        ours = oks_matrix(np.array([np.reshape(p["keypoints"], (-1, 3))[:, :2] for p in dts]),
                          np.array([np.reshape(a["keypoints"], (-1, 3)) for a in gts]),
                          np.array([a["bbox"] for a in gts], float),
                          np.array([a["bbox"][3] * a["bbox"][2] * 0.53 for a in gts]), sigmas)
        ref = np.array([[_xtcocotools_oks_use_area_false(a, p["keypoints"], sigmas) for a in gts] for p in dts])
        np.testing.assert_array_equal(ours, ref)
        d_idx, g_idx = np.repeat(np.arange(len(dts)), len(gts)), np.tile(np.arange(len(gts)), len(dts))
        batched = oks_pairs(np.array([np.reshape(p["keypoints"], (-1, 3))[:, :2] for p in dts]),
                            np.array([np.reshape(a["keypoints"], (-1, 3)) for a in gts]),
                            np.array([a["bbox"] for a in gts], float),
                            np.array([a["bbox"][3] * a["bbox"][2] * 0.53 for a in gts]), sigmas, d_idx, g_idx)
        np.testing.assert_array_equal(batched.reshape(len(dts), len(gts)), ref)  # the evaluator's batched path


def test_aic_ground_truth_against_itself(shared_data):
    gt_file = shared_data / "real" / "aic" / "test_aic.json"
    metrics = evaluate("aic", gt_file, gt_as_predictions(load(gt_file)))
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aic_equals_pycocotools_with_box_area(shared_data, seed):
    gt_file = shared_data / "real" / "aic" / "test_aic.json"
    gt = load(gt_file)
    assert "area" not in gt["annotations"][0]  # the real AIC layout: no area, no iscrowd
    sigmas = get_skeleton("aic").oks_sigmas()
    for noise in (0.002, 0.005, 0.01):
        preds = perturbed_predictions(gt, seed=seed, noise=noise)
        ref = pycocotools_eval(coco_from_dict(_boxed(gt)), preds, sigmas).stats
        ours = evaluate("aic", gt_file, preds)
        np.testing.assert_allclose([ours[n] for n in COCO_STAT_NAMES], ref, atol=1e-6)


def _crowd_gt(shared_data, tmp_path, indices: list[float] | None) -> tuple[dict, object]:
    gt = load(shared_data / "real" / "crowdpose" / "test_crowdpose.json")
    if indices is not None:  # spread the two images over the groups so that every branch is used
        for img, c in zip(gt["images"], indices, strict=True):
            img["crowdIndex"] = c
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(gt))
    return gt, path


def _crowd_reference(gt: dict, preds: list[dict]) -> dict[str, float]:
    """pycocotools directly: use_area=False areas, maxDets 20 stats, then the crowd-index groups as
    xtcocotools' get_type_result(first=0.2, second=0.8): mean of precision[..., area 'all', :], rounded."""
    sigmas = get_skeleton("crowdpose").oks_sigmas()
    coco = coco_from_dict(_boxed(gt))
    stats = pycocotools_eval(coco, preds, sigmas).stats
    out = dict(zip(["AP", "AP50", "AP75", "AR", "AR50", "AR75"], [stats[i] for i in (0, 1, 2, 5, 6, 7)],
                   strict=True))
    groups = {"AP(E)": lambda c: c < 0.2, "AP(M)": lambda c: 0.2 <= c < 0.8, "AP(H)": lambda c: c >= 0.8}
    for key, inside in groups.items():
        ids = [img["id"] for img in gt["images"] if inside(img["crowdIndex"])]
        if not ids:
            out[key] = -1.0
            continue
        precision = pycocotools_eval(coco, preds, sigmas, img_ids=ids).eval["precision"]
        out[key] = round(float(np.mean(precision[:, :, :, 0, :])), 4)
    return out


@pytest.mark.parametrize("indices", [None, [0.05, 0.9], [0.2, 0.8]])
def test_crowdpose_ground_truth_against_itself(shared_data, tmp_path, indices):
    gt, path = _crowd_gt(shared_data, tmp_path, indices)
    metrics = evaluate("crowdpose", path, gt_as_predictions(gt))
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)
    expected = _crowd_reference(gt, gt_as_predictions(gt))
    for key in ("AP(E)", "AP(M)", "AP(H)"):
        assert metrics[key] == expected[key]
        assert metrics[key] in (1.0, -1.0)  # a group is perfect, or empty (-1 like xtcocotools)


@pytest.mark.parametrize("indices", [None, [0.05, 0.9], [0.1, 0.5]])
@pytest.mark.parametrize("seed", [0, 1])
def test_crowdpose_equals_direct_formula(shared_data, tmp_path, indices, seed):
    gt, path = _crowd_gt(shared_data, tmp_path, indices)
    for noise in (0.01, 0.03):
        preds = perturbed_predictions(gt, seed=seed, noise=noise)
        ours = evaluate("crowdpose", path, preds)
        ref = _crowd_reference(gt, preds)
        assert set(ours) == set(ref)
        for key, value in ref.items():
            assert ours[key] == pytest.approx(value, abs=1e-6), key


def test_crowdpose_needs_crowd_index(shared_data, tmp_path):
    gt = load(shared_data / "real" / "crowdpose" / "test_crowdpose.json")
    del gt["images"][0]["crowdIndex"]
    with pytest.raises(EvaluationInputError, match="crowdIndex"):
        evaluate("crowdpose", gt, perturbed_predictions(gt, 0))
