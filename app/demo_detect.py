"""Person/animal boxes for the demo: a transformers object detector from the Hub when one is configured and
reachable, otherwise an offline people detector (BlazePose when `pip install 'posebh-hf[detect]'` and its model
files are set up, else OpenCV's HOG; `POSEBH_OFFLINE_DETECTOR=hog|blazepose` forces one), otherwise none (the caller
uses the whole image).

Boxes are [x, y, w, h] floats in image pixels. Nothing here imports gradio.
"""

from __future__ import annotations

import os
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
# The offline HOG people detector and the box helpers live in the package (`posebh predict --detect hog` uses them
# too); re-exported here for the demo.
from posebh_hf.detection import (  # noqa: E402
    HOG_MAX_SIDE,
    MAX_DETECTIONS,
    box_iou,
    choose_detector,
    hog_available,
    hog_people_boxes,
    nms,
    people_detector,
)

__all__ = ["HOG_MAX_SIDE", "MAX_DETECTIONS", "PERSON_ANIMAL_LABELS", "box_iou", "hog_available", "hog_people_boxes",
           "nms"]


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
    """Chooses the detector: the Hub model when loaded, else the offline one (`offline`: "auto" = BlazePose when
    it is set up, else HOG; "blazepose"; "hog"; default $POSEBH_OFFLINE_DETECTOR or "auto"), else HOG, else nothing.
    Returns (boxes, what ran)."""

    hub: Callable[[np.ndarray], list[list[float]]] | None = None
    hub_note: str = "no Hub detector configured"
    offline: str = field(default_factory=lambda: os.environ.get("POSEBH_OFFLINE_DETECTOR", "auto"))

    def _blazepose(self) -> tuple[bool, str]:
        """(usable, why not); `why` is empty when BlazePose was not asked for by name (auto falls back quietly)."""
        name, why = choose_detector(self.offline)
        return name == "blazepose", why if self.offline == "blazepose" else ""

    def describe(self) -> str:
        if self.hub is not None:
            return self.hub_note
        usable, why = self._blazepose()
        if usable:
            return f"{self.hub_note}; using the offline BlazePose person detector"
        if why:
            return f"{self.hub_note}; BlazePose is not usable ({why}); using the OpenCV HOG people detector"
        if hog_available():
            return f"{self.hub_note}; using the OpenCV HOG people detector"
        return (f"{self.hub_note}, and OpenCV {cv2.__version__} has no HOG people detector (moved to contrib in "
                "OpenCV 5), so 'Detect' uses the whole image")

    def __call__(self, rgb: np.ndarray) -> tuple[list[list[float]], str]:
        if self.hub is not None:
            return self.hub(rgb), f"Hub detector {getattr(self.hub, 'model_id', '')}".strip()
        if self._blazepose()[0]:
            return people_detector("blazepose")(rgb), "BlazePose person detector"
        if hog_available():
            return hog_people_boxes(rgb), "OpenCV HOG people detector"
        return [], f"no detector (OpenCV {cv2.__version__} has no HOG)"
