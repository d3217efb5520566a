"""The one `datasets.Features` schema for pose corpora: one row per image, a list of instances per row.

Row layout (K = the skeleton's keypoint count, fixed per saved dataset):

- ``image`` (``Image``), ``image_id`` (int64), ``width`` / ``height`` (int32), ``file_name`` (string),
  ``skeleton`` (string, the skeleton's name)
- ``objects``: list of instances, each ``id`` (int64), ``category_id`` (int32), ``bbox`` ``[4]`` float32 ``(x, y, w, h)``,
  ``keypoints`` ``[K, 3]`` float32 ``(x, y, v)`` with COCO visibility (0 unlabelled, 1 labelled but occluded,
  2 labelled and visible; COCO-WholeBody face/hand points keep the source's fractional confidences, where any
  v > 0 means labelled), ``num_keypoints`` (int32, number of keypoints with v > 0), ``area`` (float32), ``iscrowd``
  (int8)
- optional extras a protocol needs (:data:`IMAGE_EXTRAS`, :data:`OBJECT_EXTRAS`), chosen per format.

The skeleton definition itself travels in the dataset's ``info.description`` (see :func:`dataset_description`), so
``load_from_disk`` gives back a dataset that describes itself; parquet exports carry it in a ``posebh.json`` file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import datasets

from ..skeletons import Skeleton

__all__ = [
    "FORMAT_VERSION",
    "IMAGE_EXTRAS",
    "METADATA_MARKER",
    "OBJECT_EXTRAS",
    "dataset_description",
    "metadata_from_description",
    "pose_features",
    "skeleton_from_info",
]

FORMAT_VERSION = 1
METADATA_MARKER = "posebh-metadata: "

_BOX = datasets.List(datasets.Value("float32"), length=4)

# Extras stored per image row.
IMAGE_EXTRAS: dict[str, Any] = {
    "crowd_index": datasets.Value("float32"),  # CrowdPose: the image's crowd index (easy/medium/hard split)
    "video_id": datasets.Value("int64"),  # APT-36K: the video a frame belongs to (splits are by video)
    "capture": datasets.Value("int32"),  # InterHand2.6M capture id
    "camera": datasets.Value("string"),  # InterHand2.6M camera name
    "frame_idx": datasets.Value("int64"),  # InterHand2.6M frame index
}

# Extras stored per instance.
OBJECT_EXTRAS: dict[str, Any] = {
    "head_box": datasets.List(datasets.Value("float32"), length=4),  # MPII head box (x1, y1, x2, y2) for PCKh
    "center": datasets.List(datasets.Value("float32"), length=2),  # MPII annotation centre (0-based pixels)
    "scale": datasets.Value("float32"),  # MPII annotation scale (units of 200 px, as in the source file)
    "face_box": _BOX,  # COCO-WholeBody part boxes (x, y, w, h) and validity flags
    "lefthand_box": _BOX,
    "righthand_box": _BOX,
    "face_valid": datasets.Value("bool"),
    "lefthand_valid": datasets.Value("bool"),
    "righthand_valid": datasets.Value("bool"),
    "foot_valid": datasets.Value("bool"),
    "hand_type": datasets.Value("string"),  # InterHand2.6M: "right" or "left"
}


def pose_features(
    num_keypoints: int,
    image_extras: Sequence[str] = (),
    object_extras: Sequence[str] = (),
    *,
    decode_images: bool = True,
) -> datasets.Features:
    """The schema for a corpus with ``num_keypoints`` keypoints per instance plus the named extras."""
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
    unknown = [e for e in image_extras if e not in IMAGE_EXTRAS] + [e for e in object_extras if e not in OBJECT_EXTRAS]
    if unknown:
        raise ValueError(f"unknown extra field(s) {unknown}; known: {sorted(IMAGE_EXTRAS) + sorted(OBJECT_EXTRAS)}")
    instance: dict[str, Any] = {
        "id": datasets.Value("int64"),
        "category_id": datasets.Value("int32"),
        "bbox": _BOX,
        "keypoints": datasets.Array2D(shape=(num_keypoints, 3), dtype="float32"),
        "num_keypoints": datasets.Value("int32"),
        "area": datasets.Value("float32"),
        "iscrowd": datasets.Value("int8"),
    }
    instance.update({name: OBJECT_EXTRAS[name] for name in object_extras})
    row: dict[str, Any] = {
        "image": datasets.Image(decode=decode_images),
        "image_id": datasets.Value("int64"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "file_name": datasets.Value("string"),
        "skeleton": datasets.Value("string"),
    }
    row.update({name: IMAGE_EXTRAS[name] for name in image_extras})
    row["objects"] = datasets.List(instance)
    return datasets.Features(row)


def dataset_description(skeleton: Skeleton, source_format: str, split: str | None, **extra: Any) -> str:
    """Human line + machine-readable metadata (skeleton definition, source format, split) for ``info.description``."""
    meta = {"format_version": FORMAT_VERSION, "source_format": source_format, "split": split,
            "skeleton": skeleton.to_dict(), **extra}
    human = (f"Pose corpus converted by posebh_hf from {source_format} annotations"
             f"{f' ({split} split)' if split else ''}; skeleton {skeleton.name!r} with {skeleton.num_keypoints} "
             "keypoints.")
    return f"{human}\n{METADATA_MARKER}{json.dumps(meta, sort_keys=True)}"


def metadata_from_description(description: str | None) -> dict[str, Any]:
    """Parse what :func:`dataset_description` wrote; ValueError when the description carries no posebh metadata."""
    for line in (description or "").splitlines():
        if line.startswith(METADATA_MARKER):
            try:
                meta = json.loads(line[len(METADATA_MARKER):])
            except json.JSONDecodeError as err:
                raise ValueError(f"dataset info carries corrupt posebh metadata: {err}") from None
            if not isinstance(meta, Mapping) or "skeleton" not in meta:
                raise ValueError("dataset info's posebh metadata has no 'skeleton'")
            return dict(meta)
    raise ValueError("dataset info has no posebh metadata (was it built with `posebh data build`?)")


def skeleton_from_info(info: datasets.DatasetInfo) -> Skeleton:
    """The skeleton a saved pose dataset was built with (from ``info.description``)."""
    meta = metadata_from_description(info.description)
    return Skeleton.from_dict(meta["skeleton"], source="dataset info")
