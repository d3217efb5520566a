"""MPII PCKh@0.5 / PCKh@0.1 exactly as mmpose 0.x ``TopDownMpiiDataset.evaluate`` computes them (layer 1).

Head size = 0.6 x the diagonal of the head box; a joint is correct when its distance to the ground truth is
``<= thr x head size``; per-joint PCKh is over the visible ground-truth joints; the summary ``PCKh`` weights the
joints by their visible counts over all joints except pelvis and thorax (6, 7). As in mmpose, the per-joint table
at 0.1 is held in float32 before the weighting. Values are percentages.

Coordinates: the ground truth is in MPII's 1-based (MATLAB) pixel frame, as in ``mpii_gt_val.mat`` and mmpose's
``mpii_{train,val}.json``. Predictions are expected 0-based (the top-left pixel centre is (0, 0), the frame of
our pipeline and of mmpose's outputs) and get ``+1`` like mmpose does; pass ``pred_one_based=True`` for
predictions already in the MATLAB frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EvaluationInputError
from .inputs import JsonSource, load_json, paused_gc, source_name

__all__ = [
    "MPII_JOINT_NAMES",
    "MpiiGroundTruth",
    "evaluate_pckh",
    "load_mpii_ground_truth",
    "load_mpii_predictions",
    "pckh_metrics",
]

MPII_JOINT_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist",
)
SC_BIAS = 0.6
_MASKED = (6, 7)  # pelvis and thorax are left out of the summary
# mmpose's summary rows: (name, left joint, right joint); the head row is head_top alone.
_GROUPS = (("Shoulder", 13, 12), ("Elbow", 14, 11), ("Wrist", 15, 10), ("Hip", 3, 2), ("Knee", 4, 1),
           ("Ankle", 5, 0))


@dataclass
class MpiiGroundTruth:
    """MPII ground truth: ``joints`` [N, 16, 2] 1-based, ``visible`` [N, 16] bool, ``head_boxes`` [N, 2, 2]
    (``[[x1, y1], [x2, y2]]``), ``images`` the image name per person (``None`` for the ``.mat`` layout)."""

    joints: np.ndarray
    visible: np.ndarray
    head_boxes: np.ndarray
    images: list[str] | None = None


def pckh_metrics(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_boxes: np.ndarray
) -> dict[str, float | None]:
    """PCKh from arrays, following mmpose's code line by line.

    Args:
        pred: [N, 16, 2] predictions in the ground truth's (1-based) frame.
        gt: [N, 16, 2] ground truth. visible: [N, 16] bool. head_boxes: [N, 2, 2].

    Returns:
        ``Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, PCKh, PCKh@0.1`` and ``PCKh/<joint>``,
        ``PCKh@0.1/<joint>`` (``None`` for a joint without any visible ground truth; it has weight 0).
    """
    pos_pred = np.transpose(np.asarray(pred, dtype=np.float64), [1, 2, 0])  # [16, 2, N]
    pos_gt = np.transpose(np.asarray(gt, dtype=np.float64), [1, 2, 0])
    jnt_visible = np.asarray(visible, dtype=np.float64).T  # [16, N]
    boxes = np.transpose(np.asarray(head_boxes, dtype=np.float64), [1, 2, 0])  # [2, 2, N]
    uv_err = np.linalg.norm(pos_pred - pos_gt, axis=1)
    headsizes = np.linalg.norm(boxes[1] - boxes[0], axis=0) * SC_BIAS
    scale = headsizes * np.ones((len(uv_err), 1), dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = uv_err / scale * jnt_visible
        jnt_count = np.sum(jnt_visible, axis=1)
        pck05 = 100.0 * np.sum((scaled <= 0.5) * jnt_visible, axis=1) / jnt_count
        rng = np.arange(0, 0.5 + 0.01, 0.01)
        pck01 = np.zeros(16, dtype=np.float32)  # mmpose's pckAll table is float32
        pck01[:] = 100.0 * np.sum((scaled <= rng[10]) * jnt_visible, axis=1) / jnt_count
    weight_count = jnt_count.copy()
    weight_count[list(_MASKED)] = 0
    ratio = weight_count / np.sum(weight_count)

    def weighted(values: np.ndarray) -> float:
        prod = values * ratio
        prod[list(_MASKED)] = 0.0
        return float(np.sum(np.nan_to_num(prod, nan=0.0)))  # a joint without GT has ratio 0

    def num(v: float) -> float | None:
        return None if not np.isfinite(v) else float(v)

    out: dict[str, float | None] = {"Head": num(pck05[9])}
    for name, left, right in _GROUPS:
        out[name] = num(0.5 * (pck05[left] + pck05[right]))
    out["PCKh"] = weighted(pck05)
    out["PCKh@0.1"] = weighted(pck01.astype(np.float64))
    for j, name in enumerate(MPII_JOINT_NAMES):
        out[f"PCKh/{name}"] = num(pck05[j])
    for j, name in enumerate(MPII_JOINT_NAMES):
        out[f"PCKh@0.1/{name}"] = num(float(pck01[j]))
    return out


def _array(value: Any, shape: tuple[int | None, ...], name: str, field: str, finite: bool = True) -> np.ndarray:
    """``value`` as float64 with ``shape`` (``None`` = any size), else an error naming ``field``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EvaluationInputError(f"{name}: {field} must be numbers") from None
    if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape, strict=False)):
        want_txt = " x ".join("N" if w is None else str(w) for w in shape)
        raise EvaluationInputError(f"{name}: {field} has shape {list(arr.shape)}, expected {want_txt}")
    if finite and not np.all(np.isfinite(arr)):
        raise EvaluationInputError(f"{name}: {field} contains NaN or infinite values")
    return arr


def _load_mat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat  # scipy only for the .mat layout

    try:
        return loadmat(str(path))
    except Exception as err:  # scipy raises several types for corrupt files
        raise EvaluationInputError(f"{path}: cannot read as a MATLAB file ({err})") from None


def _gt_from_mat(path: Path) -> MpiiGroundTruth:
    mat = _load_mat(path)
    missing = [k for k in ("pos_gt_src", "jnt_missing", "headboxes_src") if k not in mat]
    if missing:
        raise EvaluationInputError(f"{path}: missing {missing} (expected the mpii_gt_val.mat layout)")
    # Missing joints may hold NaN in pos_gt_src; they are masked by jnt_missing, so only they may be non-finite.
    joints = np.transpose(_array(mat["pos_gt_src"], (16, 2, None), str(path), "pos_gt_src", finite=False),
                          [2, 0, 1])
    n = joints.shape[0]
    visible = (1 - _array(mat["jnt_missing"], (16, n), str(path), "jnt_missing")).T > 0
    boxes = _array(mat["headboxes_src"], (2, 2, n), str(path), "headboxes_src")
    if not np.all(np.isfinite(joints[visible])):
        raise EvaluationInputError(f"{path}: pos_gt_src has NaN for joints that jnt_missing marks present")
    joints = np.where(visible[..., None], joints, 0.0)
    return MpiiGroundTruth(joints, visible, np.transpose(boxes, [2, 0, 1]))


def _headboxes_from(source: JsonSource, count: int) -> np.ndarray:
    name = source_name(source, "head boxes")
    if isinstance(source, str | Path) and str(source).endswith(".mat"):
        return _gt_from_mat(Path(source)).head_boxes
    data = load_json(source, "head-box")
    if isinstance(data, Mapping):
        data = [e.get("headbox") if isinstance(e, Mapping) else e for e in data.get("entries", [])]
    return _array(data, (count, 2, 2), name, f"head boxes (for {count} ground-truth persons)")


def load_mpii_ground_truth(source: JsonSource, headboxes: JsonSource | None = None) -> MpiiGroundTruth:
    """MPII ground truth from ``mpii_gt_val.mat`` (``pos_gt_src``, ``jnt_missing``, ``headboxes_src``) or from
    mmpose's JSON list ``[{image, joints[16][2], joints_vis[16]}]`` plus head boxes: a ``headbox`` per record, or
    ``headboxes`` (a ``.mat`` with ``headboxes_src``, a JSON list [N][2][2], or ``{"entries": [{"headbox"}]}``)."""
    name = source_name(source, "ground truth")
    if isinstance(source, str | Path) and str(source).endswith(".mat"):
        if not Path(source).is_file():
            raise EvaluationInputError(f"ground-truth file {source} does not exist")
        return _gt_from_mat(Path(source))
    records = load_json(source, "ground-truth")
    if not isinstance(records, list) or not records:
        raise EvaluationInputError(f"{name}: expected a non-empty JSON list of {{image, joints, joints_vis}}")
    joints, vis, images, boxes = [], [], [], []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping) or "joints" not in rec or "joints_vis" not in rec:
            raise EvaluationInputError(f"{name}: record[{i}] needs 'joints' and 'joints_vis'")
        joints.append(_array(rec["joints"], (16, 2), f"{name}: record[{i}]", "joints"))
        vis.append(np.asarray(rec["joints_vis"]).reshape(-1)[:16] > 0)
        images.append(str(rec.get("image", i)))
        boxes.append(rec.get("headbox", rec.get("head_box")))
    if headboxes is not None:
        head = _headboxes_from(headboxes, len(records))
    elif all(b is not None for b in boxes):
        head = _array(boxes, (len(records), 2, 2), name, "headbox")
    else:
        raise EvaluationInputError(f"{name}: PCKh needs head boxes: give a 'headbox' per record or a head-box "
                                   "file (--headboxes)")
    return MpiiGroundTruth(np.stack(joints), np.stack(vis), head, images)


def _match_by_image(preds: list[Mapping[str, Any]], gt: MpiiGroundTruth, name: str) -> np.ndarray:
    """Records keyed by image (name, or GT index for an int): the k-th record of an image is its k-th person."""
    slots: dict[Any, list[int]] = {}
    for idx, img in enumerate(gt.images or []):
        slots.setdefault(img, []).append(idx)
    out = np.full((len(gt.joints), 16, 2), np.nan)
    for i, rec in enumerate(preds):
        key = rec.get("image", rec.get("image_id"))
        xy = rec.get("joints", rec.get("keypoints"))
        try:
            flat = np.asarray(xy, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            flat = np.zeros(0)
        if flat.size not in (32, 48):
            raise EvaluationInputError(f"{name}: prediction[{i}] needs 16 joints (16 x 2, or flat [x, y, score] "
                                       f"* 16), got {flat.size} values")
        if not np.all(np.isfinite(flat)):
            raise EvaluationInputError(f"{name}: prediction[{i}] contains NaN or infinite values")
        arr = flat.reshape(16, -1)[:, :2]
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(gt.joints) and key not in slots:
            idx = key
        elif key in slots and slots[key]:
            idx = slots[key].pop(0)
        else:
            raise EvaluationInputError(f"{name}: prediction[{i}] is for image {key!r}, which has no (more) "
                                       "persons in the ground truth")
        out[idx] = arr
    if np.isnan(out).any():
        missing = sorted({int(i) for i in np.nonzero(np.isnan(out).any(axis=(1, 2)))[0]})
        raise EvaluationInputError(f"{name}: no prediction for ground-truth persons {missing[:10]}")
    return out


def load_mpii_predictions(source: JsonSource, gt: MpiiGroundTruth, one_based: bool = False) -> np.ndarray:
    """Predictions as [N, 16, 2] in the ground truth's 1-based frame.

    Accepted: a plain list N x 16 x 2 (or x 3) in ground-truth order, ``{"preds": ...}`` the same, a list of
    ``{image, joints}`` records, or COCO-style ``{image_id, keypoints: [x, y, score] * 16}`` with ``image_id`` the
    image name (or the ground-truth index); several persons of one image are matched in ground-truth order.
    """
    name = source_name(source, "predictions")
    data = load_json(source, "prediction")
    if isinstance(data, Mapping) and "preds" in data:
        data = data["preds"]
    if not isinstance(data, list) or not data:
        raise EvaluationInputError(f"{name}: contains no predictions")
    if isinstance(data[0], Mapping):
        pred = _match_by_image(data, gt, name)
    else:
        pred = _array(data, (None, 16, None), name, "plain predictions (N x 16 x 2)")
        if pred.shape[2] < 2:
            raise EvaluationInputError(f"{name}: plain predictions need x and y per joint, got {pred.shape[2]} value")
        pred = pred[..., :2]
    if pred.shape[0] != gt.joints.shape[0]:
        raise EvaluationInputError(f"{name}: {pred.shape[0]} predictions for {gt.joints.shape[0]} ground-truth "
                                   "persons")
    return pred if one_based else pred + 1.0


@paused_gc
def evaluate_pckh(
    gt: JsonSource, pred: JsonSource, headboxes: JsonSource | None = None, pred_one_based: bool = False
) -> dict[str, float | None]:
    """MPII PCKh (see the module docstring for formats and coordinate frames)."""
    gt_data = load_mpii_ground_truth(gt, headboxes)
    return pckh_metrics(load_mpii_predictions(pred, gt_data, pred_one_based), gt_data.joints, gt_data.visible,
                        gt_data.head_boxes)
