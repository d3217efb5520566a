"""uint8 HWC RGB crops -> ImageNet-normalised CHW float32 (what the model takes as ``pixel_values``)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(
    image_hwc: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """``(image / 255 - mean) / std`` as ``[3, H, W]`` (or ``[N, 3, H, W]`` for ``[N, H, W, 3]``) float32."""
    img = np.asarray(image_hwc)
    if img.ndim not in (3, 4) or img.shape[-1] != len(mean):
        raise ValueError(
            f"image must have shape [H, W, {len(mean)}] or [N, H, W, {len(mean)}], got {img.shape}"
        )
    std_arr = np.asarray(std, dtype=np.float32)
    # one multiply-add: x * (1 / (255 std)) - mean / std
    gain = (1.0 / (255.0 * std_arr)).astype(np.float32)
    offset = (np.asarray(mean, dtype=np.float32) / std_arr).astype(np.float32)
    if img.ndim == 3:
        # cv2.split gives contiguous planes fast; per-plane writes into a CHW buffer then avoid a strided
        # HWC -> CHW float copy (~8x faster on CPU than the naive transpose + astype).
        planes = cv2.split(np.ascontiguousarray(img)) if img.dtype == np.uint8 else [img[..., c] for c in
                                                                                     range(img.shape[2])]
        out = np.empty((img.shape[2], img.shape[0], img.shape[1]), dtype=np.float32)
        for c, plane in enumerate(planes):
            np.multiply(plane, gain[c], out=out[c], dtype=np.float32)
            out[c] -= offset[c]
        return out
    chw = np.moveaxis(img, -1, -3).astype(np.float32)
    chw *= gain[:, None, None]
    chw -= offset[:, None, None]
    return chw
