"""The `evaluate` metric (metrics/posebh_keypoints) gives exactly what `posebh_hf.evaluation.evaluate` gives on the
real COCO, AP-10K, MPII and InterHand samples, loaded offline from its path with add_batch / compute."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import pytest
from conftest import REPO_ROOT
from test_evaluation_common import load, perturbed_predictions
from test_evaluation_pck import _interhand_gt, _predictions

from posebh_hf.evaluation import EvaluationInputError
from posebh_hf.evaluation import evaluate as plain_evaluate

evaluate = pytest.importorskip("evaluate", reason="needs the optional metrics extra (pip install -e '.[metrics]')")

METRIC_PATH = REPO_ROOT / "metrics" / "posebh_keypoints"


@pytest.fixture(scope="module")
def metric():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest: loading from the path needs no network
    return evaluate.load(str(METRIC_PATH))


def _coco_examples(gt: dict, preds: list[dict]) -> tuple[list[dict], list[dict]]:
    """One example per image of the ground truth, instances in file order."""
    refs = {img["id"]: {"image_id": img["id"], "keypoints": [], "bboxes": [], "areas": [], "iscrowd": [],
                        "head_boxes": [], "category_ids": []} for img in gt["images"]}
    for ann in gt["annotations"]:
        ref = refs[ann["image_id"]]
        ref["keypoints"].append([float(v) for v in ann["keypoints"]])
        ref["bboxes"].append([float(v) for v in ann["bbox"]])
        if "area" in ann:
            ref["areas"].append(float(ann["area"]))
        ref["iscrowd"].append(int(ann.get("iscrowd", 0)))
        ref["category_ids"].append(int(ann.get("category_id", 1)))
    out = {i: {"image_id": i, "keypoints": [], "scores": [], "category_ids": []} for i in refs}
    for p in preds:
        out[p["image_id"]]["keypoints"].append(list(p["keypoints"]))
        out[p["image_id"]]["scores"].append(float(p["score"]))
        out[p["image_id"]]["category_ids"].append(int(p.get("category_id", 1)))
    ids = list(refs)
    return [out[i] for i in ids], [refs[i] for i in ids]


def _add_in_two_batches(metric, predictions: list, references: list) -> None:
    half = max(1, len(predictions) // 2)
    metric.add_batch(predictions=predictions[:half], references=references[:half])
    metric.add_batch(predictions=predictions[half:], references=references[half:])


@pytest.mark.parametrize(("protocol", "rel"), [("coco", "coco/test_coco.json"), ("ap10k", "ap10k/test_ap10k.json"),
                                               ("aic", "aic/test_aic.json"),
                                               ("crowdpose", "crowdpose/test_crowdpose.json")])
@pytest.mark.parametrize("seed", [0, 1])
def test_oks_ap_equals_plain_api(metric, shared_data, protocol, rel, seed) -> None:
    gt = load(shared_data / "real" / rel)
    preds = perturbed_predictions(gt, seed)
    expected = plain_evaluate(protocol, gt, preds)
    if protocol == "coco":
        assert 0 < expected["AP"] < 1  # a non-trivial case (AIC's small sample can drop to AP 0 at this noise)
    predictions, references = _coco_examples(gt, preds)
    _add_in_two_batches(metric, predictions, references)
    options = {"crowd_index": {img["id"]: img["crowdIndex"] for img in gt["images"]}} if protocol == "crowdpose" else {}
    assert metric.compute(protocol=protocol, **options) == expected


def test_pckh_equals_plain_api(metric, shared_data) -> None:
    folder = shared_data / "real" / "mpii"
    records = load(folder / "test_mpii.json")
    heads = load(folder / "mpii_val_headboxes_first5.json")["entries"]
    rng = np.random.default_rng(0)
    preds = [{"image": r["image"], "joints": (np.array(r["joints"]) - 1 + rng.normal(0, 40, (16, 2))).tolist()}
             for r in records]  # 0-based, like the pipeline's output
    expected = plain_evaluate("pckh", records, preds, headboxes=folder / "mpii_val_headboxes_first5.json")
    assert expected["PCKh"] < 100  # the noise moves some joints out
    ids: dict[str, int] = {}
    by_image: dict[int, dict] = defaultdict(lambda: {"pred": [], "kpts": [], "heads": []})
    for rec, head, pred in zip(records, heads, preds, strict=True):
        assert head["image"] == rec["image"]
        image_id = ids.setdefault(rec["image"], len(ids))
        entry = by_image[image_id]
        entry["kpts"].append(np.concatenate([np.array(rec["joints"]), np.array(rec["joints_vis"])[:, None]], 1)
                             .reshape(-1).tolist())
        entry["heads"].append(np.reshape(head["headbox"], -1).tolist())
        entry["pred"].append(np.concatenate([np.array(pred["joints"]), np.ones((16, 1))], 1).reshape(-1).tolist())
    predictions = [{"image_id": i, "keypoints": e["pred"], "scores": [1.0] * len(e["pred"]), "category_ids": []}
                   for i, e in by_image.items()]
    references = [{"image_id": i, "keypoints": e["kpts"], "bboxes": [], "areas": [], "iscrowd": [],
                   "head_boxes": e["heads"], "category_ids": []} for i, e in by_image.items()]
    _add_in_two_batches(metric, predictions, references)
    got = metric.compute(protocol="pckh")
    assert got == expected


@pytest.mark.parametrize("noise", [6.0, 20.0])
def test_pck_auc_epe_equals_plain_api(metric, shared_data, noise) -> None:
    gt = _interhand_gt(shared_data / "real" / "interhand2.6m")
    preds = _predictions(gt, noise, seed=3)
    expected = plain_evaluate("pck-auc-epe", gt, preds)
    assert expected["EPE"] > 0
    predictions, references = _coco_examples(gt, preds)
    _add_in_two_batches(metric, predictions, references)
    assert metric.compute(protocol="pck-auc-epe") == expected
    # the generic PCK with its options goes through the same path
    expected = plain_evaluate("pck", gt, preds, thr=0.1)
    metric.add_batch(predictions=predictions, references=references)
    assert metric.compute(protocol="pck", skeleton="interhand", thr=0.1) == plain_evaluate(
        "pck", gt, preds, skeleton="interhand", thr=0.1)


def test_errors_are_clear(metric) -> None:
    ref = {"image_id": 1, "keypoints": [[10.0, 10.0, 2.0] * 17], "bboxes": [[0.0, 0.0, 50.0, 80.0]],
           "areas": [2000.0], "iscrowd": [0], "head_boxes": [], "category_ids": []}
    pred = {"image_id": 1, "keypoints": [[10.0, 10.0, 1.0] * 17], "scores": [0.9], "category_ids": []}
    metric.add_batch(predictions=[pred], references=[ref])
    assert metric.compute(protocol="coco")["AP"] == pytest.approx(1.0)
    metric.add_batch(predictions=[pred], references=[ref])
    with pytest.raises(EvaluationInputError, match="unknown protocol"):
        metric.compute(protocol="nope")
    metric.add_batch(predictions=[{**pred, "image_id": 2}], references=[ref])
    with pytest.raises(EvaluationInputError, match="image_id"):
        metric.compute(protocol="coco")


def test_crowdpose_needs_a_crowd_index_per_image(metric, shared_data) -> None:
    gt = load(shared_data / "real" / "crowdpose" / "test_crowdpose.json")
    predictions, references = _coco_examples(gt, perturbed_predictions(gt, 0))
    metric.add_batch(predictions=predictions, references=references)
    first = gt["images"][0]["id"]
    with pytest.raises(EvaluationInputError, match="crowd_index has no value for image_id"):
        metric.compute(protocol="crowdpose", crowd_index={first: 0.1})
