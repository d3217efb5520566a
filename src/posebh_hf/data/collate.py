"""Collate training samples of one or several skeletons into one batch.

Samples of different skeletons have different K; targets, weights and keypoints are zero-padded to ``K_max``
(the collator's ``max_num_keypoints``, e.g. 133 for the six MDT datasets, or the largest K in the batch), and padded
channels have weight 0. Losses take ``target[i, :K_d]`` for a sample of dataset ``d = dataset_index[i]``
(:func:`indices_by_dataset` groups the batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["PoseCollator", "indices_by_dataset"]


class PoseCollator:
    """``list of samples -> batch`` with:

    - ``pixel_values`` ``[B, 3, H_in, W_in]`` float32
    - ``target`` ``[B, K_max, H, W]`` float32, ``target_weight`` ``[B, K_max]`` float32 (0 on padding)
    - ``keypoints`` ``[B, K_max, 3]`` float32 (crop pixels + visibility), ``num_keypoints`` ``[B]`` int64 (each K)
    - ``dataset_index``, ``image_id``, ``object_index`` ``[B]`` int64

    Args:
        max_num_keypoints: pad to this K (fixed shapes across batches); ``None`` pads to the batch's largest K.
    """

    def __init__(self, max_num_keypoints: int | None = None) -> None:
        self.max_num_keypoints = max_num_keypoints

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        ks = [int(np.shape(s["target_weight"])[0]) for s in samples]
        k_max = max(ks) if self.max_num_keypoints is None else self.max_num_keypoints
        if max(ks) > k_max:
            raise ValueError(f"a sample has {max(ks)} keypoints, more than max_num_keypoints={k_max}")
        _, height, width = np.shape(samples[0]["target"])
        batch = len(samples)
        target = np.zeros((batch, k_max, height, width), np.float32)
        weight = np.zeros((batch, k_max), np.float32)
        keypoints = np.zeros((batch, k_max, 3), np.float32)
        for i, (sample, k) in enumerate(zip(samples, ks, strict=True)):
            target[i, :k] = sample["target"]
            weight[i, :k] = sample["target_weight"]
            keypoints[i, :k] = sample["keypoints"]
        return {
            "pixel_values": torch.from_numpy(np.stack([np.asarray(s["pixel_values"], np.float32) for s in samples])),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(weight),
            "keypoints": torch.from_numpy(keypoints),
            "num_keypoints": torch.tensor(ks, dtype=torch.int64),
            **{key: torch.tensor([int(s[key]) for s in samples], dtype=torch.int64)
               for key in ("dataset_index", "image_id", "object_index")},
        }


def indices_by_dataset(dataset_index: torch.Tensor) -> dict[int, torch.Tensor]:
    """``{d: positions of the batch's samples from dataset d}`` (``dataset_index`` ``[B]``), in ascending ``d``."""
    return {int(d): torch.nonzero(dataset_index == d, as_tuple=True)[0] for d in torch.unique(dataset_index)}
