"""PCK, AUC and EPE (layer 1): mmpose 0.x ``top_down_eval`` functions and the InterHand2.6M report.

``pck-auc-epe`` (InterHand2.6M, spec section 8): PCK at ``0.2 x max(box w, h)``, AUC of the PCK curve over 0-30 px
(20 steps, mmpose ``keypoint_auc``), EPE in pixels. ``pck`` (any skeleton): PCK at ``thr x`` the box size (or a
torso length) and the mean per-keypoint error. PCK is the mean of the per-keypoint accuracies (keypoints without
any visible ground truth are left out), in [0, 1], as mmpose reports it.

Like mmpose, distances are stored in float32 and ground-truth coordinates and boxes are float32 (mmpose's
``joints_3d`` and ``bbox`` records) before the comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..skeletons import Skeleton, get_skeleton
from .errors import EvaluationInputError
from .inputs import JsonSource, load_coco_ground_truth, load_coco_predictions, paused_gc, source_name

__all__ = [
    "evaluate_pck",
    "evaluate_pck_auc_epe",
    "keypoint_auc",
    "keypoint_epe",
    "keypoint_pck_accuracy",
    "match_instances",
]


def _calc_distances(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, normalize: np.ndarray) -> np.ndarray:
    """[K, N] float32 normalised distances, -1 where masked (or where the normaliser is 0)."""
    n, k, _ = pred.shape
    _mask = mask.copy()
    _mask[np.where((normalize == 0).sum(1))[0], :] = False
    distances = np.full((n, k), -1, dtype=np.float32)
    normalize = normalize.copy()
    normalize[np.where(normalize <= 0)] = 1e6
    distances[_mask] = np.linalg.norm(((pred - gt) / normalize[:, None, :])[_mask], axis=-1)
    return distances.T


def _distance_acc(distances: np.ndarray, thr: float) -> float:
    valid = distances != -1
    count = valid.sum()
    return float((distances[valid] < thr).sum() / count) if count > 0 else -1.0


def keypoint_pck_accuracy(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, thr: float, normalize: np.ndarray
) -> tuple[np.ndarray, float, int]:
    """Per-keypoint PCK, their mean over keypoints with any valid instance, and that count.

    Args:
        pred, gt: [N, K, 2]. mask: [N, K] bool (visible GT). thr: threshold on the normalised distance.
        normalize: [N, 2] per-instance normaliser for x and y.

    Returns:
        ``acc`` [K] (-1 for keypoints without valid instances), ``avg_acc``, ``cnt``.
    """
    distances = _calc_distances(pred, gt, mask, normalize)
    acc = np.array([_distance_acc(d, thr) for d in distances])
    valid = acc[acc >= 0]
    return acc, float(valid.mean()) if len(valid) > 0 else 0.0, len(valid)


def keypoint_auc(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, normalize: float,
                 num_step: int = 20) -> float:
    """Area under the PCK curve for thresholds ``i / num_step * normalize`` px, i = 0 .. num_step - 1."""
    nor = np.tile(np.array([[normalize, normalize]]), (pred.shape[0], 1))
    auc = 0.0
    for i in range(num_step):
        _, avg_acc, _ = keypoint_pck_accuracy(pred, gt, mask, 1.0 * i / num_step, nor)
        auc += 1.0 / num_step * avg_acc
    return auc


def keypoint_epe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Mean end-point error in pixels over the visible keypoints (float32 distances, as mmpose)."""
    distances = _calc_distances(pred, gt, mask, np.ones((pred.shape[0], pred.shape[2]), dtype=np.float32))
    valid = distances[distances != -1]
    return float(valid.sum() / max(1, len(valid)))


def match_instances(
    gt: Mapping[str, Any], preds: Sequence[Mapping[str, Any]], name: str = "predictions"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """Pair ground-truth instances (non-crowd annotations) with predictions, one each.

    A prediction carrying ``annotation_id`` goes to that annotation; the others go, per image, to the image's
    next unpaired annotation in file order. Every annotation with a visible keypoint needs a prediction; the
    others are left out of the metrics.

    Returns:
        pred [N, K, 2] float64, gt [N, K, 2] float32, mask [N, K] bool, boxes [N, 4] float32, annotation ids.
    """
    anns = [a for a in gt["annotations"] if not a["iscrowd"]]
    index = {a["id"]: i for i, a in enumerate(anns)}
    per_image: dict[Any, list[int]] = {}
    for i, a in enumerate(anns):
        per_image.setdefault(a["image_id"], []).append(i)
    slot: list[np.ndarray | None] = [None] * len(anns)
    for j, p in enumerate(preds):
        target = p.get("annotation_id")
        if target is not None:
            if target not in index or anns[index[target]]["image_id"] != p["image_id"]:
                raise EvaluationInputError(f"{name}: prediction[{j}] has annotation_id {target!r}, not a non-crowd "
                                           f"annotation of image {p['image_id']!r}")
            i = index[target]
        else:
            free = [i for i in per_image.get(p["image_id"], []) if slot[i] is None]
            if not free:
                raise EvaluationInputError(f"{name}: prediction[{j}] for image {p['image_id']!r} has no ground-truth "
                                           "instance left to pair with (one prediction per annotation)")
            i = free[0]
        if slot[i] is not None:
            raise EvaluationInputError(f"{name}: two predictions for annotation {anns[i]['id']!r}")
        slot[i] = p["keypoints"][:, :2]
    used = [i for i, a in enumerate(anns) if np.any(a["keypoints"][:, 2] > 0)]
    if not used:
        raise EvaluationInputError(f"{name}: the ground truth has no annotation with visible keypoints")
    missing = [anns[i]["id"] for i in used if slot[i] is None]
    if missing:
        raise EvaluationInputError(f"{name}: no prediction for ground-truth annotations {missing[:10]}"
                                   f"{' ...' if len(missing) > 10 else ''}")
    pred = np.stack([slot[i] for i in used]).astype(np.float64)  # type: ignore[misc]
    gt_xy = np.stack([anns[i]["keypoints"][:, :2] for i in used]).astype(np.float32)
    mask = np.stack([anns[i]["keypoints"][:, 2] > 0 for i in used])
    boxes = np.array([anns[i]["bbox"] for i in used], dtype=np.float32)
    return pred, gt_xy, mask, boxes, [anns[i]["id"] for i in used]


def _load(gt: JsonSource, pred: JsonSource, skeleton: str | Skeleton | None) -> tuple[Skeleton | None, tuple]:
    gt_data = load_coco_ground_truth(gt)
    skel = get_skeleton(skeleton) if skeleton is not None else None
    if skel is not None and skel.num_keypoints != gt_data["num_keypoints"]:
        raise EvaluationInputError(f"{source_name(gt, 'ground truth')}: annotations have {gt_data['num_keypoints']} "
                                   f"keypoints but skeleton {skel.name!r} has {skel.num_keypoints}")
    preds = load_coco_predictions(pred, gt_data)
    return skel, match_instances(gt_data, preds, source_name(pred, "predictions"))


def _names(skel: Skeleton | None, k: int) -> list[str]:
    return list(skel.keypoint_names) if skel is not None else [str(i) for i in range(k)]


@paused_gc
def evaluate_pck_auc_epe(
    gt: JsonSource, pred: JsonSource, skeleton: str | Skeleton | None = "interhand", pck_thr: float = 0.2,
    auc_max_px: float = 30.0,
) -> dict[str, float]:
    """InterHand2.6M metrics: ``PCK`` (``pck_thr x max(w, h)`` of the GT box), ``AUC`` (0 - ``auc_max_px`` px),
    ``EPE`` (px), plus ``PCK/<keypoint>``. Ground truth: COCO keypoint JSON (one annotation per hand)."""
    skel, (p, g, m, boxes, _) = _load(gt, pred, skeleton)
    side = np.max(boxes[:, 2:], axis=1)
    acc, pck, _ = keypoint_pck_accuracy(p, g, m, pck_thr, np.stack([side, side], axis=1))
    out = {"PCK": pck, "AUC": keypoint_auc(p, g, m, auc_max_px), "EPE": keypoint_epe(p, g, m)}
    out.update({f"PCK/{n}": float(a) for n, a in zip(_names(skel, p.shape[1]), acc, strict=True) if a >= 0})
    return out


def _torso(gt_xy: np.ndarray, mask: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    a, b = pair
    size = np.linalg.norm(gt_xy[:, a].astype(np.float64) - gt_xy[:, b], axis=-1).astype(np.float32)
    return np.where(mask[:, a] & mask[:, b], size, 0).astype(np.float32)  # 0 -> instance left out


def _index(skel: Skeleton | None, key: int | str, k: int) -> int:
    if isinstance(key, str) and not key.isdigit():
        if skel is None or key not in skel.keypoint_names:
            raise EvaluationInputError(f"torso keypoint {key!r} is not a keypoint name of the skeleton")
        return skel.keypoint_names.index(key)
    idx = int(key)
    if not 0 <= idx < k:
        raise EvaluationInputError(f"torso keypoint index {idx} is outside 0..{k - 1}")
    return idx


@paused_gc
def evaluate_pck(
    gt: JsonSource, pred: JsonSource, skeleton: str | Skeleton | None = None, thr: float = 0.2,
    norm: str = "bbox", torso: tuple[int | str, int | str] | None = None,
) -> dict[str, float]:
    """PCK for any skeleton: correct when the error is ``< thr x`` the instance size, where the size is
    ``max(w, h)`` of the GT box (``norm="bbox"``) or the GT distance between the two ``torso`` keypoints
    (``norm="torso"``; instances where either is invisible are left out). Also the mean error in pixels (``EPE``)
    and per keypoint (``PCK/<name>``, ``EPE/<name>``)."""
    skel, (p, g, m, boxes, _) = _load(gt, pred, skeleton)
    k = p.shape[1]
    if norm == "bbox":
        size = np.max(boxes[:, 2:], axis=1)
    elif norm == "torso":
        if torso is None or len(torso) != 2:
            raise EvaluationInputError("norm='torso' needs torso=(keypoint_a, keypoint_b)")
        size = _torso(g, m, (_index(skel, torso[0], k), _index(skel, torso[1], k)))
    else:
        raise EvaluationInputError(f"norm must be 'bbox' or 'torso', got {norm!r}")
    acc, pck, _ = keypoint_pck_accuracy(p, g, m, thr, np.stack([size, size], axis=1))
    dist = _calc_distances(p, g, m, np.ones((p.shape[0], 2), dtype=np.float32))  # [K, N]
    out = {"PCK": pck, "EPE": keypoint_epe(p, g, m)}
    for j, name in enumerate(_names(skel, k)):
        valid = dist[j][dist[j] != -1]
        if acc[j] >= 0:
            out[f"PCK/{name}"] = float(acc[j])
        if len(valid):
            out[f"EPE/{name}"] = float(valid.sum() / len(valid))
    return out
