"""Foreground pixel sampling ("hm_sample", spec §4.3).

Symbols: N samples, D embedding dim, K heatmap channels, H x W heatmap size, n sampled pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SampledPixels", "sample_foreground_pixels"]


@dataclass(frozen=True)
class SampledPixels:
    """Pixels kept by `sample_foreground_pixels`, in (sample, row, column) order.

    Attributes:
        embeddings: `[n, D]` raw embeddings (not normalised; gradient flows to the embedding map).
        classes: `[n]` long local channel index (argmax over K, first index on ties).
        confidences: `[n]` heatmap maximum over K at the pixel (no gradient).
        sample_index: `[n]` long index of the pixel's sample in [0, N).
    """

    embeddings: Tensor
    classes: Tensor
    confidences: Tensor
    sample_index: Tensor

    def __len__(self) -> int:
        return int(self.classes.shape[0])


def sample_foreground_pixels(embeddings: Tensor, heatmaps: Tensor, threshold: float = 0.0) -> SampledPixels:
    """Keep the pixels whose heatmap maximum over channels exceeds `threshold`.

    Args:
        embeddings: `[N, D, H, W]` embedding map.
        heatmaps: `[N, K, H, W]` GT-like heatmaps (no gradient is taken through them).
        threshold: strict lower bound on the per-pixel maximum (0.0 MDT: every pixel with any nonzero target).

    Returns:
        `SampledPixels`.
    """
    if embeddings.dim() != 4 or heatmaps.dim() != 4 or embeddings.shape[0] != heatmaps.shape[0] \
            or embeddings.shape[2:] != heatmaps.shape[2:]:
        raise ValueError(f"sample_foreground_pixels: need embeddings [N, D, H, W] and heatmaps [N, K, H, W] "
                         f"with equal N, H, W; got {tuple(embeddings.shape)} and {tuple(heatmaps.shape)}")
    num, dim, height, width = embeddings.shape
    emb_flat = embeddings.permute(0, 2, 3, 1).reshape(-1, dim)
    heat_flat = heatmaps.detach().permute(0, 2, 3, 1).reshape(-1, heatmaps.shape[1])
    if heat_flat.shape[1] == 0:
        keep = torch.zeros(heat_flat.shape[0], dtype=torch.bool, device=heat_flat.device)
        conf = heat_flat.new_zeros(heat_flat.shape[0])
        cls = torch.zeros_like(keep, dtype=torch.long)
    else:
        conf = heat_flat.amax(dim=1)
        cls = heat_flat.argmax(dim=1)  # first maximal index on ties
        keep = conf > threshold
    sample = torch.arange(num, device=embeddings.device).repeat_interleave(height * width)
    return SampledPixels(emb_flat[keep], cls[keep], conf[keep].float(), sample[keep])
