"""Person/animal boxes for the demo: a transformers object detector from the Hub when one is configured and
reachable, otherwise OpenCV's HOG people detector (offline), otherwise none (the caller uses the whole image).

Boxes are [x, y, w, h] floats in image pixels. Nothing here imports gradio.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

# COCO category names that the pose heads cover (people + the animals AP-10K/APT-36K have); detectors
# trained on COCO (RT-DETR, DETR, ...) name them like this in `config.id2label`.
PERSON_ANIMAL_LABELS = frozenset({
    "person", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
})
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
    return hasattr(cv2, "HOGDescriptor")


_HOG_LOCAL = threading.local()  # cv2.HOGDescriptor is not documented as thread-safe: one per thread


def _hog() -> cv2.HOGDescriptor:
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


@dataclass
class HubDetector:
    """A transformers object-detection model (e.g. RT-DETR, as in the ViTPose docs) keeping person/animal boxes.

    `load` never raises for an unreachable or unusable model id: it returns None and a reason, so the demo
    falls back to HOG and says why.
    """

    model_id: str
    processor: object
    model: object
    threshold: float = 0.5
    labels: frozenset[str] = PERSON_ANIMAL_LABELS
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, model_id: str, *, threshold: float = 0.5) -> tuple[HubDetector | None, str]:
        try:
            from transformers import AutoImageProcessor, AutoModelForObjectDetection

            processor = AutoImageProcessor.from_pretrained(model_id)
            model = AutoModelForObjectDetection.from_pretrained(model_id, use_safetensors=True).eval()
        except Exception as err:  # offline, unknown id, no safetensors, missing optional deps: all mean "not usable"
            text = str(err).strip()
            reason = text.splitlines()[0].split(". ")[0][:200] if text else "no details"
            return None, f"detector {model_id!r} is not available ({type(err).__name__}: {reason})"
        return cls(model_id=model_id, processor=processor, model=model, threshold=threshold), (
            f"detector {model_id!r} loaded")

    def __call__(self, rgb: np.ndarray) -> list[list[float]]:
        """Person/animal boxes [x, y, w, h] in `rgb` ([H, W, 3] uint8) pixels, best score first."""
        import torch

        height, width = rgb.shape[:2]
        with self._lock, torch.inference_mode():
            inputs = self.processor(images=rgb, return_tensors="pt")
            outputs = self.model(**inputs)
            result = self.processor.post_process_object_detection(
                outputs, threshold=self.threshold, target_sizes=[(height, width)])[0]
        id2label = self.model.config.id2label
        boxes, scores = [], []
        for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(),
                                     result["labels"].tolist(), strict=True):
            if str(id2label.get(int(label), "")).lower() not in self.labels:
                continue
            x0, y0 = max(0.0, box[0]), max(0.0, box[1])
            x1, y1 = min(float(width), box[2]), min(float(height), box[3])
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                boxes.append([x0, y0, x1 - x0, y1 - y0])
                scores.append(score)
        if not boxes:
            return []
        arr = np.asarray(boxes)
        keep = nms(arr, np.asarray(scores), 0.6)[:MAX_DETECTIONS]
        return [[round(float(v), 2) for v in arr[i]] for i in keep]


@dataclass
class BoxFinder:
    """Chooses the detector: the Hub model when loaded, else HOG, else nothing. Returns (boxes, what ran)."""

    hub: Callable[[np.ndarray], list[list[float]]] | None = None
    hub_note: str = "no Hub detector configured"

    def describe(self) -> str:
        if self.hub is not None:
            return self.hub_note
        if hog_available():
            return f"{self.hub_note}; using the OpenCV HOG people detector"
        return (f"{self.hub_note}, and OpenCV {cv2.__version__} has no HOG people detector (moved to contrib in "
                "OpenCV 5), so 'Detect' uses the whole image")

    def __call__(self, rgb: np.ndarray) -> tuple[list[list[float]], str]:
        if self.hub is not None:
            return self.hub(rgb), f"Hub detector {getattr(self.hub, 'model_id', '')}".strip()
        if hog_available():
            return hog_people_boxes(rgb), "OpenCV HOG people detector"
        return [], f"no detector (OpenCV {cv2.__version__} has no HOG)"
