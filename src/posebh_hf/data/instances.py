"""Instance selection and flattening: which (row, object) pairs of a per-image pose dataset are training samples.

The order is row-major (image order, then object order), independent of any seed; samplers shuffle it per epoch.
A selected instance has at least one labelled keypoint (in ``InstanceSpec.labelled_range``) and, when its ROI comes
from its person box (``box_source="bbox"``), a box that survives mmpose's cleaning (clip to the image; area > 0;
x2 > x1, y2 > y1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from .instance_specs import InstanceSpec

__all__ = ["InstanceIndex", "clean_boxes", "select_instances"]

_CHUNK = 4096  # rows read at a time (keypoints only, no images)


@dataclass(frozen=True)
class InstanceIndex:
    """Selected instances: ``rows`` [N] (row in the dataset) and ``objects`` [N] (index in that row's objects)."""

    rows: np.ndarray
    objects: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def clean_boxes(boxes: np.ndarray, width: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised mmpose box cleaning: boxes ``[N, 4]`` xywh -> (clean boxes ``[N, 4]``, valid ``[N]`` bool).

    Same rule as ``geometry.sanitize_box_xywh``: ``x1 = max(0, x)``, ``x2 = min(W - 1, x1 + max(0, w - 1))``.
    """
    x1 = np.maximum(0.0, boxes[:, 0])
    y1 = np.maximum(0.0, boxes[:, 1])
    x2 = np.minimum(width - 1.0, x1 + np.maximum(0.0, boxes[:, 2] - 1.0))
    y2 = np.minimum(height - 1.0, y1 + np.maximum(0.0, boxes[:, 3] - 1.0))
    valid = (x2 > x1) & (y2 > y1)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).astype(np.float32), valid


def usable_mask(keypoints: np.ndarray, boxes: np.ndarray, area: np.ndarray, width: np.ndarray, height: np.ndarray,
                spec: InstanceSpec) -> np.ndarray:
    """``[N]`` bool: which instances are training samples (keypoints ``[N, K, 3]``, boxes ``[N, 4]``)."""
    start, stop = spec.labelled_range or (0, keypoints.shape[1])
    labelled = np.any(keypoints[:, start:stop, 2] > 0, axis=1)
    if spec.box_source == "content":
        return labelled & (width > 1) & (height > 1)
    if spec.box_source == "roi":
        return labelled & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    _, valid = clean_boxes(boxes, width, height)
    return labelled & valid & (area > 0)


def instance_usable(obj: Mapping[str, Any], width: int, height: int, spec: InstanceSpec) -> bool:
    """:func:`usable_mask` for one instance dict (the streaming path)."""
    kpts = np.asarray(obj["keypoints"], dtype=np.float32)[None]
    box = np.asarray(obj["bbox"], dtype=np.float32)[None]
    mask = usable_mask(kpts, box, np.asarray([obj["area"]], np.float32), np.asarray([width], np.float32),
                       np.asarray([height], np.float32), spec)
    return bool(mask[0])


def _chunk_arrays(table: pa.Table) -> tuple[np.ndarray, ...]:
    """Per-object arrays of one chunk: counts per row [R], keypoints [N, K, 3], boxes [N, 4], area [N]."""
    objects = table.column("objects").combine_chunks()
    counts = objects.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    fields = dict(zip([f.name for f in objects.type.value_type], objects.flatten().flatten(), strict=True))
    keypoints_arr = fields["keypoints"]
    storage = keypoints_arr.storage if isinstance(keypoints_arr, pa.ExtensionArray) else keypoints_arr
    flat_kp = storage.flatten().flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    n = int(counts.sum())
    keypoints = flat_kp.reshape(n, -1, 3) if n else np.zeros((0, 1, 3), np.float32)
    boxes = fields["bbox"].flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, 4)
    area = fields["area"].to_numpy(zero_copy_only=False).astype(np.float32)
    return counts, keypoints, boxes, area


def select_instances(dataset: datasets.Dataset, spec: InstanceSpec) -> InstanceIndex:
    """The training instances of a per-image pose dataset, in row-major order (reads no images)."""
    view = dataset.select_columns(["width", "height", "objects"]).with_format("arrow")
    rows_out, objects_out = [], []
    for start in range(0, len(view), _CHUNK):
        table = view[start:start + _CHUNK]
        counts, keypoints, boxes, area = _chunk_arrays(table)
        row_ids = np.repeat(np.arange(start, start + len(counts)), counts)
        object_ids = np.arange(len(row_ids)) - np.repeat(np.cumsum(counts) - counts, counts)
        width = np.repeat(table.column("width").to_numpy().astype(np.float32), counts)
        height = np.repeat(table.column("height").to_numpy().astype(np.float32), counts)
        keep = usable_mask(keypoints, boxes, area, width, height, spec)
        rows_out.append(row_ids[keep])
        objects_out.append(object_ids[keep])
    if not rows_out:
        return InstanceIndex(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return InstanceIndex(np.concatenate(rows_out).astype(np.int64), np.concatenate(objects_out).astype(np.int64))
