"""Dataset merging by keypoint mapping: train one skeleton's head on another corpus's instances.

The baseline the PoseBH paper argues against (and a feature users ask for: one model from several corpora whose
skeletons overlap). An instance of the *source* corpus (e.g. LSPe, 14 joints) becomes a training sample of the
*target* skeleton (e.g. COCO, 17): each target keypoint takes the source keypoint mapped onto it, and target keypoints
without a source stay unlabelled (weight 0), so only the shared joints are learnt from the source corpus. The sample
goes through the target dataset's expert and head (its `dataset_index`).

Symbols: K_s source keypoints, K_t target keypoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..skeletons import Skeleton
from .transform import PoseTrainTransform

__all__ = ["BY_NAME", "KeypointMappedTransform", "keypoint_index_map"]

BY_NAME = "by_name"


def keypoint_index_map(source: Skeleton, target: Skeleton, keypoints: str | Mapping[str, str] = BY_NAME
                       ) -> np.ndarray:
    """`[K_t]` int64: for each target keypoint, the source keypoint index that labels it, or -1.

    Args:
        source: the skeleton of the corpus whose instances are reused.
        target: the skeleton whose head learns from them.
        keypoints: "by_name" (keypoints with the same name in both skeletons), or an explicit
            ``{source_name: target_name}`` mapping.

    Raises:
        ValueError: an unknown name, a target keypoint mapped twice, or a mapping that shares no keypoint.
    """
    src_names, dst_names = list(source.keypoint_names), list(target.keypoint_names)
    if isinstance(keypoints, str):
        if keypoints != BY_NAME:
            raise ValueError(f"keypoint mapping {keypoints!r} is unknown; give {BY_NAME!r} or a "
                             "{source_name: target_name} mapping")
        pairs = {name: name for name in src_names if name in dst_names}
    else:
        pairs = dict(keypoints)
    index = np.full(len(dst_names), -1, dtype=np.int64)
    for src, dst in pairs.items():
        if src not in src_names:
            raise ValueError(f"keypoint mapping {source.name} -> {target.name}: {src!r} is not a keypoint of "
                             f"{source.name} ({src_names})")
        if dst not in dst_names:
            raise ValueError(f"keypoint mapping {source.name} -> {target.name}: {dst!r} is not a keypoint of "
                             f"{target.name} ({dst_names})")
        k = dst_names.index(dst)
        if index[k] >= 0:
            raise ValueError(f"keypoint mapping {source.name} -> {target.name}: {dst!r} is mapped twice")
        index[k] = src_names.index(src)
    if not (index >= 0).any():
        raise ValueError(f"keypoint mapping {source.name} -> {target.name} shares no keypoint (by name: none of "
                         f"{src_names} is in {dst_names}); give an explicit {{source_name: target_name}} mapping")
    return index


def _remap(keypoints: Any, index: np.ndarray, num_source: int) -> np.ndarray:
    """`[K_s * 3]` flat COCO keypoints -> `[K_t, 3]` in target order (unmapped: 0, 0, 0)."""
    src = np.asarray(keypoints, dtype=np.float32).reshape(num_source, 3)
    out = np.zeros((len(index), 3), dtype=np.float32)
    mapped = index >= 0
    out[mapped] = src[index[mapped]]
    return out


class KeypointMappedTransform(PoseTrainTransform):
    """The target skeleton's training transform applied to a source corpus's instances.

    Flip augmentation uses the target's flip pairs, which is right because the keypoints are remapped before any
    augmentation. Instance selection reads the source keypoints, so a source instance labelled only on unmapped
    joints becomes a sample with zero weights (it costs a forward pass and teaches nothing).
    """

    def __init__(self, source: Skeleton, target: Skeleton, index: np.ndarray, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.source_skeleton = source
        self.index = np.asarray(index, dtype=np.int64)
        if self.index.shape != (target.num_keypoints,):
            raise ValueError(f"mapping index must have shape ({target.num_keypoints},), got {self.index.shape}")

    def encode(self, image: np.ndarray, obj: Mapping[str, Any], width: int, height: int, image_id: int,
               object_index: int) -> dict[str, Any]:
        mapped = dict(obj)
        mapped["keypoints"] = _remap(obj["keypoints"], self.index, self.source_skeleton.num_keypoints)
        return super().encode(image, mapped, width, height, image_id, object_index)

    def __repr__(self) -> str:
        return (f"KeypointMappedTransform({self.source_skeleton.name!r} -> {self.skeleton.name!r}, "
                f"{int((self.index >= 0).sum())} shared keypoints, dataset_index={self.dataset_index})")
