"""Offline person boxes (layer 0): OpenCV's HOG people detector (Dalal & Triggs, in opencv-python 4.x), greedy NMS
and box IoU. Used by `posebh predict --detect hog` (images and video) and the demo. Boxes are [x, y, w, h] floats in
image pixels, best first.

HOG is weak (it misses sitting, small and partly hidden people and fires on upright clutter); a transformers
object detector from the Hub is the demo's online option.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["HOG_MAX_SIDE", "MAX_DETECTIONS", "box_iou", "hog_available", "hog_people_boxes", "nms"]

# HOG runs on a copy whose long side is at most this many pixels: ~0.1 s per image on one core, and its
# 64 x 128 window finds people of 1/5 of the frame and up at that size.
HOG_MAX_SIDE = 640
MAX_DETECTIONS = 20


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of [N, 4] against [M, 4] xywh boxes -> [N, M]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax1, ay1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best score first. boxes [N, 4] xywh, scores [N]."""
    order = list(np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        if order:
            ious = box_iou(boxes[best], boxes[order])[0]
            order = [i for i, iou in zip(order, ious, strict=True) if iou <= iou_threshold]
    return keep


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
