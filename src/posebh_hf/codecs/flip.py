"""Flip-back of heatmaps predicted on a mirrored crop (spec 6.2), numpy and torch.

Channel ``k`` of the result is channel ``flip_indices[k]`` of the input mirrored along W (mmpose ``flip_back``).
With ``shift=True`` (non-UDP datasets) column ``j`` then takes column ``j - 1`` (column 0 keeps its value),
mmpose's ``shift_heatmap``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _check_indices(flip_indices: Sequence[int], num_channels: int) -> list[int]:
    idx = [int(i) for i in flip_indices]
    if len(idx) != num_channels:
        raise ValueError(f"flip_indices has {len(idx)} entries but the heatmaps have {num_channels} channels")
    if idx and (min(idx) < 0 or max(idx) >= num_channels):
        raise ValueError(f"flip_indices must lie in [0, {num_channels}), got {idx}")
    return idx


def flip_back_heatmaps(heatmaps: np.ndarray, flip_indices: Sequence[int], shift: bool = False) -> np.ndarray:
    """Map ``[N, K, H, W]`` heatmaps of the flipped image back to the original orientation (new array)."""
    maps = np.asarray(heatmaps)
    if maps.ndim != 4:
        raise ValueError(f"heatmaps must have shape [N, K, H, W], got {maps.shape}")
    idx = _check_indices(flip_indices, maps.shape[1])
    out = np.ascontiguousarray(maps[:, idx, :, ::-1])
    if shift:
        out[..., 1:] = out[..., :-1].copy()
    return out


def flip_back_heatmaps_torch(
    heatmaps: torch.Tensor, flip_indices: Sequence[int], shift: bool = False
) -> torch.Tensor:
    """Torch version of :func:`flip_back_heatmaps` for ``[B, K, H, W]`` tensors (differentiable)."""
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must have shape [B, K, H, W], got {tuple(heatmaps.shape)}")
    idx = _check_indices(flip_indices, heatmaps.shape[1])
    index = torch.as_tensor(idx, dtype=torch.long, device=heatmaps.device)
    out = heatmaps.index_select(1, index).flip(-1)
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
    return out
