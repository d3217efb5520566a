"""Loading and validating ground truth and predictions (layer 1).

Ground truth is a COCO keypoint dataset (``images``, ``annotations``, ``categories``) given as a path or a dict.
Predictions are in the COCO results format: a JSON list of ``{"image_id", "category_id", "keypoints": [x, y, score]
* K, "score"}``. Every problem raises :class:`EvaluationInputError` naming the file, the record and the value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EvaluationInputError

__all__ = [
    "JsonSource",
    "keypoint_array",
    "load_coco_ground_truth",
    "load_coco_predictions",
    "load_json",
    "source_name",
]

JsonSource = str | Path | Mapping[str, Any] | Sequence[Any]

# The four part fields of mmpose's COCO-WholeBody files, concatenated in this order after the 17 body keypoints.
WHOLEBODY_PART_FIELDS = ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


def source_name(source: object, default: str) -> str:
    """A short name for error messages: the file path, or ``default`` for in-memory objects."""
    return str(source) if isinstance(source, str | Path) else default


def load_json(source: JsonSource, what: str) -> Any:
    """Read ``source`` (a path, or an already parsed object which is returned as is).

    Raises:
        EvaluationInputError: missing, empty or invalid JSON file.
    """
    if not isinstance(source, str | Path):
        return source
    path = Path(source)
    if not path.is_file():
        raise EvaluationInputError(f"{what} file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise EvaluationInputError(f"{what} file {path} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise EvaluationInputError(f"{what} file {path} is not valid JSON: {err}") from None


def _fail(name: str, message: str) -> EvaluationInputError:
    return EvaluationInputError(f"{name}: {message}")


def keypoint_array(values: Any, num_keypoints: int, name: str) -> np.ndarray:
    """Flat ``[x, y, v] * K`` list -> float64 ``[K, 3]``; checks the length and that every value is finite."""
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise _fail(name, "'keypoints' must be a flat list of numbers [x, y, score] * K") from None
    if arr.size != 3 * num_keypoints:
        raise _fail(name, f"'keypoints' has {arr.size} values, expected {3 * num_keypoints} "
                          f"([x, y, score] for K={num_keypoints} keypoints)")
    if not np.all(np.isfinite(arr)):
        raise _fail(name, "'keypoints' contains NaN or infinite values")
    return arr.reshape(num_keypoints, 3)


def _gt_keypoints(ann: Mapping[str, Any]) -> list[float] | None:
    """The annotation's keypoints, with mmpose's COCO-WholeBody part fields appended when present."""
    kpts = ann.get("keypoints")
    if kpts is None:
        return None
    if all(f in ann for f in WHOLEBODY_PART_FIELDS):
        return [*kpts, *(v for f in WHOLEBODY_PART_FIELDS for v in ann[f])]
    return list(kpts)


def load_coco_ground_truth(source: JsonSource, num_keypoints: int | None = None) -> dict[str, Any]:
    """Load and normalise a COCO keypoint ground truth.

    Returns a new dict ``{"images", "categories", "annotations"}`` where every annotation has ``keypoints`` as a
    float64 ``[K, 3]`` array (COCO-WholeBody part fields concatenated), ``bbox``, ``iscrowd`` (default 0) and
    ``area`` (``None`` when absent). Annotations without keypoints are kept only when crowd (they can still
    absorb detections).

    Args:
        source: path or parsed dict.
        num_keypoints: expected K; inferred from the first annotation when ``None``.
    """
    name = source_name(source, "ground truth")
    data = load_json(source, "ground-truth")
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise _fail(name, "not a COCO keypoint file (needs 'images' and 'annotations' lists)")
    images = []
    for i, img in enumerate(data["images"]):
        if not isinstance(img, Mapping) or "id" not in img:
            raise _fail(name, f"images[{i}] has no 'id'")
        images.append(dict(img))
    image_ids = {img["id"] for img in images}
    annotations = []
    for i, ann in enumerate(data["annotations"]):
        rec = f"{name}: annotations[{i}]"
        if not isinstance(ann, Mapping) or "image_id" not in ann:
            raise EvaluationInputError(f"{rec} has no 'image_id'")
        if ann["image_id"] not in image_ids:
            raise EvaluationInputError(f"{rec} refers to image_id {ann['image_id']!r} not in 'images'")
        kpts = _gt_keypoints(ann)
        if kpts is None:
            if ann.get("iscrowd", 0):
                kpts = []
            else:
                raise EvaluationInputError(f"{rec} has no 'keypoints'")
        if num_keypoints is None and kpts:
            if len(kpts) % 3:
                raise EvaluationInputError(f"{rec}: 'keypoints' length {len(kpts)} is not a multiple of 3")
            num_keypoints = len(kpts) // 3
        if num_keypoints is None:
            continue
        arr = keypoint_array(kpts, num_keypoints, rec) if kpts else np.zeros((num_keypoints, 3))
        bbox = ann.get("bbox")
        if bbox is None or len(bbox) != 4 or not all(math.isfinite(float(v)) for v in bbox):
            raise EvaluationInputError(f"{rec} needs a finite 'bbox' [x, y, w, h], got {bbox!r}")
        area = ann.get("area")
        annotations.append({
            "id": ann.get("id", i + 1), "image_id": ann["image_id"], "category_id": ann.get("category_id", 1),
            "keypoints": arr, "bbox": [float(v) for v in bbox], "iscrowd": int(ann.get("iscrowd", 0) or 0),
            "area": None if area is None else float(area),
        })
    if num_keypoints is None:
        raise _fail(name, "no annotation has keypoints")
    categories = [dict(c) for c in data.get("categories") or [{"id": 1, "name": "person"}]]
    return {"images": images, "annotations": annotations, "categories": categories,
            "num_keypoints": num_keypoints}


def _prediction_keypoints(pred: Mapping[str, Any]) -> Any:
    """COCO results keypoints; mmpose's COCO-WholeBody result layout (split part fields) is accepted too."""
    if all(f in pred for f in WHOLEBODY_PART_FIELDS) and "keypoints" in pred:
        return [*pred["keypoints"], *(v for f in WHOLEBODY_PART_FIELDS for v in pred[f])]
    return pred.get("keypoints")


def load_coco_predictions(source: JsonSource, gt: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Load COCO results-format predictions and validate them against the loaded ground truth ``gt``.

    Returns a list of ``{"image_id", "category_id", "keypoints": [K, 3] float64, "score", "annotation_id"}``
    (``annotation_id`` is ``None`` unless the record names the GT annotation it was predicted for). A missing
    ``category_id`` defaults to the ground truth's only category; a missing ``score`` to the mean keypoint score.

    Raises:
        EvaluationInputError: empty file or list, unknown image id or category, wrong keypoint count, NaN values.
    """
    name = source_name(source, "predictions")
    data = load_json(source, "prediction")
    if isinstance(data, Mapping) and isinstance(data.get("annotations"), list):
        data = data["annotations"]  # a COCO-style file holding results under "annotations"
    if not isinstance(data, list):
        raise _fail(name, "predictions must be a JSON list of {image_id, category_id, keypoints, score}")
    if not data:
        raise _fail(name, "contains no predictions")
    image_ids = {img["id"] for img in gt["images"]}
    cat_ids = [c["id"] for c in gt["categories"]]
    k = gt["num_keypoints"]
    out = []
    for i, pred in enumerate(data):
        rec = f"{name}: prediction[{i}]"
        if not isinstance(pred, Mapping):
            raise EvaluationInputError(f"{rec} is not an object")
        if pred.get("image_id") not in image_ids:
            raise EvaluationInputError(f"{rec} has image_id {pred.get('image_id')!r}, which is not an image of "
                                       "the ground truth")
        cat = pred.get("category_id", cat_ids[0] if len(cat_ids) == 1 else None)
        if cat not in cat_ids:
            raise EvaluationInputError(f"{rec} has category_id {cat!r}; the ground truth has {cat_ids}")
        kpts = _prediction_keypoints(pred)
        if kpts is None:
            raise EvaluationInputError(f"{rec} has no 'keypoints'")
        arr = keypoint_array(kpts, k, rec)
        score = pred.get("score", float(arr[:, 2].mean()))
        try:
            score = float(score)
        except (TypeError, ValueError):
            raise EvaluationInputError(f"{rec}: 'score' must be a number, got {score!r}") from None
        if not math.isfinite(score):
            raise EvaluationInputError(f"{rec}: 'score' is {score}")
        out.append({"image_id": pred["image_id"], "category_id": cat, "keypoints": arr, "score": score,
                    "annotation_id": pred.get("annotation_id")})
    return out
