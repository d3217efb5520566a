"""Converters from each corpus's native annotation files to :class:`Corpus` streams (one module per format)."""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import Corpus, ImageRecord, MalformedRecordError
from .options import ConvertOptions

__all__ = ["FORMATS", "ConvertOptions", "Corpus", "ImageRecord", "MalformedRecordError", "read_corpus"]

# format name -> module (in this package) exposing `convert(annotations: Path, options) -> Corpus`
FORMATS: dict[str, str] = {
    "coco": "coco",
    "coco_wholebody": "coco_wholebody",
    "aic": "aic",
    "mpii": "mpii",
    "ap10k": "ap10k",
    "apt36k": "apt36k",
    "crowdpose": "crowdpose",
    "ochuman": "ochuman",
    "pw3d": "pw3d",
    "interhand": "interhand",
    "coco-custom": "coco_custom",
}


def read_corpus(format_name: str, annotations: str | Path, options: ConvertOptions | None = None) -> Corpus:
    """Parse ``annotations`` in ``format_name``; unknown formats and unreadable files raise one clear error."""
    if format_name not in FORMATS:
        raise ValueError(f"unknown format {format_name!r}; choose one of {', '.join(FORMATS)}")
    module = importlib.import_module(f"{__name__}.{FORMATS[format_name]}")
    return module.convert(Path(annotations), options or ConvertOptions())
