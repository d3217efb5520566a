"""What every converter shares: records, the malformed-record error, JSON loading and instance validation.

A converter turns a corpus's native annotation file into a :class:`Corpus`: the skeleton, the extra fields it fills,
and a stream of :class:`ImageRecord` (one per image, instances already in the schema's form). A record that cannot be
converted is *yielded* as a :class:`MalformedRecordError` instead of raised, so the builder decides whether to stop
(the default) or skip and count it (``--skip-bad``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...skeletons import Skeleton

__all__ = [
    "Corpus",
    "ImageRecord",
    "MalformedRecordError",
    "load_json",
    "make_object",
    "parse_box",
    "parse_floats",
    "parse_keypoints",
    "require",
]


class MalformedRecordError(ValueError):
    """One record of an annotation file is unusable; the message names the file, the record and the field."""

    def __init__(self, source: str, record: str, field_name: str, problem: str) -> None:
        self.source, self.record, self.field, self.problem = source, record, field_name, problem
        super().__init__(f"{source}: {record}: field {field_name!r}: {problem}")


@dataclass
class ImageRecord:
    """One image and its converted instances (``objects`` follow the schema of ``features.py``).

    ``width`` / ``height`` may be None when the annotation file does not give them (AIC, MPII); the builder then
    reads them from the image header.
    """

    image_id: int
    file_name: str
    width: int | None
    height: int | None
    objects: list[dict[str, Any]]
    record: str  # how error messages name this image, e.g. "image id=785"
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Corpus:
    """A parsed annotation file: ``records`` is a one-shot iterator of images (or malformed-record errors)."""

    format: str
    source: str
    skeleton: Skeleton
    num_images: int
    records: Iterator[ImageRecord | MalformedRecordError]
    image_extras: tuple[str, ...] = ()
    object_extras: tuple[str, ...] = ()


def load_json(path: str | Path, what: str = "annotation file") -> Any:
    """Read a JSON file; missing files and invalid JSON become one clear ValueError/FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from None


def require(mapping: Any, key: str, source: str, record: str) -> Any:
    """``mapping[key]``, or a MalformedRecordError naming the missing field."""
    if not isinstance(mapping, Mapping):
        raise MalformedRecordError(source, record, key, f"record is a {type(mapping).__name__}, not an object")
    if key not in mapping or mapping[key] is None:
        raise MalformedRecordError(source, record, key, "missing")
    return mapping[key]


def parse_floats(values: Any, source: str, record: str, field_name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise MalformedRecordError(source, record, field_name, f"not a list of numbers: {str(values)[:60]}") from None
    if arr.dtype == object:
        raise MalformedRecordError(source, record, field_name, "ragged or non-numeric values")
    if not np.all(np.isfinite(arr)):
        raise MalformedRecordError(source, record, field_name, "contains NaN or infinite values")
    return arr


def parse_keypoints(values: Any, num_keypoints: int, source: str, record: str, field_name: str = "keypoints"
                    ) -> np.ndarray:
    """Flat ``[x1, y1, v1, ...]`` (or ``[K, 3]``) -> float32 ``[K, 3]``; checks count, finiteness and 0 <= v <= 2."""
    arr = parse_floats(values, source, record, field_name).reshape(-1)
    if arr.size != num_keypoints * 3:
        raise MalformedRecordError(source, record, field_name, f"expected {num_keypoints * 3} values "
                                   f"({num_keypoints} keypoints x 3), got {arr.size}")
    kpts = arr.reshape(num_keypoints, 3)
    bad = np.flatnonzero((kpts[:, 2] < 0) | (kpts[:, 2] > 2))
    if bad.size:
        raise MalformedRecordError(source, record, field_name, f"visibility of keypoint {int(bad[0])} is "
                                   f"{kpts[bad[0], 2]:g}, expected 0, 1 or 2")
    return kpts.astype(np.float32)


def parse_box(values: Any, source: str, record: str, field_name: str = "bbox") -> np.ndarray:
    """``[x, y, w, h]`` -> float32 ``[4]``; checks length, finiteness and non-negative size."""
    arr = parse_floats(values, source, record, field_name).reshape(-1)
    if arr.size != 4:
        raise MalformedRecordError(source, record, field_name, f"expected 4 values (x, y, w, h), got {arr.size}")
    if arr[2] < 0 or arr[3] < 0:
        raise MalformedRecordError(source, record, field_name, f"negative box size w={arr[2]:g}, h={arr[3]:g}")
    return arr.astype(np.float32)


def make_object(
    *,
    source: str,
    record: str,
    object_id: int,
    bbox: Any,
    keypoints: np.ndarray,
    category_id: int = 1,
    area: float | None = None,
    iscrowd: int = 0,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One instance in schema form; ``bbox`` is parsed and checked, ``keypoints`` must come from parse_keypoints."""
    box = parse_box(bbox, source, record)
    if area is None:
        area = float(box[2] * box[3])
    elif not math.isfinite(float(area)) or float(area) < 0:
        raise MalformedRecordError(source, record, "area", f"must be a finite number >= 0, got {area!r}")
    return {
        "id": int(object_id),
        "category_id": int(category_id),
        "bbox": box.tolist(),
        "keypoints": keypoints,
        "num_keypoints": int(np.count_nonzero(keypoints[:, 2] > 0)),
        "area": float(area),
        "iscrowd": int(bool(iscrowd)),
        **(extras or {}),
    }


def as_int(value: Any, source: str, record: str, field_name: str) -> int:
    """An integer id (ints or integral floats/strings), else a MalformedRecordError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MalformedRecordError(source, record, field_name, f"expected an integer, got {value!r}") from None
    if not number.is_integer():
        raise MalformedRecordError(source, record, field_name, f"expected an integer, got {value!r}")
    return int(number)


def ensure_sequence(value: Any, source: str, key: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{source}: top-level {key!r} must be a list, got {type(value).__name__}")
    return value
