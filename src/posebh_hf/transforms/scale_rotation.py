"""Random scale/rotation (mmpose ``TopDownGetRandomScaleRotation``) and the load-time centre jitter."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .sample import TopDownSample


class RandomScaleRotation:
    """``scale *= clip(N * sf + 1, 1 - sf, 1 + sf)``; ``rotation = clip(N * rf, -2 rf, 2 rf)`` w.p. ``rot_prob``.

    Draw order (fixed for determinism): scale normal, rotation normal, rotation uniform.
    """

    def __init__(self, scale_factor: float = 0.5, rot_factor: float = 40.0, rot_prob: float = 0.6) -> None:
        self.scale_factor = float(scale_factor)
        self.rot_factor = float(rot_factor)
        self.rot_prob = float(rot_prob)

    def __call__(self, sample: TopDownSample, rng: np.random.Generator) -> TopDownSample:
        sf, rf = self.scale_factor, self.rot_factor
        s_factor = float(np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf))
        r_factor = float(np.clip(rng.standard_normal() * rf, -2.0 * rf, 2.0 * rf))
        rotation = r_factor if rng.random() <= self.rot_prob else 0.0
        scale = (sample.scale * s_factor).astype(np.float32)
        return replace(sample, scale=scale, rotation=rotation)

    def __repr__(self) -> str:
        return f"RandomScaleRotation(scale_factor={self.scale_factor}, rot_factor={self.rot_factor}, rot_prob={self.rot_prob})"


def jitter_center(
    center: np.ndarray,
    box_wh: np.ndarray,
    rng: np.random.Generator,
    prob: float = 0.3,
    factor: float = 0.4,
) -> np.ndarray:
    """mmpose ``_xywh2cs`` training jitter: w.p. ``prob`` shift by ``factor * (U2 - 0.5) * [w, h]`` (up to +-20 %).

    mmpose draws this once per annotation when the annotation list is built (not per iteration); ``box_wh`` is
    the original box size (before aspect correction). Returns a new ``[2]`` float32 centre.
    """
    c = np.asarray(center, dtype=np.float32).copy()
    if rng.random() < prob:
        c += (factor * (rng.random(2) - 0.5) * np.asarray(box_wh, dtype=np.float64)).astype(np.float32)
    return c
