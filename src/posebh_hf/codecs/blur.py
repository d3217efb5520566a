"""OpenCV-compatible Gaussian blur of heatmap stacks (numpy) and the matching 1-D kernel.

DARK/UDP refinement blurs each heatmap with ``cv2.GaussianBlur(h, (k, k), 0)``: sigma derived from the kernel
size, border ``BORDER_REFLECT_101``. The torch path reuses :func:`opencv_gaussian_kernel` so both agree.
"""

from __future__ import annotations

import cv2
import numpy as np

# OpenCV uses these fixed tables instead of the formula for small kernels when sigma <= 0.
_SMALL_KERNELS = {
    1: [1.0],
    3: [0.25, 0.5, 0.25],
    5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
    7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
}
_MAX_CHANNELS_PER_CALL = 128  # OpenCV filters accept < 512 channels; 128 keeps the blocks cache friendly


def check_kernel_size(kernel: int) -> int:
    """Validate an odd positive kernel size."""
    if int(kernel) != kernel or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd integer, got {kernel}")
    return int(kernel)


def opencv_gaussian_sigma(kernel: int) -> float:
    """Sigma OpenCV derives from the kernel size: ``0.3 * ((k - 1) * 0.5 - 1) + 0.8`` (2.0 for k = 11)."""
    return 0.3 * ((check_kernel_size(kernel) - 1) * 0.5 - 1.0) + 0.8


def opencv_gaussian_kernel(kernel: int) -> np.ndarray:
    """``[k]`` float64 normalised 1-D kernel equal to ``cv2.getGaussianKernel(k, 0)``."""
    k = check_kernel_size(kernel)
    if k in _SMALL_KERNELS:
        return np.asarray(_SMALL_KERNELS[k], dtype=np.float64)
    sigma = opencv_gaussian_sigma(k)
    offsets = np.arange(k, dtype=np.float64) - (k - 1) * 0.5
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def gaussian_blur_heatmaps(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """Blur every ``[H, W]`` map of ``[..., H, W]`` like ``cv2.GaussianBlur(h, (k, k), 0)``; returns float32.

    Maps are stacked as OpenCV channels (blocks of 128) so one call blurs many heatmaps; the result is
    bit-identical to blurring each map separately.
    """
    k = check_kernel_size(kernel)
    maps = np.asarray(heatmaps, dtype=np.float32)
    if maps.ndim < 2:
        raise ValueError(f"heatmaps must have shape [..., H, W], got {maps.shape}")
    height, width = maps.shape[-2:]
    flat = maps.reshape(-1, height, width)
    out = np.empty_like(flat)
    for start in range(0, flat.shape[0], _MAX_CHANNELS_PER_CALL):
        block = np.ascontiguousarray(flat[start : start + _MAX_CHANNELS_PER_CALL].transpose(1, 2, 0))
        blurred = cv2.GaussianBlur(block, (k, k), 0, borderType=cv2.BORDER_REFLECT_101)
        out[start : start + _MAX_CHANNELS_PER_CALL] = blurred.reshape(height, width, -1).transpose(2, 0, 1)
    return out.reshape(maps.shape)
