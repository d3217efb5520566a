"""The top-down training transform on dataset rows: instance -> crop, targets, weights and ``dataset_index``.

:class:`PoseTrainTransform` turns one instance of a per-image row into a training sample with the layer-1 pieces
(``transforms.TopDownTrainTransform``: flip with the skeleton's pairs, half-body, scale/rotation, UDP or plain affine
crop with OpenCV, ImageNet normalisation, and the codec's UDP/MSRA targets). It adds what depends on the dataset:
box -> (center, scale) with the load-time centre jitter, per-instance random generators, and the output keys.

Randomness: each instance's generator is seeded by ``(seed, dataset_index, image_id, object position, epoch)``,
so a sample does not depend on which process, worker or batch produces it; the centre jitter uses the same key
without the epoch (mmpose draws it once, when the annotation list is built).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np

from ..geometry import PIXEL_STD, box_to_center_scale
from ..skeletons import Skeleton
from ..transforms import AugmentConfig, TopDownTrainTransform, jitter_center
from .features import metadata_from_description
from .image_io import decode_image
from .instance_specs import InstanceSpec, instance_spec_for
from .instances import clean_boxes, instance_usable

__all__ = ["OUTPUT_KEYS", "PoseTrainTransform"]

# Keys of one training sample (shapes for input (W_in, H_in), heatmap (W, H), K keypoints).
OUTPUT_KEYS = (
    "pixel_values",  # [3, H_in, W_in] float32, ImageNet-normalised RGB
    "target",  # [K, H, W] float32 Gaussian heatmaps
    "target_weight",  # [K] float32 (visibility, 0 when the Gaussian window is off the map)
    "keypoints",  # [K, 3] float32: crop-pixel x, y and 0/1 visibility after augmentation
    "dataset_index",  # int
    "image_id",  # int
    "object_index",  # int: position of the instance in its row's `objects`
)

_JITTER_STREAM, _AUGMENT_STREAM = 1, 2
_MASK64 = (1 << 64) - 1


class PoseTrainTransform:
    """Per-instance training transform for one pose dataset (one skeleton).

    Args:
        skeleton: the dataset's skeleton (flip pairs, upper-body ids, K).
        dataset_index: the dataset's position in the model's ``dataset_names``; returned with every sample.
        spec: box handling + augmentation; default :func:`presets.instance_spec_for` of ``preset``.
        preset: corpus name for the default spec (``coco``, ``mpii``, ``aic``...; unknown names get COCO's).
        augment: overrides the preset's augmentation numbers.
        box_source: overrides the preset's ROI source (``"bbox"``, ``"roi"``, ``"content"``; see InstanceSpec).
        seed: base seed of every random draw.
    """

    def __init__(
        self,
        skeleton: Skeleton,
        *,
        dataset_index: int = 0,
        spec: InstanceSpec | None = None,
        preset: str | None = None,
        augment: AugmentConfig | None = None,
        box_source: str | None = None,
        seed: int = 0,
    ) -> None:
        self.skeleton = skeleton
        self.dataset_index = int(dataset_index)
        self.spec = spec or instance_spec_for(preset or skeleton.name, skeleton, augment, box_source)
        self.seed = int(seed)
        self.epoch = 0
        self.pipeline = TopDownTrainTransform(self.spec.augment, skeleton.flip_indices, skeleton.upper_body_ids)

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset | datasets.IterableDataset, **kwargs: Any) -> PoseTrainTransform:
        """Skeleton and preset from a dataset built by ``posebh data build`` (its ``info.description``).

        A dataset without that metadata (e.g. parquet files loaded from the Hub) needs ``skeleton=`` (from the
        repo's ``posebh.json``); the preset then defaults to the skeleton's name.
        """
        skeleton = kwargs.pop("skeleton", None)
        try:
            meta = metadata_from_description(dataset.info.description)
        except ValueError:
            if skeleton is None:
                raise
            meta = {}
        skeleton = skeleton or Skeleton.from_dict(meta["skeleton"], source="dataset info")
        source_format = meta.get("source_format")
        kwargs.setdefault("preset", source_format if source_format not in (None, "coco-custom") else skeleton.name)
        return cls(skeleton, **kwargs)

    @property
    def num_keypoints(self) -> int:
        return self.skeleton.num_keypoints

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (call before each epoch's DataLoader iterator is created)."""
        self.epoch = int(epoch)

    def _rng(self, stream: int, image_id: int, object_index: int, epoch: int) -> np.random.Generator:
        key = [self.seed & _MASK64, self.dataset_index, stream, epoch, int(image_id) & _MASK64, int(object_index)]
        return np.random.default_rng(key)

    def usable(self, obj: Mapping[str, Any], width: int, height: int) -> bool:
        """Whether an instance is a training sample (labelled keypoints, usable box)."""
        return instance_usable(obj, width, height, self.spec)

    def center_scale(self, bbox: Any, width: int, height: int, image_id: int, object_index: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``(center [2], scale [2])`` of an instance's ROI, with the reference's once-per-annotation jitter."""
        config = self.spec.augment
        source = self.spec.box_source
        if source == "roi":
            box = np.asarray(bbox, dtype=np.float32).reshape(4)
            return box[:2] + box[2:] * 0.5, (box[2:] / PIXEL_STD * config.bbox_padding).astype(np.float32)
        if source == "content":
            size = np.array([width, height], dtype=np.float32)
            content = size / config.bbox_padding
            box = np.concatenate([(size - content) * 0.5, content])
        else:
            box = clean_boxes(np.asarray(bbox, dtype=np.float32).reshape(1, 4), np.float32(width),
                              np.float32(height))[0][0]
        center, scale = box_to_center_scale(box, config.aspect_ratio, config.bbox_padding)
        rng = self._rng(_JITTER_STREAM, image_id, object_index, 0)
        center = jitter_center(center, box[2:], rng, config.center_jitter_prob, config.center_jitter_factor)
        return center, scale

    def encode(self, image: np.ndarray, obj: Mapping[str, Any], width: int, height: int, image_id: int,
               object_index: int) -> dict[str, Any]:
        """One training sample (keys :data:`OUTPUT_KEYS`) from an RGB image ``[H, W, 3]`` and one instance dict."""
        kpts = np.asarray(obj["keypoints"], dtype=np.float32).reshape(self.num_keypoints, 3)
        visibility = (kpts[:, 2] > 0).astype(np.float32)  # min(1, v); WholeBody's fractional v count as labelled
        center, scale = self.center_scale(obj["bbox"], width, height, image_id, object_index)
        rng = self._rng(_AUGMENT_STREAM, image_id, object_index, self.epoch)
        out = self.pipeline(image, kpts[:, :2], visibility, center, scale, rng)
        return {
            "pixel_values": out["pixel_values"],
            "target": out["target"],
            "target_weight": out["target_weight"],
            "keypoints": np.concatenate([out["keypoints"], out["visibility"][:, None]], axis=1).astype(np.float32),
            "dataset_index": self.dataset_index,
            "image_id": int(image_id),
            "object_index": int(object_index),
        }

    def encode_row(self, row: Mapping[str, Any], object_index: int, image: np.ndarray | None = None
                   ) -> dict[str, Any]:
        """:meth:`encode` for ``row["objects"][object_index]`` of a dataset row (decodes the image if not given)."""
        image = decode_image(row["image"]) if image is None else image
        return self.encode(image, row["objects"][object_index], int(row["width"]), int(row["height"]),
                           int(row["image_id"]), object_index)

    def __repr__(self) -> str:
        return (f"PoseTrainTransform(skeleton={self.skeleton.name!r}, dataset_index={self.dataset_index}, "
                f"seed={self.seed}, spec={self.spec})")
