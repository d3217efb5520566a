"""Numpy Gaussian heatmap targets (spec 5.6), vectorised over keypoints (and an optional batch axis).

Both modes follow mmpose ``TopDownGenerateTarget`` exactly:

- ``"msra"``: stride ``input / heatmap``; the Gaussian is centred on the integer ``mu = int(kpt / stride + 0.5)``
  (peak exactly 1).
- ``"udp"``: stride ``(input - 1) / (heatmap - 1)``; the window is placed at the same integer ``mu`` but the Gaussian
  is centred on the exact sub-pixel ``kpt / stride``.

In both, values are written only inside the ``(2r + 1) x (2r + 1)`` window around ``mu`` (``r = int(3 sigma)``,
13 x 13 for sigma 2); the weight is the visibility, set to 0 when the window is entirely off the map; nothing is
written when the weight is <= 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ENCODE_MODES = ("udp", "msra")


def heatmap_stride(input_size: Sequence[int], heatmap_size: Sequence[int], udp: bool) -> np.ndarray:
    """Input pixels per heatmap pixel ``[2]`` (x, y): ``(in - 1) / (hm - 1)`` for UDP, ``in / hm`` otherwise."""
    inp = np.asarray(input_size, dtype=np.float64)
    hm = np.asarray(heatmap_size, dtype=np.float64)
    return (inp - 1.0) / (hm - 1.0) if udp else inp / hm


def _window_gaussian_1d(
    centre: np.ndarray, mu_int: np.ndarray, length: int, sigma: float, radius: int
) -> np.ndarray:
    """``[..., length]`` 1-D Gaussian ``exp(-(p - centre)^2 / 2 sigma^2)`` restricted to ``|p - mu_int| <= radius``."""
    pos = np.arange(length, dtype=np.float64)
    gauss = np.exp(-((pos - centre[..., None]) ** 2) / (2.0 * sigma**2))
    return np.where(np.abs(pos - mu_int[..., None]) <= radius, gauss, 0.0)


def encode_heatmaps(
    keypoints: np.ndarray,
    visibility: np.ndarray,
    input_size: Sequence[int] = (192, 256),
    heatmap_size: Sequence[int] = (48, 64),
    sigma: float = 2.0,
    mode: str = "udp",
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian target heatmaps and weights for keypoints given in input-crop pixels.

    Args:
        keypoints: ``[K, 2]`` or ``[N, K, 2]`` ``(x, y)`` in input-crop pixels.
        visibility: ``[K]`` / ``[N, K]`` (0/1; any value > 0.5 counts as visible, the value itself is the weight).
        input_size: crop ``(W_in, H_in)``.
        heatmap_size: heatmap ``(W, H)``.
        sigma: Gaussian sigma in heatmap pixels.
        mode: ``"udp"`` or ``"msra"``.

    Returns:
        ``targets`` ``[K, H, W]`` / ``[N, K, H, W]`` float32 and ``weights`` ``[K]`` / ``[N, K]`` float32.
    """
    if mode not in ENCODE_MODES:
        raise ValueError(f"encode mode must be one of {ENCODE_MODES}, got {mode!r}")
    kpts = np.asarray(keypoints, dtype=np.float64)
    vis = np.asarray(visibility, dtype=np.float64)
    if kpts.ndim < 2 or kpts.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape [K, 2] or [N, K, 2], got {kpts.shape}")
    if vis.shape != kpts.shape[:-1]:
        raise ValueError(f"visibility shape {vis.shape} does not match keypoints {kpts.shape[:-1]}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    width, height = int(heatmap_size[0]), int(heatmap_size[1])
    radius = int(sigma * 3)  # mmpose "3-sigma rule": tmp_size = 3 * sigma (6 for sigma 2 -> 13 x 13 window)

    finite = np.all(np.isfinite(kpts), axis=-1)
    mu_exact = np.where(finite[..., None], kpts, 0.0) / heatmap_stride(
        input_size, heatmap_size, mode == "udp"
    )
    mu_int = np.trunc(mu_exact + 0.5)  # Python int() in mmpose truncates toward zero
    # mmpose's bounds test (br is exclusive, so a window ending at -1 still counts; kept for parity)
    upper_left = mu_int - radius
    bottom_right = mu_int + radius + 1
    inside = ~(
        (upper_left[..., 0] >= width)
        | (upper_left[..., 1] >= height)
        | (bottom_right[..., 0] < 0)
        | (bottom_right[..., 1] < 0)
    )
    weights = np.where(inside & finite, vis, 0.0)

    centre = mu_exact if mode == "udp" else mu_int
    gauss_x = _window_gaussian_1d(centre[..., 0], mu_int[..., 0], width, sigma, radius)
    gauss_y = _window_gaussian_1d(centre[..., 1], mu_int[..., 1], height, sigma, radius)
    gauss_y = (gauss_y * (weights > 0.5)[..., None]).astype(np.float32)
    # The 2-D Gaussian is separable: outer product of the 1-D windows (float32, as mmpose stores it).
    targets = gauss_y[..., :, None] * gauss_x.astype(np.float32)[..., None, :]
    return targets, weights.astype(np.float32)
