"""Offline person boxes (layer 0), used by `posebh predict --detect NAME` (images and video) and the demo.

Detectors (`DETECTORS`, chosen by name with `people_detector(name)`):
- "blazepose": MediaPipe's BlazePose person detector (`blazepose.py`), run with a TFLite runtime
  (`pip install 'posebh-hf[detect]'`) on the model file from the mediapipe wheel (`model_file.py`;
  `python -m posebh_hf.detection.model_file` fetches it once). Better than HOG on COCO people
  (docs/benchmarks.md, "Person detectors").
- "hog": OpenCV's HOG people detector (`hog.py`, no extra dependency; weak).

Every detector maps rgb [H, W, 3] uint8 -> a list of [x, y, w, h] float boxes in image pixels, best first, after
NMS. `box_iou` and `nms` are the shared box helpers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .boxes import box_iou, nms
from .hog import HOG_MAX_SIDE, MAX_DETECTIONS, hog_available, hog_people_boxes

__all__ = ["DETECTORS", "HOG_MAX_SIDE", "MAX_DETECTIONS", "box_iou", "choose_detector", "detector_available",
           "hog_available", "hog_people_boxes", "nms", "people_detector"]

DETECTORS = ("blazepose", "hog")


def detector_available(name: str) -> tuple[bool, str]:
    """(usable, why not) for a detector name, without loading a model."""
    if name == "hog":
        return (True, "") if hog_available() else (False, "this OpenCV has no HOG people detector (OpenCV 5)")
    if name == "blazepose":
        from .blazepose import blazepose_available  # noqa: PLC0415

        return blazepose_available()
    raise ValueError(f"unknown person detector {name!r}; choose one of {', '.join(DETECTORS)}")


def choose_detector(requested: str = "auto") -> tuple[str, str]:
    """The offline detector to run for `requested` ("auto", "blazepose" or "hog"): ("blazepose", "") when BlazePose
    is asked for or "auto" and it is set up, else ("hog", why BlazePose is not usable; "" when "hog" was asked for).
    The one rule behind the video default of `posebh predict` and the demo's offline detector."""
    if requested == "hog":
        return "hog", ""
    if requested not in ("auto", "blazepose"):
        raise ValueError(f"unknown person detector {requested!r}; choose auto or one of {', '.join(DETECTORS)}")
    usable, why = detector_available("blazepose")
    return ("blazepose", "") if usable else ("hog", why)


def people_detector(name: str) -> Callable[[np.ndarray], list[list[float]]]:
    """The detector called `name` ("blazepose" or "hog"), loaded now so that a missing model or runtime raises
    here (ModelNotFoundError / RuntimeMissingError, one line naming the fix) rather than on the first image."""
    if name == "hog":
        return hog_people_boxes
    if name == "blazepose":
        from .blazepose import default_detector  # noqa: PLC0415

        return default_detector()
    raise ValueError(f"unknown person detector {name!r}; choose one of {', '.join(DETECTORS)}")
