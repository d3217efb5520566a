"""Top-down affine crop (mmpose ``TopDownAffine``): UDP or plain matrix, bilinear warp, keypoints to crop pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..geometry import PIXEL_STD, apply_affine, get_affine_matrix, get_udp_warp_matrix, warp_crop
from .sample import TopDownSample


def crop_matrix(
    center: np.ndarray,
    scale: np.ndarray,
    rotation: float,
    input_size: Sequence[int],
    use_udp: bool,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """``[2, 3]`` full-image -> crop matrix for mmpose ``(center, scale)`` (scale in 200-px units)."""
    scale_px = np.asarray(scale, dtype=np.float64) * pixel_std
    if use_udp:
        return get_udp_warp_matrix(center, scale_px, rotation, input_size)
    return get_affine_matrix(center, scale_px, rotation, input_size)


class TopDownAffine:
    """Warp the image to the ``input_size`` crop and move the keypoints into crop pixels.

    UDP transforms all joints; the plain path transforms only visible joints (invisible ones keep their
    coordinates, as in mmpose; their weight is 0 anyway).
    """

    def __init__(self, input_size: Sequence[int] = (192, 256), use_udp: bool = True) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.use_udp = bool(use_udp)

    def __call__(self, sample: TopDownSample, rng: np.random.Generator | None = None) -> TopDownSample:
        if sample.matrix is not None:
            raise ValueError("TopDownAffine applied twice (the sample is already cropped)")
        matrix = crop_matrix(sample.center, sample.scale, sample.rotation, self.input_size, self.use_udp)
        crop = warp_crop(sample.image, matrix, self.input_size)
        moved = apply_affine(sample.keypoints, matrix).astype(np.float32)
        if not self.use_udp:
            moved = np.where((sample.visibility > 0)[:, None], moved, sample.keypoints)
        return replace(sample, image=crop, keypoints=moved, matrix=matrix)

    def __repr__(self) -> str:
        return f"TopDownAffine(input_size={self.input_size}, use_udp={self.use_udp})"
