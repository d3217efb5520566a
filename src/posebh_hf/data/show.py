"""Material for ``posebh data show``: augmented training samples of a built dataset, de-normalised for drawing.

Drawing itself (skeleton edges) lives in ``posebh_hf.visualize`` (a later layer); this module gives the crops, the
target keypoints and a heatmap overlay, and tiles images into a grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..skeletons import Skeleton
from ..transforms import IMAGENET_MEAN, IMAGENET_STD
from .build import load_pose_dataset
from .transform import PoseTrainTransform
from .views import instance_dataset

__all__ = ["augmented_samples", "denormalize", "heatmap_overlay", "tile"]


def augmented_samples(dataset_dir: str | Path, n: int = 8, *, seed: int = 0, epoch: int = 0,
                      box_source: str | None = None) -> tuple[list[dict[str, Any]], Skeleton]:
    """``n`` random training samples (transform outputs) of a built dataset, and its skeleton."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    dataset, skeleton = load_pose_dataset(dataset_dir)
    transform = PoseTrainTransform.from_dataset(dataset, seed=seed, box_source=box_source)
    transform.set_epoch(epoch)
    instances = instance_dataset(dataset, transform)
    if len(instances) == 0:
        raise ValueError(f"{dataset_dir} has no instance with labelled keypoints to show")
    picks = np.random.default_rng(seed).choice(len(instances), size=min(n, len(instances)), replace=False)
    return instances.__getitems__(sorted(int(i) for i in picks)), skeleton


def denormalize(pixel_values: np.ndarray) -> np.ndarray:
    """ImageNet-normalised ``[3, H, W]`` -> ``[H, W, 3]`` uint8 RGB."""
    chw = np.asarray(pixel_values, dtype=np.float32)
    hwc = chw.transpose(1, 2, 0) * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)
    return np.clip(hwc * 255.0 + 0.5, 0, 255).astype(np.uint8)


def heatmap_overlay(image_rgb: np.ndarray, target: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the max over the target channels ``[K, h, w]`` (upsampled to the image) onto the image, as a colormap."""
    peak = np.asarray(target, dtype=np.float32).max(axis=0) if len(target) else np.zeros((2, 2), np.float32)
    peak = cv2.resize(peak, (image_rgb.shape[1], image_rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap((np.clip(peak, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET),
                          cv2.COLOR_BGR2RGB)
    weight = (alpha * np.clip(peak, 0, 1))[..., None]
    return (image_rgb * (1 - weight) + colour * weight).astype(np.uint8)


def tile(images: Sequence[np.ndarray], cols: int = 4, gap: int = 4) -> np.ndarray:
    """Lay same-sized ``[H, W, 3]`` images out in a grid (row-major) with ``gap`` pixels of white between them."""
    if not images:
        raise ValueError("nothing to tile")
    h, w = images[0].shape[:2]
    cols = max(1, min(cols, len(images)))
    rows = -(-len(images) // cols)
    grid = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    return grid
