"""posebh_hf: PoseBH multi-skeleton pose estimation in the Hugging Face ecosystem."""

from __future__ import annotations

__version__ = "0.1.0"

from .skeletons import Skeleton, SkeletonError, get_skeleton, list_skeletons  # noqa: E402

__all__ = ["Skeleton", "SkeletonError", "__version__", "get_skeleton", "list_skeletons"]
