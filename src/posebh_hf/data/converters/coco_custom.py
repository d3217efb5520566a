"""``coco-custom``: any COCO-style keypoint file; the skeleton comes from its keypoint category.

The category's ``keypoints`` (names), 1-based ``skeleton`` links and optional 0-based ``flip_pairs`` / ``sigmas``
become a :class:`Skeleton` (flip pairs are inferred from left/right names when absent). With several keypoint
categories, they must share one layout (AP-10K style) or ``category_id`` picks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...skeletons import Skeleton
from .base import Corpus
from .coco_style import load_coco_dict, read_coco_style
from .options import ConvertOptions


def category_skeleton(data: Mapping[str, Any], source: str, category_id: int | None = None) -> Skeleton:
    """The skeleton of the file's keypoint category (or of ``category_id``)."""
    categories = [c for c in data.get("categories") or [] if isinstance(c, Mapping) and c.get("keypoints")]
    if category_id is not None:
        categories = [c for c in categories if c.get("id") == category_id]
        if not categories:
            raise ValueError(f"{source}: no keypoint category with id {category_id}")
    if not categories:
        raise ValueError(f"{source}: no category with a 'keypoints' list; pass --skeleton NAME_OR_JSON")
    layouts = {tuple(c["keypoints"]) for c in categories}
    if len(layouts) > 1:
        ids = [c.get("id") for c in categories]
        raise ValueError(f"{source}: categories {ids} have different keypoint lists; choose one with --category-id")
    return Skeleton.from_coco_category(categories[0])


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    data = load_coco_dict(annotations)
    skeleton = options.skeleton or category_skeleton(data, str(annotations), options.category_id)
    if options.skeleton_name:
        skeleton = skeleton.renamed(options.skeleton_name)
    if options.category_id is not None:
        # Other categories may have other layouts: drop their annotations before they are parsed.
        data = {**data, "annotations": [a for a in data["annotations"]
                                        if isinstance(a, Mapping) and a.get("category_id") == options.category_id]}
    return read_coco_style(annotations, format_name="coco-custom", skeleton=skeleton, data=data)
