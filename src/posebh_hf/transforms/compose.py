"""Composition of the top-down transforms, and the ready-made train/test instance transforms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..codecs import HeatmapCodec
from .affine import TopDownAffine
from .augment_config import AugmentConfig
from .flip import RandomFlip
from .half_body import HalfBody
from .normalize import normalize_image
from .sample import SampleTransform, TopDownSample
from .scale_rotation import RandomScaleRotation


class Compose:
    """Apply transforms in order, threading one ``np.random.Generator`` through them."""

    def __init__(self, transforms: Sequence[SampleTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: TopDownSample, rng: np.random.Generator) -> TopDownSample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def build_train_transforms(
    config: AugmentConfig, flip_indices: Sequence[int], upper_body_ids: Sequence[int]
) -> Compose:
    """Spec 5.5 order: random flip -> half-body (if enabled) -> random scale/rotation -> affine crop."""
    steps: list[SampleTransform] = [RandomFlip(flip_indices, config.flip_prob)]
    if config.half_body:
        steps.append(
            HalfBody(
                upper_body_ids,
                config.aspect_ratio,
                config.half_body_prob,
                config.half_body_min_joints,
                config.half_body_padding,
            )
        )
    steps.append(RandomScaleRotation(config.scale_factor, config.rot_factor, config.rot_prob))
    steps.append(TopDownAffine(config.input_size, config.use_udp))
    return Compose(steps)


def build_test_transforms(config: AugmentConfig) -> Compose:
    """Test time: the affine crop only (no augmentation)."""
    return Compose([TopDownAffine(config.input_size, config.use_udp)])


def _example(sample: TopDownSample, codec: HeatmapCodec | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pixel_values": normalize_image(sample.image),
        "keypoints": sample.keypoints,
        "visibility": sample.visibility,
        "center": sample.center,
        "scale": sample.scale,
        "rotation": float(sample.rotation),
        "flipped": bool(sample.flipped),
    }
    if codec is not None:
        out["target"], out["target_weight"] = codec.encode(sample.keypoints, sample.visibility)
    return out


class TopDownTrainTransform:
    """Full training transform for one instance: augment, crop, normalise and encode targets.

    ``__call__(image, keypoints, visibility, center, scale, rng)`` returns a dict:

    - ``pixel_values`` ``[3, H_in, W_in]`` float32 (ImageNet-normalised);
    - ``target`` ``[K, H, W]`` float32 and ``target_weight`` ``[K]`` float32 (no channel padding);
    - ``keypoints`` ``[K, 2]`` crop pixels, ``visibility`` ``[K]``, ``center``, ``scale``, ``rotation``, ``flipped``.
    """

    def __init__(
        self, config: AugmentConfig, flip_indices: Sequence[int], upper_body_ids: Sequence[int]
    ) -> None:
        self.config = config
        self.codec = config.codec()
        self.transforms = build_train_transforms(config, flip_indices, upper_body_ids)

    def __call__(
        self,
        image: np.ndarray,
        keypoints: np.ndarray,
        visibility: np.ndarray,
        center: np.ndarray,
        scale: np.ndarray,
        rng: np.random.Generator,
    ) -> dict[str, Any]:
        sample = TopDownSample.create(image, keypoints, visibility, center, scale)
        return _example(self.transforms(sample, rng), self.codec)


class TopDownTestTransform:
    """Test-time transform: crop + normalise; returns the same dict as training without targets.

    Keypoints/visibility are optional (zeros of length 0 when not given).
    """

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self.transforms = build_test_transforms(config)

    def __call__(
        self,
        image: np.ndarray,
        center: np.ndarray,
        scale: np.ndarray,
        keypoints: np.ndarray | None = None,
        visibility: np.ndarray | None = None,
    ) -> dict[str, Any]:
        kpts = np.zeros((0, 2), np.float32) if keypoints is None else keypoints
        vis = np.zeros((len(kpts),), np.float32) if visibility is None else visibility
        sample = TopDownSample.create(image, kpts, vis, center, scale)
        return _example(self.transforms(sample, np.random.default_rng(0)), None)
