"""Offline person boxes from MediaPipe's BlazePose (layer 0), run with a small TFLite runtime.

Stage 1, the person detector (`pose_detection.tflite`, 2.9 MB, Apache-2.0, from the `mediapipe` wheel; see
`model_file`): an SSD on the image letterboxed to 224 x 224, 2254 anchors. Each anchor gives a score and 12 numbers:
a face box (cx, cy, w, h) and 4 keypoints: 0 the mid-hip centre, 1 a point whose distance r from it is the radius
of the circle around the whole body (its direction is the body's axis), 2 the mid-shoulder centre, 3 the same for
the upper body. Decoding follows MediaPipe's pose_detection graph: anchors, sigmoid score >= 0.5, weighted NMS at
IoU 0.3 on the face boxes.

Stage 2 (`refine=True`, the default), the landmark model (`pose_landmarks.py`): each detection's body region gives
33 landmarks; the box of the visible ones (widened) is the person box, and a detection whose region holds no pose
is dropped. Without it (`refine=False`, about 2x faster with several people) the person box is the axis-aligned box
around a rectangle on the body axis, `BELOW` r below the hips to `ABOVE` r above them and `HALF_WIDTH` r to each
side, united with the face box; it is loose and keeps the detector's false positives. Either way boxes are clipped
to the image and a final NMS (IoU 0.5) runs. The constants were fitted on the `coco_mini` train split;
benchmarks/person_detector.py reports it apart from the other sets.

The detector is face-anchored (BlazePose tracks one person and finds the head first): people seen from behind,
with the head cut off, or smaller than about 1/10 of the image's long side are mostly missed.

Runtime: `ai-edge-litert` (`pip install 'posebh-hf[detect]'`), else `tflite-runtime`; `RuntimeMissingError` says
what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from functools import lru_cache

import numpy as np

from .boxes import box_iou, nms
from .model_file import find_model
from .pose_landmarks import LandmarkRefiner

__all__ = ["ABOVE", "BELOW", "HALF_WIDTH", "INPUT_SIZE", "BlazePersonDetector", "RuntimeMissingError", "anchors",
           "blazepose_available", "blazepose_people_boxes", "decode", "default_detector", "person_boxes",
           "weighted_nms"]

INPUT_SIZE = 224
NUM_ANCHORS = 2254
MIN_SCORE = 0.5
NMS_IOU = 0.3
MAX_DETECTIONS = 20
FINAL_NMS_IOU = 0.5
TILE_FRACTION = 0.6  # tiles=True: four corner windows of 60 % of the width and height (people look 1.7x larger)
# Body rectangle in units of r for refine=False (see the module docstring), fitted on coco_mini train.
BELOW = 0.9
ABOVE = 1.0
HALF_WIDTH = 0.35


class RuntimeMissingError(ImportError, ValueError):
    """No TFLite runtime is installed; the message names the pip command (a ValueError too, so that the `posebh`
    command shows it as one error line)."""


def _interpreter_class():
    for module, attr in (("ai_edge_litert.interpreter", "Interpreter"), ("tflite_runtime.interpreter", "Interpreter")):
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError:
            continue
    raise RuntimeMissingError("no TFLite runtime for the BlazePose person detector: pip install 'posebh-hf[detect]' "
                              "(or pip install ai-edge-litert)")


def blazepose_available(refine: bool = True) -> tuple[bool, str]:
    """(usable, why not): a runtime is importable and the model files are found. Loads nothing."""
    if not any(importlib.util.find_spec(m) for m in ("ai_edge_litert", "tflite_runtime")):
        return False, "no TFLite runtime for the BlazePose detector (pip install 'posebh-hf[detect]')"
    try:
        find_model("detector")
        if refine:
            find_model("landmarks")
    except FileNotFoundError as err:
        return False, str(err)
    return True, ""


@lru_cache(maxsize=1)
def anchors() -> np.ndarray:
    """SSD anchor centres [2254, 2] in [0, 1] (x, y), MediaPipe's SsdAnchorsCalculator for this model: strides
    8, 16, 32, 32, 32, two anchors per layer and location (layers of one stride share a grid), fixed size 1."""
    out = []
    strides = [8, 16, 32, 32, 32]
    i = 0
    while i < len(strides):
        stride, per_location = strides[i], 0
        while i < len(strides) and strides[i] == stride:
            per_location += 2
            i += 1
        size = int(np.ceil(INPUT_SIZE / stride))
        ys, xs = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, per_location, axis=0))
    result = np.concatenate(out).astype(np.float32)
    assert len(result) == NUM_ANCHORS
    return result


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, min_score: float = MIN_SCORE
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model outputs [2254, 12], [2254] (or [2254, 1]) -> face boxes [N, 4] xywh, keypoints [N, 4, 2] and
    scores [N], all in the 224-pixel input frame's [0, 1] units, for the anchors scoring >= `min_score`."""
    logits = np.clip(np.asarray(raw_scores, np.float64).reshape(-1), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= min_score
    values = np.asarray(raw_boxes, np.float64).reshape(-1, 12)[keep] / INPUT_SIZE
    centres = anchors()[keep].astype(np.float64)
    cx, cy = values[:, 0] + centres[:, 0], values[:, 1] + centres[:, 1]
    w, h = values[:, 2], values[:, 3]
    faces = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    keypoints = values[:, 4:].reshape(-1, 4, 2) + centres[:, None, :]
    return faces, keypoints, scores[keep]


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, extra: np.ndarray, iou_threshold: float = NMS_IOU
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: each cluster (boxes overlapping the best remaining one by > `iou_threshold`)
    becomes the score-weighted mean of its boxes [N, 4] and `extra` rows [N, ...] with the best score.
    Returns (boxes [M, 4], extra [M, ...], scores [M]), best first."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    extra = np.asarray(extra, np.float64)
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_extra, out_scores = [], [], []
    while len(order):
        ious = box_iou(boxes[order[0]], boxes[order])[0]
        cluster, order = order[ious > iou_threshold], order[ious <= iou_threshold]
        cluster = cluster if len(cluster) else order[:1]
        weights = scores[cluster] / scores[cluster].sum()
        out_boxes.append(np.tensordot(weights, boxes[cluster], axes=1))
        out_extra.append(np.tensordot(weights, extra[cluster], axes=1))
        out_scores.append(scores[cluster[0]])
    if not out_boxes:
        return np.zeros((0, 4)), np.zeros((0, *extra.shape[1:])), np.zeros(0)
    return np.stack(out_boxes), np.stack(out_extra), np.asarray(out_scores)


def person_boxes(faces: np.ndarray, keypoints: np.ndarray, width: int, height: int, *, below: float = BELOW,
                 above: float = ABOVE, half_width: float = HALF_WIDTH) -> np.ndarray:
    """Person boxes [N, 4] xywh in image pixels from face boxes [N, 4] and keypoints [N, 4, 2] (image pixels): the
    body-axis rectangle of the module docstring united with the face box, clipped to the image."""
    hips, tops = keypoints[:, 0], keypoints[:, 1]
    axis = tops - hips
    radius = np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-6)
    along = axis / radius
    across = np.stack([-along[:, 1], along[:, 0]], axis=1)
    corners = np.stack([hips + along * (t * radius) + across * (s * radius)
                        for t in (-below, above) for s in (-half_width, half_width)], axis=1)
    face_corners = np.stack([faces[:, :2], faces[:, :2] + faces[:, 2:]], axis=1)
    points = np.concatenate([corners, face_corners], axis=1)
    x0 = np.clip(points[..., 0].min(axis=1), 0, width)
    y0 = np.clip(points[..., 1].min(axis=1), 0, height)
    x1 = np.clip(points[..., 0].max(axis=1), 0, width)
    y1 = np.clip(points[..., 1].max(axis=1), 0, height)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


class BlazePersonDetector:
    """BlazePose person boxes for one image: `detect(rgb)` -> (boxes [N, 4] xywh pixels, scores [N]), best first;
    `__call__` -> the boxes as lists, like `hog_people_boxes`. Thread-safe (one interpreter per model, locks).

    Raises `ModelNotFoundError` / `RuntimeMissingError` at construction when a model file or the runtime is missing.
    """

    def __init__(self, detector_path: str | os.PathLike | None = None,
                 landmarks_path: str | os.PathLike | None = None, *, refine: bool = True, tiles: bool = False,
                 min_score: float = MIN_SCORE, num_threads: int = 1) -> None:
        self.model_path = find_model("detector", detector_path)
        self.min_score, self.tiles = min_score, tiles
        interpreter_class = _interpreter_class()
        self.refiner = (LandmarkRefiner(find_model("landmarks", landmarks_path), interpreter_class, num_threads)
                        if refine else None)
        self._interpreter = interpreter_class(model_path=str(self.model_path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        (inp,) = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3) or len(outputs) != 2:
            raise ValueError(f"{self.model_path} is not BlazePose's pose_detection.tflite (input {inp['shape']})")
        self._input = inp["index"]
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        if set(by_width) != {12, 1}:
            raise ValueError(f"{self.model_path}: unexpected outputs {[o['shape'] for o in outputs]}")
        self._boxes_out, self._scores_out = by_width[12], by_width[1]
        self._lock = threading.Lock()

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """[H, W, 3] uint8 -> input [1, 224, 224, 3] float32 in [-1, 1] (centred on a black square), side, dx, dy."""
        import cv2  # noqa: PLC0415

        height, width = rgb.shape[:2]
        side = max(height, width)
        scale = INPUT_SIZE / side
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        square = np.full((INPUT_SIZE, INPUT_SIZE, 3), -1.0, np.float32)  # black, as MediaPipe pads
        ox, oy = (INPUT_SIZE - new_w) // 2, (INPUT_SIZE - new_h) // 2
        small = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        square[oy:oy + new_h, ox:ox + new_w] = small.astype(np.float32) / 127.5 - 1.0
        return square[None], side, ox / scale, oy / scale

    def _window(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One model run on rgb [h, w, 3] -> decoded (faces [N, 4], keypoints [N, 4, 2], scores [N]) in its
        pixels, before NMS."""
        tensor, side, dx, dy = self._letterbox(np.ascontiguousarray(rgb))
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw_boxes = self._interpreter.get_tensor(self._boxes_out)[0].copy()
            raw_scores = self._interpreter.get_tensor(self._scores_out)[0].copy()
        faces, keypoints, scores = decode(raw_boxes, raw_scores, self.min_score)
        return faces * side - np.array([dx, dy, 0.0, 0.0]), keypoints * side - np.array([dx, dy]), scores

    def detect_parts(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """rgb [H, W, 3] uint8 -> (face boxes [N, 4] xywh, keypoints [N, 4, 2], scores [N]) in image pixels,
        after weighted NMS, best first. With `tiles`, four corner windows of `TILE_FRACTION` of the image are
        searched too (smaller people found, 5 model runs)."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an [H, W, 3] RGB image, got shape {rgb.shape}")
        height, width = rgb.shape[:2]
        windows = [(0, 0, width, height)]
        if self.tiles:
            tw, th = max(1, int(width * TILE_FRACTION)), max(1, int(height * TILE_FRACTION))
            windows += [(x, y, tw, th) for x in (0, width - tw) for y in (0, height - th)]
        parts = []
        for x, y, w, h in windows:
            faces, keypoints, scores = self._window(rgb[y:y + h, x:x + w])
            parts.append((faces + np.array([x, y, 0.0, 0.0]), keypoints + np.array([x, y]), scores))
        faces, keypoints, scores = (np.concatenate(p) for p in zip(*parts, strict=True))
        return weighted_nms(faces, scores, keypoints)

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """rgb [H, W, 3] uint8 -> (person boxes [N, 4] xywh float pixels, detector scores [N] in [0, 1]), best
        first, at most `MAX_DETECTIONS`."""
        rgb = np.asarray(rgb)
        faces, keypoints, scores = self.detect_parts(rgb)
        faces, keypoints, scores = faces[:MAX_DETECTIONS], keypoints[:MAX_DETECTIONS], scores[:MAX_DETECTIONS]
        if not len(scores):
            return np.zeros((0, 4)), np.zeros(0)
        height, width = rgb.shape[:2]
        if self.refiner is None:
            boxes = person_boxes(faces, keypoints, width, height)
        else:
            refined = [self.refiner.refine(rgb, points)[0] for points in keypoints]
            scores = np.array([s for s, box in zip(scores, refined, strict=True) if box is not None])
            boxes = np.array([box for box in refined if box is not None]).reshape(-1, 4)
        good = (boxes[:, 2] >= 2) & (boxes[:, 3] >= 2)
        boxes, scores = boxes[good], scores[good]
        keep = nms(boxes, scores, FINAL_NMS_IOU)
        return boxes[keep], scores[keep]

    def __call__(self, rgb: np.ndarray) -> list[list[float]]:
        boxes, _ = self.detect(rgb)
        return [[round(float(v), 2) for v in box] for box in boxes]


_DEFAULT: dict[tuple[str, str], BlazePersonDetector] = {}
_DEFAULT_LOCK = threading.Lock()


def default_detector() -> BlazePersonDetector:
    """One shared refined detector for the model files `find_model` picks (built on first use)."""
    key = (str(find_model("detector").resolve()), str(find_model("landmarks").resolve()))
    with _DEFAULT_LOCK:
        if key not in _DEFAULT:
            _DEFAULT[key] = BlazePersonDetector(*key)
        return _DEFAULT[key]


def blazepose_people_boxes(rgb: np.ndarray) -> list[list[float]]:
    """People boxes [x, y, w, h] (float pixels, best first, NMS) from the shared BlazePose detector: the same
    convention as `hog_people_boxes`. Raises ModelNotFoundError / RuntimeMissingError when it cannot run."""
    return default_detector()(rgb)
