"""OpenCV-compatible Gaussian blur of heatmap stacks (numpy) and the matching 1-D kernel.

DARK/UDP refinement blurs each heatmap with ``cv2.GaussianBlur(h, (k, k), 0)``: sigma derived from the kernel
size, border ``BORDER_REFLECT_101``. The torch path reuses :func:`opencv_gaussian_kernel` so both agree.
"""

from __future__ import annotations

import cv2
import numpy as np

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
    """``[k]`` float64 normalised 1-D kernel, exactly ``cv2.getGaussianKernel(k, 0)``.

    For k >= 11 this is ``exp(-d^2 / 2 sigma^2)`` normalised with :func:`opencv_gaussian_sigma`; OpenCV replaces
    the formula by fixed binomial-like tables for small kernels (k <= 9 in OpenCV 5), so we ask OpenCV itself.
    """
    return cv2.getGaussianKernel(check_kernel_size(kernel), 0, ktype=cv2.CV_64F).ravel()


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
