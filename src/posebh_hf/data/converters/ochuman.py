"""``ochuman``: OCHuman in COCO format (``ochuman_coco_format_{val,test}_range_0.00_1.00.json``), COCO-17."""

from __future__ import annotations

from pathlib import Path

from ...skeletons import get_skeleton
from .base import Corpus
from .coco_style import read_coco_style
from .options import ConvertOptions


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    return read_coco_style(annotations, format_name="ochuman",
                           skeleton=options.skeleton or get_skeleton("ochuman"))
