"""Shared helpers for the evaluation tests: perturbed predictions and pycocotools run directly (the reference).

Imported by the other ``test_evaluation_*`` modules; its own test checks the helpers themselves.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

WHOLEBODY_FIELDS = ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def full_keypoints(ann: dict[str, Any]) -> np.ndarray:
    """[K, 3] GT keypoints, COCO-WholeBody part fields appended."""
    kpts = list(ann["keypoints"])
    if all(f in ann for f in WHOLEBODY_FIELDS):
        for f in WHOLEBODY_FIELDS:
            kpts += ann[f]
    return np.asarray(kpts, dtype=np.float64).reshape(-1, 3)


def perturbed_predictions(gt: dict[str, Any], seed: int, noise: float = 0.03, extra: float = 0.5,
                          false_positives: int = 3) -> list[dict[str, Any]]:
    """COCO results near the GT: Gaussian noise of ``noise x max(w, h)``, random positive keypoint scores, a
    duplicate for a fraction ``extra`` of the instances and a few false positives; all scores > 0."""
    rng = np.random.default_rng(seed)
    preds = []
    anns = [a for a in gt["annotations"] if "keypoints" in a]
    for ann in anns:
        for _ in range(1 + int(rng.uniform() < extra)):
            k = full_keypoints(ann).copy()
            size = max(ann["bbox"][2], ann["bbox"][3])
            k[:, :2] += rng.normal(0, noise * size, (len(k), 2))
            k[:, 2] = rng.uniform(0.05, 1.0, len(k))
            preds.append({"image_id": ann["image_id"], "category_id": ann.get("category_id", 1),
                          "keypoints": k.reshape(-1).tolist(), "score": float(rng.uniform(0.05, 1.0))})
    for _ in range(false_positives):
        ann = anns[int(rng.integers(len(anns)))]
        k = full_keypoints(ann).copy()
        x, y, w, h = ann["bbox"]
        k[:, 0] = rng.uniform(x, x + w, len(k))
        k[:, 1] = rng.uniform(y, y + h, len(k))
        k[:, 2] = rng.uniform(0.05, 1.0, len(k))
        preds.append({"image_id": ann["image_id"], "category_id": ann.get("category_id", 1),
                      "keypoints": k.reshape(-1).tolist(), "score": float(rng.uniform(0.05, 1.0))})
    return preds


def gt_as_predictions(gt: dict[str, Any]) -> list[dict[str, Any]]:
    """Every annotation with a labelled keypoint as a prediction: score 1 on labelled keypoints, 0 elsewhere (a
    part with no labelled keypoint then has no prediction either, as xtcocotools drops all-zero-score parts)."""
    preds = []
    for ann in gt["annotations"]:
        k = full_keypoints(ann).copy()
        if not np.any(k[:, 2] > 0) or ann.get("iscrowd", 0):
            continue
        k[:, 2] = (k[:, 2] > 0).astype(float)
        preds.append({"image_id": ann["image_id"], "category_id": ann.get("category_id", 1),
                      "keypoints": k.reshape(-1).tolist(), "score": 1.0})
    return preds


def coco_from_dict(data: dict[str, Any]) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(data)
        coco.createIndex()
    return coco


def pycocotools_eval(gt: COCO | str | Path, preds: list[dict[str, Any]], sigmas: np.ndarray,
                     img_ids: list[Any] | None = None) -> COCOeval:
    """pycocotools called directly: COCO(gt) -> loadRes(preds) -> COCOeval('keypoints') with ``sigmas``."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = gt if isinstance(gt, COCO) else COCO(str(gt))
        dets = coco.loadRes(copy.deepcopy(preds))
    return cocoeval_keypoints(coco, dets, sigmas, img_ids)


def cocoeval_keypoints(coco: COCO, dets: COCO, sigmas: np.ndarray, img_ids: list[Any] | None = None) -> COCOeval:
    """COCOeval('keypoints') with ``sigmas`` on already loaded ground truth and results (evaluate, accumulate,
    summarize; its printing silenced)."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, dets, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_helpers_make_distinct_positive_predictions(shared_data):
    gt = load(shared_data / "real" / "coco" / "test_coco.json")
    preds = perturbed_predictions(gt, seed=0)
    assert len(preds) > len(gt["annotations"])
    assert all(min(p["keypoints"][2::3]) > 0 for p in preds)
    assert preds != perturbed_predictions(gt, seed=1)
