"""``coco``: COCO person keypoints (``person_keypoints_{train,val}2017.json``), 17 keypoints."""

from __future__ import annotations

from pathlib import Path

from ...skeletons import get_skeleton
from .base import Corpus
from .coco_style import read_coco_style
from .options import ConvertOptions


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    return read_coco_style(annotations, format_name="coco", skeleton=options.skeleton or get_skeleton("coco"))
