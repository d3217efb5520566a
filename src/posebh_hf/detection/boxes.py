"""Box IoU and greedy NMS on [x, y, w, h] boxes (layer 0)."""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou", "nms"]


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
