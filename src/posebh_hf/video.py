"""Pose estimation on a video (layer 4): read frames with OpenCV, find people every `every` frames, follow them in
between from the previous frame's keypoints, keep track ids with a greedy IoU tracker, write an annotated video and
yield one JSON-ready record per frame.

    for record in predict_video(pipe, "clip.mp4", out_video="clip_pose.mp4", skeletons=["lspe"]):
        print(json.dumps(record))        # {"frame", "time", "image", "width", "height", "instances": [..., "track_id"]}

Boxes between detections: the box of each instance's keypoints scoring >= `follow_threshold`, widened by
`follow_margin` (a person's keypoints do not reach the edges of their box), or the previous box when too few
keypoints are confident. Without a detector (`detect="none"`) the whole frame is one box.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .detection import box_iou, people_detector

__all__ = ["VIDEO_SUFFIXES", "IouTracker", "boxes_from_keypoints", "predict_video"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass
class IouTracker:
    """Greedy IoU matching of each frame's boxes to the previous frame's tracks; unmatched boxes start new ids."""

    min_iou: float = 0.3
    next_id: int = 1
    boxes: dict[int, np.ndarray] = field(default_factory=dict)

    def update(self, boxes: np.ndarray) -> list[int]:
        """[N, 4] xywh boxes of this frame -> their track ids (tracks without a match end)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = [-1] * len(boxes)
        if self.boxes and len(boxes):
            track_ids = list(self.boxes)
            iou = box_iou(boxes, np.stack([self.boxes[t] for t in track_ids]))
            while iou.size and iou.max() >= self.min_iou:
                row, col = np.unravel_index(int(iou.argmax()), iou.shape)
                ids[row] = track_ids[col]
                iou[row, :] = -1.0
                iou[:, col] = -1.0
        for i, track in enumerate(ids):
            if track < 0:
                ids[i] = self.next_id
                self.next_id += 1
        self.boxes = {t: boxes[i] for i, t in enumerate(ids)}
        return ids


def boxes_from_keypoints(keypoints: np.ndarray, scores: np.ndarray, previous: np.ndarray, width: int, height: int,
                         threshold: float = 0.3, margin: float = 0.25, min_points: int = 3) -> np.ndarray:
    """Next-frame boxes [N, 4] from this frame's keypoints [N, K, 2] and scores [N, K]: the confident keypoints'
    box widened by `margin` on each side, clipped to the frame; the previous box [N, 4] when fewer than
    `min_points` keypoints are confident."""
    out = np.asarray(previous, np.float64).reshape(-1, 4).copy()
    for i, (xy, score) in enumerate(zip(keypoints, scores, strict=True)):
        good = xy[score >= threshold]
        if len(good) < min_points:
            continue
        x0, y0 = good.min(axis=0)
        x1, y1 = good.max(axis=0)
        w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        x0, y0 = max(0.0, x0 - margin * w), max(0.0, y0 - margin * h)
        x1, y1 = min(float(width), x1 + margin * w), min(float(height), y1 + margin * h)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            out[i] = [x0, y0, x1 - x0, y1 - y0]
    return out


def _detector(detect: str) -> Callable[[np.ndarray], list[list[float]]]:
    if detect == "none":
        return lambda frame: [[0.0, 0.0, float(frame.shape[1]), float(frame.shape[0])]]
    if detect in ("hog", "blazepose"):
        return people_detector(detect)  # blazepose without its model or runtime: an error naming the fix
    raise ValueError(f"unknown detector {detect!r}; choose 'blazepose', 'hog' or 'none'")


def predict_video(pipe: Any, source: str | Path, *, out_video: str | Path | None = None, detect: str = "hog",
                  every: int = 5, skeletons: Sequence[str] | None = None, flip: bool = True,
                  threshold: float = 0.3, follow_threshold: float = 0.3, follow_margin: float = 0.25,
                  progress: bool = True) -> Iterator[dict[str, Any]]:
    """Per frame: the `PoseResult.to_dict()` record plus "frame", "time" (s) and a "track_id" per instance.

    Args:
        pipe: a `PoseBHPipeline`.
        source: a video file OpenCV can read.
        out_video: write the annotated video here (mp4v codec), atomically once the last frame is done.
        detect: "blazepose" (MediaPipe's BlazePose person detector; `pip install 'posebh-hf[detect]'` and its
            model files, see `posebh_hf.detection`), "hog" (OpenCV's people detector, weak) or "none" (the whole
            frame).
        every: run the detector on every `every`-th frame (and whenever no one is being followed).
    """
    import cv2  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    find = _detector(detect)
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"cannot read video {source} (OpenCV could not open it)")
    fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    names = list(skeletons) if skeletons else list(pipe.model.config.skeletons_to_draw)
    tracker = IouTracker()
    writer = _VideoOut(Path(out_video), fps) if out_video is not None else None
    boxes = np.zeros((0, 4))
    bar = tqdm(total=total, unit="frame", desc=Path(source).name, disable=not progress)
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            height, width = rgb.shape[:2]
            if index % every == 0 or len(boxes) == 0:
                boxes = np.asarray(find(rgb), np.float64).reshape(-1, 4)
            ids = tracker.update(boxes)
            result = pipe.predict([rgb], boxes=[boxes.tolist()] if len(boxes) else [[]], skeletons=names,
                                  flip=flip, image_names=[f"{Path(source).name}#{index}"])[0]
            record = {"frame": index, "time": round(index / fps, 4), **result.to_dict()}
            for instance, track in zip(record["instances"], ids, strict=True):
                instance["track_id"] = int(track)
            yield record
            if writer is not None:
                writer.add(_annotate(result, ids, threshold))
            if len(boxes):
                boxes = boxes_from_keypoints(result.keypoints(names[0]), result.scores(names[0]), boxes, width,
                                             height, follow_threshold, follow_margin)
            index += 1
            bar.update(1)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        capture.release()
        bar.close()
    if writer is not None:
        writer.finish()


def _annotate(result: Any, ids: list[int], threshold: float) -> np.ndarray:
    import cv2  # noqa: PLC0415

    canvas = result.plot(threshold=threshold) if result.instances else result.image.copy()
    for instance, track in zip(result.instances, ids, strict=True):
        x, y, w, h = (int(round(v)) for v in instance.box)
        cv2.putText(canvas, f"#{track}", (x + 2, min(canvas.shape[0] - 4, y + h - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.6, (255, 255, 0), 2, cv2.LINE_AA)
    return canvas


class _VideoOut:
    """Frames streamed to a hidden file beside `path` (mp4v), renamed to `path` when the last frame is written; a
    failed or interrupted run removes it (no half-written video under the real name)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}.mp4")
        self.writer = None

    def add(self, frame_rgb: np.ndarray) -> None:
        import cv2  # noqa: PLC0415

        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame_rgb.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self.writer.isOpened():
                raise OSError(f"cannot write video {self.path}: OpenCV has no mp4v encoder here")
        self.writer.write(np.ascontiguousarray(frame_rgb[:, :, ::-1]))

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.release()
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.tmp.unlink(missing_ok=True)
