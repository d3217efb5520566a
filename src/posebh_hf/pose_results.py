"""Result objects of inference (layer 4): one `PoseResult` per image, with its instances (box, box score) and, per
skeleton, named keypoints with x, y and a score in [0, 1].

`to_dict()` / `to_json()` give the schema `posebh predict` prints (one JSON object per image); `plot()` draws the
overlays (box, skeleton name, limbs and points above a threshold) on the image; `save(path)` writes the plot (.png,
.jpg) or the JSON (.json); `boxes`, `keypoints(name)` and `scores(name)` are the arrays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic_files import write_atomically, write_text_atomically
from .skeletons import Skeleton
from .visualize import check_score_threshold, draw_pose

__all__ = ["KeypointSet", "PoseInstance", "PoseResult"]


@dataclass(frozen=True)
class KeypointSet:
    """One instance's keypoints for one skeleton. xy: [K, 2] image pixels; scores: [K] in [0, 1]."""

    skeleton: Skeleton
    xy: np.ndarray
    scores: np.ndarray

    @property
    def names(self) -> list[str]:
        return list(self.skeleton.keypoint_names)

    def to_dict(self) -> dict[str, Any]:
        return {"keypoints": [{"name": name, "x": round(float(x), 2), "y": round(float(y), 2),
                               "score": round(min(max(float(s), 0.0), 1.0), 4)}
                              for name, (x, y), s in zip(self.names, self.xy, self.scores, strict=True)]}


@dataclass(frozen=True)
class PoseInstance:
    """One person/animal: its box [x, y, w, h] (image pixels), the detector's score (None for given boxes) and
    its keypoints per skeleton."""

    box: tuple[float, float, float, float]
    box_score: float | None
    skeletons: dict[str, KeypointSet]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bbox": [round(float(v), 2) for v in self.box]}
        if self.box_score is not None:
            out["bbox_score"] = round(float(self.box_score), 4)
        out["skeletons"] = {name: kps.to_dict() for name, kps in self.skeletons.items()}
        return out


@dataclass
class PoseResult:
    """Everything predicted on one image. `image`: the RGB uint8 [H, W, 3] it was made from (for `plot`)."""

    image_name: str
    width: int
    height: int
    instances: list[PoseInstance]
    skeleton_names: list[str]
    image: np.ndarray | None = field(default=None, repr=False)

    # ------------------------------------------------------------------------------------------------ arrays
    @property
    def boxes(self) -> np.ndarray:
        """[N, 4] boxes (x, y, w, h)."""
        return np.asarray([inst.box for inst in self.instances], np.float32).reshape(-1, 4)

    def keypoints(self, skeleton: str | None = None) -> np.ndarray:
        """[N, K, 2] keypoints of `skeleton` (default: the first one predicted)."""
        name = self._name(skeleton)
        k = self._num_keypoints(name)
        return np.asarray([inst.skeletons[name].xy for inst in self.instances], np.float32).reshape(-1, k, 2)

    def scores(self, skeleton: str | None = None) -> np.ndarray:
        """[N, K] keypoint scores in [0, 1] of `skeleton` (default: the first one predicted)."""
        name = self._name(skeleton)
        k = self._num_keypoints(name)
        return np.asarray([inst.skeletons[name].scores for inst in self.instances], np.float32).reshape(-1, k)

    def _name(self, skeleton: str | None) -> str:
        if skeleton is None:
            if not self.skeleton_names:
                raise ValueError("this result has no skeletons")
            return self.skeleton_names[0]
        if skeleton not in self.skeleton_names:
            raise ValueError(f"skeleton {skeleton!r} was not predicted; this result has {self.skeleton_names}")
        return skeleton

    def _num_keypoints(self, name: str) -> int:
        if self.instances:
            return len(self.instances[0].skeletons[name].names)
        return 0

    # ------------------------------------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        """The `posebh predict` schema: image, width, height, instances (bbox, skeletons -> named keypoints)."""
        return {"image": self.image_name, "width": int(self.width), "height": int(self.height),
                "instances": [inst.to_dict() for inst in self.instances]}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def plot(self, threshold: float = 0.3, skeletons: Sequence[str] | None = None,
             image: np.ndarray | None = None) -> np.ndarray:
        """The image (RGB uint8 [H, W, 3]) with every instance drawn: its box, the skeleton's name inside the image,
        limbs and keypoints whose score is >= `threshold`."""
        threshold = check_score_threshold(threshold)
        canvas = image if image is not None else self.image
        if canvas is None:
            raise ValueError("this result holds no image to draw on; pass image=...")
        names = list(skeletons) if skeletons else list(self.skeleton_names)
        for name in names:
            self._name(name)
        for inst in self.instances:
            for i, name in enumerate(names):
                kps = inst.skeletons[name]
                canvas = draw_pose(canvas, kps.xy, kps.scores, kps.skeleton, score_threshold=threshold,
                                   box_xywh=inst.box if i == 0 else None, label=" + ".join(names) if i == 0 else None)
        return canvas

    def save(self, path: str | Path, threshold: float = 0.3) -> Path:
        """Write the plot (`.png`, `.jpg`, `.jpeg`, `.webp`) or the JSON (`.json`) to `path`, atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            return write_text_atomically(path, self.to_json(indent=1) + "\n")
        if suffix not in (".png", ".jpg", ".jpeg", ".webp"):
            raise ValueError(f"cannot save a result as {path.name!r}: use .png, .jpg, .webp (the plot) or .json")
        from PIL import Image  # noqa: PLC0415

        drawn = self.plot(threshold=threshold)
        fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}[suffix]
        return write_atomically(path, lambda tmp: Image.fromarray(drawn).save(tmp, format=fmt))
