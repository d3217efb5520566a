"""Loading and validating ground truth and predictions (layer 1).

Ground truth is a COCO keypoint dataset (``images``, ``annotations``, ``categories``) given as a path or a dict.
Predictions are in the COCO results format: a JSON list of ``{"image_id", "category_id", "keypoints": [x, y, score]
* K, "score"}``. Every problem raises :class:`EvaluationInputError` naming the file, the record and the value.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np

from .errors import EvaluationInputError

__all__ = [
    "JsonSource",
    "gc_paused",
    "paused_gc",
    "keypoint_array",
    "keypoint_block",
    "load_coco_ground_truth",
    "load_coco_predictions",
    "load_json",
    "source_name",
]

JsonSource = str | Path | Mapping[str, Any] | Sequence[Any]
P = ParamSpec("P")
R = TypeVar("R")

# The four part fields of mmpose's COCO-WholeBody files, concatenated in this order after the 17 body keypoints.
WHOLEBODY_PART_FIELDS = ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while evaluation data is built.

    Loading a COCO-val-sized file creates ~10^6 small objects; the collector's full passes over them cost ~1 s
    per evaluation and nothing here creates reference cycles worth collecting early. Restores the previous state.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def paused_gc(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`gc_paused`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with gc_paused():
            return func(*args, **kwargs)

    return wrapper


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


def keypoint_block(values: Sequence[Any], num_keypoints: int, record: Callable[[int], str]) -> np.ndarray:
    """Many flat keypoint lists -> float64 [N, K, 3] in one conversion; the first bad record raises its error."""
    arr = None
    with contextlib.suppress(TypeError, ValueError):
        arr = np.array(values, dtype=np.float64)
    if arr is None or arr.ndim != 2 or arr.shape[1] != 3 * num_keypoints or not np.isfinite(arr).all():
        for i, value in enumerate(values):
            keypoint_array(value, num_keypoints, record(i))  # raises the precise message
    return np.asarray(arr).reshape(len(values), num_keypoints, 3)


def _boxes(values: Sequence[Any], record: Callable[[int], str]) -> np.ndarray:
    """[N, 4] finite boxes, or the first bad record's error."""
    arr = None
    with contextlib.suppress(TypeError, ValueError):
        arr = np.array(values, dtype=np.float64)
    if arr is None or arr.shape != (len(values), 4) or not np.isfinite(arr).all():
        for i, box in enumerate(values):
            try:
                good = len(box) == 4 and all(math.isfinite(float(v)) for v in box)
            except (TypeError, ValueError):
                good = False
            if not good:
                raise EvaluationInputError(f"{record(i)} needs a finite 'bbox' [x, y, w, h], got {box!r}")
    return np.asarray(arr, dtype=np.float64).reshape(len(values), 4)


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

    Returns a new dict ``{"images", "categories", "annotations", "num_keypoints"}`` where every annotation has
    ``keypoints`` as a float64 ``[K, 3]`` array (COCO-WholeBody part fields concatenated), ``bbox``, ``iscrowd``
    (default 0) and ``area`` (``None`` when absent). Crowd annotations may lack keypoints (zeros).

    Args:
        source: path or parsed dict.
        num_keypoints: expected K; inferred from the first annotation with keypoints when ``None``.
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
    anns, kpts_list = [], []
    for i, ann in enumerate(data["annotations"]):
        rec = f"{name}: annotations[{i}]"
        if not isinstance(ann, Mapping) or "image_id" not in ann:
            raise EvaluationInputError(f"{rec} has no 'image_id'")
        if ann["image_id"] not in image_ids:
            raise EvaluationInputError(f"{rec} refers to image_id {ann['image_id']!r} not in 'images'")
        kpts = _gt_keypoints(ann)
        if kpts is None and not ann.get("iscrowd", 0):
            raise EvaluationInputError(f"{rec} has no 'keypoints'")
        if num_keypoints is None and kpts:
            if len(kpts) % 3:
                raise EvaluationInputError(f"{rec}: 'keypoints' length {len(kpts)} is not a multiple of 3")
            num_keypoints = len(kpts) // 3
        anns.append((i, ann))
        kpts_list.append(kpts or None)
    if num_keypoints is None:
        raise _fail(name, "no annotation has keypoints")
    k = num_keypoints
    filled = [v if v is not None else [0.0] * (3 * k) for v in kpts_list]
    block = keypoint_block(filled, k, lambda j: f"{name}: annotations[{anns[j][0]}]")
    boxes = _boxes([ann.get("bbox") for _, ann in anns], lambda j: f"{name}: annotations[{anns[j][0]}]")
    annotations = []
    for j, (i, ann) in enumerate(anns):
        area = ann.get("area")
        annotations.append({
            "id": ann.get("id", i + 1), "image_id": ann["image_id"], "category_id": ann.get("category_id", 1),
            "keypoints": block[j], "bbox": boxes[j].tolist(), "iscrowd": int(ann.get("iscrowd", 0) or 0),
            "area": None if area is None else float(area),
        })
    categories = [dict(c) for c in data.get("categories") or [{"id": 1, "name": "person"}]]
    return {"images": images, "annotations": annotations, "categories": categories, "num_keypoints": k}


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
    records = []
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
        records.append((pred, cat, kpts))
    block = keypoint_block([r[2] for r in records], k, lambda j: f"{name}: prediction[{j}]")
    out = []
    for i, (pred, cat, _) in enumerate(records):
        score = pred.get("score", float(block[i, :, 2].mean()))
        try:
            score = float(score)
        except (TypeError, ValueError):
            raise EvaluationInputError(f"{name}: prediction[{i}]: 'score' must be a number, got {score!r}") from None
        if not math.isfinite(score):
            raise EvaluationInputError(f"{name}: prediction[{i}]: 'score' is {score}")
        out.append({"image_id": pred["image_id"], "category_id": cat, "keypoints": block[i], "score": score,
                    "annotation_id": pred.get("annotation_id")})
    return out
