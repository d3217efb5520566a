"""Horizontal flip of a top-down sample (mmpose ``TopDownRandomFlip`` + ``fliplr_joints``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from .sample import TopDownSample


def flip_keypoints(
    keypoints: np.ndarray, visibility: np.ndarray, flip_indices: Sequence[int], image_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror keypoints: swap left/right ids, ``x -> image_width - 1 - x``.

    As in mmpose, the flipped joints are multiplied by the (flipped) visibility, so invisible joints end up at
    ``(0, 0)``; visible joints flipped twice come back exactly.

    Args:
        keypoints: ``[K, 2]``.
        visibility: ``[K]``.
        flip_indices: ``[K]`` involution (keypoint ``k`` <-> ``flip_indices[k]``).
        image_width: width of the image being mirrored.

    Returns:
        ``(keypoints [K, 2] float32, visibility [K] float32)``.
    """
    idx = np.asarray(flip_indices, dtype=np.int64)
    if idx.shape != (len(keypoints),):
        raise ValueError(f"flip_indices has {idx.shape[0]} entries but there are {len(keypoints)} keypoints")
    kpts = np.asarray(keypoints, dtype=np.float32)[idx].copy()
    vis = np.asarray(visibility, dtype=np.float32)[idx].copy()
    kpts[:, 0] = image_width - 1 - kpts[:, 0]
    return kpts * vis[:, None], vis


def flip_sample(sample: TopDownSample, flip_indices: Sequence[int]) -> TopDownSample:
    """Mirror the image, keypoints and centre (``center_x -> W - 1 - center_x``); toggles ``flipped``."""
    if sample.matrix is not None:
        raise ValueError("flip_sample must run before TopDownAffine (the sample is already cropped)")
    width = sample.image.shape[1]
    kpts, vis = flip_keypoints(sample.keypoints, sample.visibility, flip_indices, width)
    center = sample.center.copy()
    center[0] = width - 1 - center[0]
    image = cv2.flip(np.ascontiguousarray(sample.image), 1)
    return replace(
        sample, image=image, keypoints=kpts, visibility=vis, center=center, flipped=not sample.flipped
    )


class RandomFlip:
    """Flip with probability ``prob`` (mmpose draws ``U <= prob``)."""

    def __init__(self, flip_indices: Sequence[int], prob: float = 0.5) -> None:
        self.flip_indices = tuple(int(i) for i in flip_indices)
        self.prob = float(prob)

    def __call__(self, sample: TopDownSample, rng: np.random.Generator) -> TopDownSample:
        if rng.random() <= self.prob:
            return flip_sample(sample, self.flip_indices)
        return sample

    def __repr__(self) -> str:
        return f"RandomFlip(prob={self.prob}, num_keypoints={len(self.flip_indices)})"
