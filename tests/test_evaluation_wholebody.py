"""`coco_wholebody`: six OKS evaluations (body, foot, face, hands, whole body) against pycocotools run directly
on sliced keypoints, with xtcocotools' conventions spelled out in the reference below."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from test_evaluation_common import (
    WHOLEBODY_FIELDS,
    coco_from_dict,
    cocoeval_keypoints,
    full_keypoints,
    gt_as_predictions,
    load,
    perturbed_predictions,
)

from posebh_hf.evaluation import COCO_STAT_NAMES, EvaluationInputError, evaluate
from posebh_hf.skeletons import get_skeleton

PARTS = {"body": (0, 17), "foot": (17, 23), "face": (23, 91), "lefthand": (91, 112), "righthand": (112, 133),
         "wholebody": (0, 133)}


def _reference(gt: dict, preds: list[dict]) -> dict[str, float]:
    """Per part: a GT JSON with that slice as 'keypoints' and num_keypoints = its labelled count, predictions with
    that slice, and (xtcocotools reads loadRes' area from the 17 body keypoints) the detection area replaced by
    the body-keypoint extent. Predictions whose slice scores are all zero would be dropped; ours are all > 0."""
    sigmas = get_skeleton("coco_wholebody").oks_sigmas()
    out = {}
    for part, (a, b) in PARTS.items():
        part_gt = json.loads(json.dumps(gt))
        for ann in part_gt["annotations"]:
            k = full_keypoints(ann)[a:b]
            ann["keypoints"] = k.reshape(-1).tolist()
            ann["num_keypoints"] = int((k[:, 2] > 0).sum())
            for field in WHOLEBODY_FIELDS:
                ann.pop(field, None)
        coco = coco_from_dict(part_gt)
        part_preds = []
        for p in preds:
            k = np.reshape(p["keypoints"], (-1, 3))
            body = k[:17]
            area = (body[:, 0].max() - body[:, 0].min()) * (body[:, 1].max() - body[:, 1].min())
            part_preds.append(dict(p, keypoints=k[a:b].reshape(-1).tolist(), body_area=float(area)))
        with contextlib.redirect_stdout(io.StringIO()):
            dets = coco.loadRes(part_preds)
        for ann in dets.dataset["annotations"]:
            ann["area"] = ann["body_area"]
        ev = cocoeval_keypoints(coco, dets, sigmas[a:b])
        out.update({f"{part}/{n}": float(v) for n, v in zip(COCO_STAT_NAMES, ev.stats, strict=True)})
    return out


def test_ground_truth_against_itself(shared_data):
    gt_file = shared_data / "real" / "coco_wholebody" / "test_coco_wholebody.json"
    metrics = evaluate("coco_wholebody", gt_file, gt_as_predictions(load(gt_file)))
    for part in PARTS:
        assert metrics[f"{part}/AP"] == pytest.approx(1.0), part
        assert metrics[f"{part}/AR"] == pytest.approx(1.0), part
    assert metrics["AP"] == metrics["wholebody/AP"]


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_pycocotools_per_part(shared_data, seed):
    gt_file = shared_data / "real" / "coco_wholebody" / "test_coco_wholebody.json"
    gt = load(gt_file)
    for noise in (0.005, 0.02):
        preds = perturbed_predictions(gt, seed=seed, noise=noise)
        ours = evaluate("coco_wholebody", gt_file, preds)
        ref = _reference(gt, preds)
        for key, value in ref.items():
            assert ours[key] == pytest.approx(value, abs=1e-6), key
        assert any(0 < ours[f"{p}/AP"] < 1 for p in PARTS)


def test_split_prediction_fields_equal_flat(shared_data):
    """mmpose writes keypoints (body) + foot_kpts/face_kpts/...: the same numbers as flat 133 x 3."""
    gt_file = shared_data / "real" / "coco_wholebody" / "test_coco_wholebody.json"
    preds = perturbed_predictions(load(gt_file), seed=3, noise=0.01)
    split = []
    for p in preds:
        k = list(p["keypoints"])
        rec = dict(p, keypoints=k[:51])
        start = 51
        for field, n in zip(WHOLEBODY_FIELDS, (6, 68, 21, 21), strict=True):
            rec[field] = k[start:start + 3 * n]
            start += 3 * n
        split.append(rec)
    assert evaluate("coco_wholebody", gt_file, split) == evaluate("coco_wholebody", gt_file, preds)


def test_body_only_predictions_are_refused(shared_data):
    gt_file = shared_data / "real" / "coco_wholebody" / "test_coco_wholebody.json"
    preds = perturbed_predictions(load(gt_file), seed=0)
    preds[0]["keypoints"] = preds[0]["keypoints"][:51]
    with pytest.raises(EvaluationInputError, match="51 values, expected 399"):
        evaluate("coco_wholebody", gt_file, preds)
