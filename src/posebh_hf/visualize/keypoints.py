"""Drawing keypoints with a skeleton's edges (layer 4). OpenCV on RGB uint8 arrays; returns new arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..skeletons import Skeleton


def check_score_threshold(value: float) -> float:
    """The drawing threshold as a float in [0, 1] (scores are in [0, 1]); NaN, infinities and values outside are
    refused with the sentence `posebh predict` and the demo both show."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"the score threshold must be a number in [0, 1], got {value!r}") from None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):  # named as a number, whether given as text or not
        raise ValueError(f"the score threshold must be a number in [0, 1], got {number!r}")
    return number

def _thickness(image_hw: tuple[int, int]) -> int:
    return max(1, round(min(image_hw) / 250))


def draw_pose(
    image_rgb: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    skeleton: Skeleton,
    *,
    score_threshold: float = 0.3,
    box_xywh: Sequence[float] | None = None,
    label: str | None = None,
) -> np.ndarray:
    """Overlay one instance. keypoints [K, 2] image pixels, scores [K]; points below the threshold are not drawn."""
    import cv2  # noqa: PLC0415 - OpenCV only when drawing (`posebh predict --threshold` checks stay light)

    canvas = np.ascontiguousarray(image_rgb.copy())
    thick = _thickness(canvas.shape[:2])
    keypoints = np.asarray(keypoints, dtype=np.float64)
    visible = np.asarray(scores) >= score_threshold
    if box_xywh is not None:
        x, y, w, h = (int(round(v)) for v in box_xywh)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (255, 255, 255), thick, cv2.LINE_AA)
        if label:
            cv2.putText(canvas, label, (x + 2, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick + 0.1,
                        (255, 255, 255), max(1, thick // 2), cv2.LINE_AA)
    for (a, b), colour in zip(skeleton.edges, skeleton.colors(), strict=True):
        if visible[a] and visible[b]:
            pa = tuple(int(round(v)) for v in keypoints[a])
            pb = tuple(int(round(v)) for v in keypoints[b])
            cv2.line(canvas, pa, pb, colour, thick + 1, cv2.LINE_AA)
    for k, colour in enumerate(skeleton.keypoint_colors()):
        if visible[k]:
            centre = tuple(int(round(v)) for v in keypoints[k])
            cv2.circle(canvas, centre, thick + 2, colour, -1, cv2.LINE_AA)
            cv2.circle(canvas, centre, thick + 2, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def draw_instances(
    image_rgb: np.ndarray,
    instances: Sequence[dict],
    skeleton: Skeleton,
    *,
    score_threshold: float = 0.3,
) -> np.ndarray:
    """Overlay every instance of one skeleton: each item has `bbox` [x, y, w, h], `keypoints` [K, 2], `scores` [K]."""
    canvas = image_rgb
    for inst in instances:
        canvas = draw_pose(canvas, inst["keypoints"], inst["scores"], skeleton, score_threshold=score_threshold,
                           box_xywh=inst.get("bbox"), label=skeleton.name)
    return canvas
