"""``coco_wholebody``: COCO-WholeBody v1.0 (``coco_wholebody_{train,val}_v1.0.json``), 133 keypoints.

Keypoints are concatenated in the official order: body 17 (``keypoints``), foot 6 (``foot_kpts``), face 68
(``face_kpts``), left hand 21 (``lefthand_kpts``), right hand 21 (``righthand_kpts``). The part boxes and validity
flags are kept for the WholeBody protocol. Face/hand visibilities keep the source's values, some of which are
fractional annotator confidences (v > 0 means labelled).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...skeletons import get_skeleton
from .base import Corpus, MalformedRecordError, parse_box, parse_keypoints, require
from .coco_style import read_coco_style
from .options import ConvertOptions

PARTS: tuple[tuple[str, int], ...] = (
    ("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68), ("lefthand_kpts", 21), ("righthand_kpts", 21),
)
PART_BOXES = ("face_box", "lefthand_box", "righthand_box")
PART_VALID = ("face_valid", "lefthand_valid", "righthand_valid", "foot_valid")
NUM_KEYPOINTS = sum(n for _, n in PARTS)


def _keypoints(ann: Mapping[str, Any], num_keypoints: int, source: str, record: str) -> np.ndarray:
    if num_keypoints != NUM_KEYPOINTS:
        raise MalformedRecordError(source, record, "keypoints", f"COCO-WholeBody has {NUM_KEYPOINTS} keypoints but "
                                   f"the skeleton has {num_keypoints}")
    parts = [parse_keypoints(require(ann, key, source, record), count, source, record, key) for key, count in PARTS]
    return np.concatenate(parts, axis=0)


def _extras(ann: Mapping[str, Any], source: str, record: str) -> dict[str, Any]:
    out: dict[str, Any] = {key: parse_box(require(ann, key, source, record), source, record, key).tolist()
                           for key in PART_BOXES}
    for key in PART_VALID:
        value = require(ann, key, source, record)
        if not isinstance(value, (bool, int)) or isinstance(value, int) and value not in (0, 1):
            raise MalformedRecordError(source, record, key, f"expected true/false, got {value!r}")
        out[key] = bool(value)
    return out


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    return read_coco_style(annotations, format_name="coco_wholebody",
                           skeleton=options.skeleton or get_skeleton("coco_wholebody"),
                           read_keypoints=_keypoints, object_extras=_extras,
                           object_extra_names=PART_BOXES + PART_VALID)
