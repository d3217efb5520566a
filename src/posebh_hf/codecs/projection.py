"""Heatmap pixel <-> image pixel mapping for a top-down crop (spec 6.4 step 3; mmpose ``transform_preds``).

UDP divides the ROI by ``size - 1`` (pixel centres at the ends), the default (MSRA) mapping by ``size``.
Rotation is not undone (test-time crops are never rotated). ``scale`` is in pixel_std (200 px) units.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..geometry import PIXEL_STD


def _per_pixel(scale_px: np.ndarray, heatmap_size: Sequence[int], udp: bool) -> np.ndarray:
    size = np.asarray(heatmap_size, dtype=np.float64)
    if size.shape != (2,) or np.any(size < 2):
        raise ValueError(f"heatmap_size must be (W, H) with both >= 2, got {tuple(heatmap_size)}")
    return scale_px / (size - 1.0 if udp else size)


def heatmap_to_image(
    coords: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    heatmap_size: Sequence[int],
    udp: bool = True,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """Map heatmap-pixel coordinates back to image pixels.

    ``X = x * (scale_x * 200) / (W - 1) + center_x - scale_x * 200 / 2`` for UDP (``/ W`` otherwise), same for y.

    Args:
        coords: ``[K, 2]`` or ``[N, K, 2]`` heatmap pixels.
        center: ``[2]`` or ``[N, 2]`` image pixels.
        scale: ``[2]`` or ``[N, 2]`` pixel_std units.
        heatmap_size: ``(W, H)``.
        udp: UDP (``size - 1``) or default (``size``) mapping.

    Returns:
        Image coordinates with the shape of ``coords``, float32.
    """
    pts = np.asarray(coords, dtype=np.float64)
    scale_px = np.asarray(scale, dtype=np.float64) * pixel_std
    c = np.asarray(center, dtype=np.float64)
    if pts.ndim == 3:  # batched: one box per sample
        scale_px, c = scale_px[:, None, :], c[:, None, :]
    out = pts * _per_pixel(scale_px, heatmap_size, udp) + c - scale_px * 0.5
    return out.astype(np.float32)


def image_to_heatmap(
    points: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    heatmap_size: Sequence[int],
    udp: bool = True,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """Inverse of :func:`heatmap_to_image` (same shapes and conventions); float32."""
    pts = np.asarray(points, dtype=np.float64)
    scale_px = np.asarray(scale, dtype=np.float64) * pixel_std
    c = np.asarray(center, dtype=np.float64)
    if pts.ndim == 3:
        scale_px, c = scale_px[:, None, :], c[:, None, :]
    out = (pts - c + scale_px * 0.5) / _per_pixel(scale_px, heatmap_size, udp)
    return out.astype(np.float32)
