"""OpenCV's HOG people detector (Dalal & Triggs, in opencv-python 4.x; layer 0). Boxes are [x, y, w, h] floats in
image pixels, best first.

HOG is weak: it misses sitting, small and partly hidden people and fires on upright clutter
(docs/benchmarks.md, "Person detectors").
"""

from __future__ import annotations

import threading

import numpy as np

from .boxes import nms

__all__ = ["HOG_MAX_SIDE", "MAX_DETECTIONS", "hog_available", "hog_people_boxes"]

# HOG runs on a copy whose long side is at most this many pixels: ~0.1 s per image on one core, and its
# 64 x 128 window finds people of 1/5 of the frame and up at that size.
HOG_MAX_SIDE = 640
MAX_DETECTIONS = 20


def hog_available() -> bool:
    """OpenCV 5 moved HOG out of the main package (to contrib); 4.x has it."""
    import cv2  # noqa: PLC0415

    return hasattr(cv2, "HOGDescriptor")


_HOG_LOCAL = threading.local()  # cv2.HOGDescriptor is not documented as thread-safe: one per thread


def _hog():  # -> cv2.HOGDescriptor
    import cv2  # noqa: PLC0415

    hog = getattr(_HOG_LOCAL, "hog", None)
    if hog is None:
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        _HOG_LOCAL.hog = hog
    return hog


def hog_people_boxes(rgb: np.ndarray, *, min_weight: float = 0.3) -> list[list[float]]:
    """People boxes from OpenCV's default HOG + linear SVM detector (Dalal & Triggs), best first.

    rgb: [H, W, 3] uint8. Returns [] when OpenCV has no HOG (OpenCV 5).
    """
    import cv2  # noqa: PLC0415

    if not hog_available():
        return []
    height, width = rgb.shape[:2]
    scale = min(1.0, HOG_MAX_SIDE / max(height, width))
    small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    rects, weights = _hog().detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
    if len(rects) == 0:
        return []
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / scale
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    mask = weights >= min_weight
    rects, weights = rects[mask], weights[mask]
    keep = nms(rects, weights, 0.4)[:MAX_DETECTIONS]
    return [[round(float(v), 2) for v in rects[i]] for i in keep]
