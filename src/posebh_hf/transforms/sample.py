"""The record that top-down transforms pass along, and the callable protocol they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class TopDownSample:
    """One person instance on its way from the full image to a network crop.

    Transforms never modify arrays in place; they return a new sample (``dataclasses.replace``).

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB; the full image before :class:`TopDownAffine`, the crop after it.
        keypoints: ``[K, 2]`` float32 ``(x, y)`` in the pixel frame of ``image``.
        visibility: ``[K]`` float32, 0/1.
        center: ``[2]`` float32 ROI centre in full-image pixels.
        scale: ``[2]`` float32 ROI size in pixel_std (200 px) units.
        rotation: degrees (mmpose sign convention of the affine in use).
        flipped: whether a horizontal flip was applied.
        matrix: ``[2, 3]`` full-image -> crop matrix, set by :class:`TopDownAffine` (``None`` before).
    """

    image: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    rotation: float = 0.0
    flipped: bool = False
    matrix: np.ndarray | None = field(default=None)

    @classmethod
    def create(
        cls,
        image: np.ndarray,
        keypoints: np.ndarray,
        visibility: np.ndarray,
        center: np.ndarray,
        scale: np.ndarray,
    ) -> TopDownSample:
        """Validate shapes and cast to the canonical dtypes (raises ValueError naming the field)."""
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must have shape [H, W, 3], got {img.shape}")
        kpts = np.asarray(keypoints, dtype=np.float32)
        if kpts.ndim != 2 or kpts.shape[1] < 2:
            raise ValueError(f"keypoints must have shape [K, 2] (or [K, 3]), got {kpts.shape}")
        vis = np.asarray(visibility, dtype=np.float32).reshape(-1)
        if vis.shape[0] != kpts.shape[0]:
            raise ValueError(f"visibility has {vis.shape[0]} entries but there are {kpts.shape[0]} keypoints")
        c = np.asarray(center, dtype=np.float32).reshape(-1)
        s = np.asarray(scale, dtype=np.float32).reshape(-1)
        if c.shape != (2,) or s.shape != (2,):
            raise ValueError(f"center and scale must have 2 values each, got {c.shape} and {s.shape}")
        if np.any(s <= 0):
            raise ValueError(f"scale must be positive, got {s.tolist()}")
        return cls(img, kpts[:, :2].copy(), vis, c, s)


class SampleTransform(Protocol):
    """A top-down transform: ``sample, rng -> new sample``; all randomness comes from ``rng``."""

    def __call__(self, sample: TopDownSample, rng: np.random.Generator) -> TopDownSample: ...
