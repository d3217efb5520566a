"""``ap10k``: AP-10K (``ap10k-{train,val,test}-split1.json``), 17 animal keypoints, one category per species."""

from __future__ import annotations

from pathlib import Path

from ...skeletons import get_skeleton
from .base import Corpus
from .coco_style import read_coco_style
from .options import ConvertOptions


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    return read_coco_style(annotations, format_name="ap10k", skeleton=options.skeleton or get_skeleton("ap10k"))
