"""Batch layout shared by the losses: keypoint offsets and input checks.

Symbols: B batch, D_s datasets, K_d keypoints of dataset d, K_max padded target channels (133 in MDT),
K_tot = sum_d K_d prototype rows, H x W heatmap size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_targets", "keypoint_offsets", "weights_2d"]


def keypoint_offsets(num_keypoints: Sequence[int]) -> list[int]:
    """off_d = K_0 + ... + K_{d-1}: the first global prototype row of dataset d (spec §2.3)."""
    if not num_keypoints or any(int(k) < 1 for k in num_keypoints):
        raise ValueError(f"num_keypoints must be a non-empty list of positive ints; got {list(num_keypoints)}")
    offsets, total = [], 0
    for k in num_keypoints:
        offsets.append(total)
        total += int(k)
    return offsets


def weights_2d(target_weights: Tensor) -> Tensor:
    """Target weights as `[B, K]` from `[B, K, 1]` or `[B, K]`."""
    if target_weights.dim() == 3 and target_weights.shape[-1] == 1:
        return target_weights[..., 0]
    if target_weights.dim() != 2:
        raise ValueError(f"target_weights must have shape [B, K, 1] or [B, K]; got {tuple(target_weights.shape)}")
    return target_weights


def check_targets(targets: Tensor, target_weights: Tensor, dataset_index: Tensor,
                  num_keypoints: Sequence[int]) -> None:
    """Validate padded targets `[B, K_max, H, W]`, weights `[B, K_max(, 1)]` and `dataset_index` `[B]`."""
    if targets.dim() != 4:
        raise ValueError(f"targets must have shape [B, K_max, H, W]; got {tuple(targets.shape)}")
    batch, k_max = targets.shape[:2]
    weights = weights_2d(target_weights)
    if tuple(weights.shape) != (batch, k_max):
        raise ValueError(f"target_weights shape {tuple(target_weights.shape)} does not match targets "
                         f"{tuple(targets.shape)}")
    if tuple(dataset_index.shape) != (batch,) or dataset_index.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"dataset_index must be an integer tensor of shape [{batch}]; got "
                         f"{tuple(dataset_index.shape)} {dataset_index.dtype}")
    if max(num_keypoints) > k_max:
        raise ValueError(f"targets have {k_max} channels but a dataset has {max(num_keypoints)} keypoints")
    if batch and (int(dataset_index.min()) < 0 or int(dataset_index.max()) >= len(num_keypoints)):
        raise ValueError(f"dataset_index values must lie in [0, {len(num_keypoints)}); got "
                         f"[{int(dataset_index.min())}, {int(dataset_index.max())}]")
