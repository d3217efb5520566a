"""BlazePose's landmark model (`pose_landmark_full.tflite`, 6.4 MB, Apache-2.0, from the mediapipe wheel) as a box
refiner for the person detector (layer 0): each detection's rotated square region (centre: the mid-hip keypoint;
side: 2.5 r; turned so that the body axis points up; MediaPipe's pose_detection_to_roi) is cropped to 256 x 256,
the model gives 33 body landmarks with visibilities and a "pose present" score, and the person box is the box of
the visible landmarks, widened (`MARGIN_X` of its width on each side, `MARGIN_TOP` / `MARGIN_BOTTOM` of its
height: the top of the head and the soles lie beyond the outermost landmarks). Detections whose crop holds no
pose (score < `MIN_PRESENCE`) or fewer than 3 visible landmarks are dropped: that removes most false positives.
The margins were picked on the coco_mini train split (benchmarks/person_detector.py).
"""

from __future__ import annotations

import os
import threading

import numpy as np

__all__ = ["CROP_SIZE", "MARGIN_BOTTOM", "MARGIN_TOP", "MARGIN_X", "MIN_PRESENCE", "MIN_VISIBILITY",
           "LandmarkRefiner", "roi_affine"]

CROP_SIZE = 256
ROI_SCALE = 1.25
MIN_PRESENCE = 0.5
MIN_VISIBILITY = 0.5
MARGIN_X = 0.1
MARGIN_TOP = 0.2
MARGIN_BOTTOM = 0.05
NUM_BODY = 33  # the model gives 39 points; 33-38 are its own region helpers


def roi_affine(keypoints: np.ndarray) -> np.ndarray:
    """[2, 3] affine from crop pixels (256 x 256) to image pixels for one detection's keypoints [4, 2] (pixels)."""
    centre, top = keypoints[0], keypoints[1]
    axis = top - centre
    side = 2.0 * ROI_SCALE * max(float(np.hypot(*axis)), 1.0)
    angle = np.pi / 2 - np.arctan2(-axis[1], axis[0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    affine = np.zeros((2, 3))
    affine[:, :2] = rot * (side / CROP_SIZE)
    affine[:, 2] = centre - rot @ np.array([side / 2, side / 2])
    return affine


class LandmarkRefiner:
    """`refine(rgb, keypoints)` -> (box [4] xywh pixels or None, pose score) for one detection. Thread-safe."""

    def __init__(self, model_path: str | os.PathLike, interpreter_class: type, num_threads: int = 1) -> None:
        self.model_path = model_path
        self._interpreter = interpreter_class(model_path=str(model_path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        (inp,) = self._interpreter.get_input_details()
        if tuple(inp["shape"]) != (1, CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"{model_path} is not BlazePose's pose_landmark_full.tflite (input {inp['shape']})")
        self._input = inp["index"]
        outputs = {tuple(o["shape"]): o["index"] for o in self._interpreter.get_output_details()}
        if (1, 195) not in outputs or (1, 1) not in outputs:
            raise ValueError(f"{model_path}: unexpected outputs {sorted(outputs)}")
        self._landmarks, self._presence = outputs[(1, 195)], outputs[(1, 1)]
        self._lock = threading.Lock()

    def landmarks(self, rgb: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """rgb [H, W, 3] uint8, detector keypoints [4, 2] -> (landmarks [33, 2] image pixels, visibility [33] in
        [0, 1], pose score in [0, 1])."""
        import cv2  # noqa: PLC0415

        affine = roi_affine(np.asarray(keypoints, np.float64))
        crop = cv2.warpAffine(rgb, affine, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT)
        with self._lock:
            self._interpreter.set_tensor(self._input, (crop.astype(np.float32) / 255.0)[None])
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._landmarks)[0].reshape(-1, 5)[:NUM_BODY].astype(np.float64)
            presence = float(self._interpreter.get_tensor(self._presence)[0, 0])
        xy = raw[:, :2] @ affine[:, :2].T + affine[:, 2]
        visibility = 1.0 / (1.0 + np.exp(-np.clip(raw[:, 3], -60, 60)))
        return xy, visibility, presence

    def refine(self, rgb: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray | None, float]:
        """The person box [4] (xywh, clipped to the image) from the visible landmarks, or None when the crop holds
        no pose; and the pose score."""
        xy, visibility, presence = self.landmarks(rgb, keypoints)
        seen = xy[visibility >= MIN_VISIBILITY]
        if presence < MIN_PRESENCE or len(seen) < 3:
            return None, presence
        (x0, y0), (x1, y1) = seen.min(axis=0), seen.max(axis=0)
        w, h = x1 - x0, y1 - y0
        height, width = rgb.shape[:2]
        x0, x1 = np.clip([x0 - MARGIN_X * w, x1 + MARGIN_X * w], 0, width)
        y0, y1 = np.clip([y0 - MARGIN_TOP * h, y1 + MARGIN_BOTTOM * h], 0, height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None, presence
        return np.array([x0, y0, x1 - x0, y1 - y0]), presence
