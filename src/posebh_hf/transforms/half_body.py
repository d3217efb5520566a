"""Half-body augmentation (mmpose ``TopDownHalfBodyTransform``, spec 5.5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..geometry import PIXEL_STD
from .sample import TopDownSample


def half_body_center_scale(
    keypoints: np.ndarray,
    visibility: np.ndarray,
    upper_body_ids: Sequence[int],
    rng: np.random.Generator,
    aspect_ratio: float,
    padding: float = 1.5,
    pixel_std: float = PIXEL_STD,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(center, scale)`` of the upper or the lower half of the visible joints, or ``None`` to abort.

    Visible joints are split into upper (``upper_body_ids``) and the rest ("lower"; for WholeBody that includes
    face and hands). Upper is chosen when ``N(0, 1) < 0.5`` -- a *normal* draw, so P ~ 0.69, an mmpose quirk kept
    on purpose -- and it has > 2 joints; else lower if it has > 2 joints; else upper. Fewer than 2 selected
    joints aborts. The box is the selected joints' extent, aspect-corrected and scaled by ``padding / 200``;
    the centre is their mean.
    """
    visible = np.asarray(visibility) > 0
    is_upper = np.zeros(len(visible), dtype=bool)
    is_upper[[i for i in upper_body_ids if i < len(visible)]] = True
    upper = keypoints[visible & is_upper]
    lower = keypoints[visible & ~is_upper]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        selected = upper
    elif len(lower) > 2:
        selected = lower
    else:
        selected = upper
    if len(selected) < 2:
        return None
    selected = np.asarray(selected, dtype=np.float32)
    center = selected.mean(axis=0)
    w, h = (selected.max(axis=0) - selected.min(axis=0)).astype(np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w, h], dtype=np.float64) / pixel_std * padding
    return center.astype(np.float32), scale.astype(np.float32)


class HalfBody:
    """With probability ``prob``, when more than ``min_joints`` joints are visible, re-centre on half the body."""

    def __init__(
        self,
        upper_body_ids: Sequence[int],
        aspect_ratio: float,
        prob: float = 0.3,
        min_joints: int = 8,
        padding: float = 1.5,
    ) -> None:
        self.upper_body_ids = tuple(int(i) for i in upper_body_ids)
        self.aspect_ratio = float(aspect_ratio)
        self.prob = float(prob)
        self.min_joints = int(min_joints)
        self.padding = float(padding)

    def __call__(self, sample: TopDownSample, rng: np.random.Generator) -> TopDownSample:
        # mmpose sums the visibility values and draws U only when the count test passes
        if not (float(np.sum(sample.visibility)) > self.min_joints and rng.random() < self.prob):
            return sample
        result = half_body_center_scale(
            sample.keypoints, sample.visibility, self.upper_body_ids, rng, self.aspect_ratio, self.padding
        )
        if result is None:
            return sample
        center, scale = result
        return replace(sample, center=center, scale=scale)

    def __repr__(self) -> str:
        return (
            f"HalfBody(prob={self.prob}, min_joints={self.min_joints}, upper={len(self.upper_body_ids)} ids)"
        )
