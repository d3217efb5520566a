"""``crowdpose``: CrowdPose COCO-style files (14 keypoints); each image's ``crowdIndex`` is kept as ``crowd_index``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...skeletons import get_skeleton
from .base import Corpus, MalformedRecordError, require
from .coco_style import read_coco_style
from .options import ConvertOptions


def _crowd_index(image: Mapping[str, Any], source: str, record: str) -> dict[str, Any]:
    value = require(image, "crowdIndex", source, record)
    try:
        crowd = float(value)
    except (TypeError, ValueError):
        raise MalformedRecordError(source, record, "crowdIndex", f"expected a number, got {value!r}") from None
    if not math.isfinite(crowd) or crowd < 0:
        raise MalformedRecordError(source, record, "crowdIndex", f"expected a finite number >= 0, got {value!r}")
    return {"crowd_index": crowd}


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    return read_coco_style(annotations, format_name="crowdpose",
                           skeleton=options.skeleton or get_skeleton("crowdpose"),
                           image_extras=_crowd_index, image_extra_names=("crowd_index",))
