"""Options a converter may take beyond the annotation file (only some formats use each one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...skeletons import Skeleton

__all__ = ["ConvertOptions"]


@dataclass(frozen=True)
class ConvertOptions:
    """Per-format inputs.

    Attributes:
        skeleton: overrides the format's built-in skeleton (coco-custom: overrides the file's category).
        skeleton_name: renames the skeleton (useful for coco-custom, whose categories are often just "person").
        category_id: coco-custom with several keypoint categories: the one whose annotations to keep.
        head_boxes: MPII head boxes, a ``.json`` (``entries[i].headbox``) or ``.mat`` (``headboxes_src``) file.
        camera: InterHand2.6M camera file (default: the annotation file with ``_data`` -> ``_camera``).
        joints_3d: InterHand2.6M world joints file (default: ``_data`` -> ``_joint_3d``).
    """

    skeleton: Skeleton | None = None
    skeleton_name: str | None = None
    category_id: int | None = None
    head_boxes: Path | None = None
    camera: Path | None = None
    joints_3d: Path | None = None
