"""``pw3d``: 3DPW as COCO-style files made by PoseBH's ``tools/dataset/preprocess_3dpw.py`` (24 SMPL joints).

Those files mark a joint 1 when its projection lies inside the image (and in front of the camera), else 0. In COCO
semantics that is "labelled" (v = 2) or "not labelled" (v = 0); the projected x, y are kept either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...skeletons import get_skeleton
from .base import Corpus
from .coco_style import default_keypoints, read_coco_style
from .options import ConvertOptions


def _keypoints(ann: Mapping[str, Any], num_keypoints: int, source: str, record: str) -> np.ndarray:
    kpts = default_keypoints(ann, num_keypoints, source, record)
    kpts[:, 2] = np.where(kpts[:, 2] > 0, 2.0, 0.0)
    return kpts


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    return read_coco_style(annotations, format_name="pw3d", skeleton=options.skeleton or get_skeleton("smpl24"),
                           read_keypoints=_keypoints)
