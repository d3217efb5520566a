"""Top-down training/test transforms (layer 1): plain callables ``(sample, rng) -> sample``.

All randomness comes from an explicit ``np.random.Generator``, so a seed fixes the result. Typical use::

    cfg = augment_config_for("coco")
    transform = TopDownTrainTransform(cfg, skeleton.flip_indices, skeleton.upper_body_ids)
    example = transform(image, keypoints, visibility, center, scale, rng)   # dict of arrays

The pieces (``RandomFlip``, ``HalfBody``, ``RandomScaleRotation``, ``TopDownAffine``, ``normalize_image``) can
be composed freely with :class:`Compose`.
"""

from __future__ import annotations

from .affine import TopDownAffine, crop_matrix
from .augment_config import DATASET_AUGMENT, AugmentConfig, augment_config_for
from .compose import (
    Compose,
    TopDownTestTransform,
    TopDownTrainTransform,
    build_test_transforms,
    build_train_transforms,
)
from .flip import RandomFlip, flip_keypoints, flip_sample
from .half_body import HalfBody, half_body_center_scale
from .normalize import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from .sample import SampleTransform, TopDownSample
from .scale_rotation import RandomScaleRotation, jitter_center

__all__ = [
    "DATASET_AUGMENT",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "Compose",
    "HalfBody",
    "RandomFlip",
    "RandomScaleRotation",
    "SampleTransform",
    "TopDownAffine",
    "TopDownSample",
    "TopDownTestTransform",
    "TopDownTrainTransform",
    "augment_config_for",
    "build_test_transforms",
    "build_train_transforms",
    "crop_matrix",
    "flip_keypoints",
    "flip_sample",
    "half_body_center_scale",
    "jitter_center",
    "normalize_image",
]
