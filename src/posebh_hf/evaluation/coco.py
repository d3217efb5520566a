"""OKS-AP protocols (layer 1): COCO (any skeleton), AI Challenger, CrowdPose and COCO-WholeBody.

Each function takes the ground truth (COCO keypoint JSON path or dict) and predictions (COCO results JSON path or
list) and returns a flat ``dict[str, float]`` with AP/AR in [0, 1], as pycocotools reports them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..skeletons import Skeleton, get_skeleton
from .cocoeval import COCO_STAT_NAMES, build_dt_coco, build_gt_coco, run_keypoint_eval
from .errors import EvaluationInputError
from .inputs import JsonSource, load_coco_ground_truth, load_coco_predictions, paused_gc, source_name

__all__ = [
    "CROWD_INDEX_THRESHOLDS",
    "WHOLEBODY_PARTS",
    "evaluate_aic",
    "evaluate_coco",
    "evaluate_coco_wholebody",
    "evaluate_crowdpose",
    "load_inputs",
]

# xtcocotools / the official CrowdPose API call get_type_result(first=0.2, second=0.8): easy < 0.2 <= medium < 0.8
# <= hard. The CrowdPose paper describes easy as [0, 0.1]; the released tools (whose numbers everyone reports) use 0.2.
CROWD_INDEX_THRESHOLDS = (0.2, 0.8)
WHOLEBODY_PARTS = ("body", "foot", "face", "lefthand", "righthand")


def _stats(values: np.ndarray, prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{name}": float(v) for name, v in zip(COCO_STAT_NAMES, values, strict=True)}


def load_inputs(
    gt: JsonSource, pred: JsonSource, skeleton: str | Skeleton
) -> tuple[Skeleton, dict[str, Any], list[dict[str, Any]]]:
    """Resolve the skeleton, load the ground truth with its K and the predictions; check that the Ks agree."""
    skel = get_skeleton(skeleton)
    gt_data = load_coco_ground_truth(gt)
    if gt_data["num_keypoints"] != skel.num_keypoints:
        raise EvaluationInputError(
            f"{source_name(gt, 'ground truth')}: annotations have {gt_data['num_keypoints']} keypoints but skeleton "
            f"{skel.name!r} has {skel.num_keypoints}; pass the matching skeleton (--skeleton NAME_OR_JSON)")
    return skel, gt_data, load_coco_predictions(pred, gt_data)


@paused_gc
def evaluate_coco(
    gt: JsonSource, pred: JsonSource, skeleton: str | Skeleton = "coco", use_area: bool = True
) -> dict[str, float]:
    """COCO OKS AP/AR with the skeleton's sigmas (any K: coco, ap10k, apt36k, ochuman, smpl24, custom).

    Args:
        gt: COCO keypoint ground truth (path or dict).
        pred: COCO results (path or list of ``{image_id, category_id, keypoints, score}``).
        skeleton: built-in name, JSON path or :class:`Skeleton` (sigmas; uniform 0.05 when it has none).
        use_area: OKS scale from the annotation ``area`` (COCO); ``False`` uses ``0.53 * w * h`` of the box
            (mmpose's ``use_area=False``, e.g. for 3DPW).

    Returns:
        ``AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl`` (pycocotools' ``stats`` order, maxDets 20).
    """
    skel, gt_data, preds = load_inputs(gt, pred, skeleton)
    full = slice(0, skel.num_keypoints)
    gt_coco = build_gt_coco(gt_data, full, use_area)
    ev = run_keypoint_eval(gt_coco, build_dt_coco(gt_coco, preds, full), skel.oks_sigmas())
    return _stats(ev.stats)


def evaluate_aic(gt: JsonSource, pred: JsonSource, skeleton: str | Skeleton = "aic") -> dict[str, float]:
    """AI Challenger as mmpose evaluates it: xtcocotools ``COCOeval(..., sigmas=AIC, use_area=False)``.

    With ``use_area=False`` xtcocotools replaces the segment area by ``tmparea = h * w * 0.53`` of the GT box, both
    as the OKS scale (``computeOks``) and for the medium/large ranges (``evaluateImg``); detections keep the
    keypoint-extent area of ``loadRes``. We reproduce it exactly with pycocotools by writing ``h * w * 0.53`` into
    each ground truth's ``area`` (the only place pycocotools reads it), so the same floating-point value enters the
    same formulas. AIC files have no ``area``/``iscrowd``: ``iscrowd`` defaults to 0.
    """
    return evaluate_coco(gt, pred, skeleton, use_area=False)


def _crowd_indices(gt: JsonSource, images: list[dict[str, Any]]) -> dict[Any, float]:
    name = source_name(gt, "ground truth")
    out = {}
    for img in images:
        if "crowdIndex" not in img:
            raise EvaluationInputError(f"{name}: image {img['id']!r} has no 'crowdIndex' (needed by the crowdpose "
                                       "protocol)")
        out[img["id"]] = float(img["crowdIndex"])
    return out


@paused_gc
def evaluate_crowdpose(
    gt: JsonSource, pred: JsonSource, skeleton: str | Skeleton = "crowdpose",
    thresholds: tuple[float, float] = CROWD_INDEX_THRESHOLDS,
) -> dict[str, float]:
    """CrowdPose as mmpose evaluates it (xtcocotools ``'keypoints_crowd'``, ``use_area=False``).

    AP/AR are the ``all``-range pycocotools numbers at maxDets 20 (OKS scale ``0.53 * w * h``). AP(easy/medium/
    hard) re-run the evaluation on the images whose ``crowdIndex`` is ``< t0``, in ``[t0, t1)`` and ``>= t1``
    (``t = (0.2, 0.8)``, the released tools' values) and take, like xtcocotools' ``get_type_result``, the mean of
    the whole precision array at the ``all`` range, rounded to 4 decimals (-1 when a group has no ground truth).
    """
    skel, gt_data, preds = load_inputs(gt, pred, skeleton)
    crowd = _crowd_indices(gt, gt_data["images"])
    full = slice(0, skel.num_keypoints)
    gt_coco = build_gt_coco(gt_data, full, use_area=False)
    dt_coco = build_dt_coco(gt_coco, preds, full)
    sigmas = skel.oks_sigmas()
    stats = run_keypoint_eval(gt_coco, dt_coco, sigmas).stats
    out = {n: float(stats[i]) for i, n in ((0, "AP"), (1, "AP50"), (2, "AP75"), (5, "AR"), (6, "AR50"),
                                           (7, "AR75"))}
    t0, t1 = thresholds
    groups = {
        "AP(E)": [i for i, c in crowd.items() if c < t0],
        "AP(M)": [i for i, c in crowd.items() if t0 <= c < t1],
        "AP(H)": [i for i, c in crowd.items() if c >= t1],
    }
    for key, ids in groups.items():
        precision = run_keypoint_eval(gt_coco, dt_coco, sigmas, img_ids=ids).eval["precision"]
        out[key] = round(float(np.mean(precision[:, :, :, 0, :])), 4)
    return out


def _wholebody_parts(skel: Skeleton) -> dict[str, slice]:
    missing = [p for p in WHOLEBODY_PARTS if p not in skel.parts]
    if missing:
        raise EvaluationInputError(f"skeleton {skel.name!r} lacks the parts {missing} needed by coco_wholebody")
    return {p: slice(*skel.parts[p]) for p in WHOLEBODY_PARTS}


@paused_gc
def evaluate_coco_wholebody(
    gt: JsonSource, pred: JsonSource, skeleton: str | Skeleton = "coco_wholebody"
) -> dict[str, float]:
    """COCO-WholeBody as mmpose evaluates it (xtcocotools ``keypoints_body/foot/face/lefthand/righthand/
    wholebody``, ``use_area=True``), via pycocotools on sliced keypoints.

    Each part uses its slice of the keypoints and sigmas; a ground truth is ignored for a part without a visible
    keypoint in it; every part uses the person's ``area`` as OKS scale and the detection's body-keypoint extent as
    its area (xtcocotools reads ``dt['keypoints']``, the 17 body keypoints, in ``loadRes``). The ground truth may
    be the official file (``keypoints`` + ``foot_kpts``/``face_kpts``/``lefthand_kpts``/``righthand_kpts``) or
    133-keypoint annotations; predictions flat 133 x 3 or split the same way.

    Returns:
        ``<part>/<stat>`` for body, foot, face, lefthand, righthand and wholebody, plus the whole-body stats without
        prefix (mmpose reports those as ``AP``, ``AR``, ...).
    """
    skel, gt_data, preds = load_inputs(gt, pred, skeleton)
    sigmas = skel.oks_sigmas()
    body = _wholebody_parts(skel)["body"]
    parts = {**_wholebody_parts(skel), "wholebody": slice(0, skel.num_keypoints)}
    out: dict[str, float] = {}
    for part, sl in parts.items():
        gt_coco = build_gt_coco(gt_data, sl, use_area=True)
        ev = run_keypoint_eval(gt_coco, build_dt_coco(gt_coco, preds, sl, area_slice=body), sigmas[sl])
        out.update(_stats(ev.stats, f"{part}/"))
    out.update(_stats(np.array([out[f"wholebody/{n}"] for n in COCO_STAT_NAMES])))
    return out
