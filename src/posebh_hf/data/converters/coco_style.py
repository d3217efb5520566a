"""The COCO keypoint JSON reader behind most converters (coco, ochuman, crowdpose, ap10k, apt36k, pw3d, ...).

Formats differ only in small hooks: how an annotation's keypoints are read (COCO-WholeBody concatenates five
fields), which extra fields an image or instance carries, and the name of the crowd flag.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...skeletons import Skeleton
from .base import (
    Corpus,
    ImageRecord,
    MalformedRecordError,
    as_int,
    ensure_sequence,
    load_json,
    make_object,
    parse_keypoints,
    require,
)

__all__ = ["KeypointReader", "ExtrasReader", "read_coco_style", "load_coco_dict", "default_keypoints"]

KeypointReader = Callable[[Mapping[str, Any], int, str, str], np.ndarray]
ExtrasReader = Callable[[Mapping[str, Any], str, str], dict[str, Any]]


def default_keypoints(ann: Mapping[str, Any], num_keypoints: int, source: str, record: str) -> np.ndarray:
    return parse_keypoints(require(ann, "keypoints", source, record), num_keypoints, source, record)


def _no_extras(_: Mapping[str, Any], __: str, ___: str) -> dict[str, Any]:
    return {}


def load_coco_dict(path: str | Path) -> dict[str, Any]:
    """Load a COCO-style file and check its top level (``images`` and ``annotations`` lists)."""
    data = load_json(path)
    source = str(path)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a COCO-style JSON object with 'images' and 'annotations', "
                         f"got a {type(data).__name__}")
    for key in ("images", "annotations"):
        if key not in data:
            raise ValueError(f"{source}: missing top-level field {key!r} (not a COCO-style annotation file)")
        ensure_sequence(data[key], source, key)
    return data


def _annotation_record(ann: Any, index: int) -> str:
    if isinstance(ann, Mapping) and "id" in ann:
        return f"annotation id={ann['id']}"
    return f"annotations[{index}]"


def _group_annotations(data: Mapping[str, Any], source: str
                       ) -> tuple[dict[int, list[tuple[int, Any]]], list[MalformedRecordError]]:
    """Annotations by image id (file order kept); annotations without a usable image_id become errors."""
    by_image: dict[int, list[tuple[int, Any]]] = defaultdict(list)
    errors: list[MalformedRecordError] = []
    for index, ann in enumerate(data["annotations"]):
        record = _annotation_record(ann, index)
        try:
            image_id = as_int(require(ann, "image_id", source, record), source, record, "image_id")
        except MalformedRecordError as err:
            errors.append(err)
            continue
        by_image[image_id].append((index, ann))
    return by_image, errors


def _convert_annotation(ann: Any, index: int, skeleton: Skeleton, source: str, read_keypoints: KeypointReader,
                        object_extras: ExtrasReader, crowd_keys: Sequence[str]) -> dict[str, Any]:
    record = _annotation_record(ann, index)
    object_id = as_int(require(ann, "id", source, record), source, record, "id")
    keypoints = read_keypoints(ann, skeleton.num_keypoints, source, record)
    crowd = next((ann[k] for k in crowd_keys if k in ann and ann[k] is not None), 0)
    return make_object(
        source=source,
        record=record,
        object_id=object_id,
        bbox=require(ann, "bbox", source, record),
        keypoints=keypoints,
        category_id=as_int(ann.get("category_id", 1), source, record, "category_id"),
        area=ann.get("area"),
        iscrowd=as_int(crowd, source, record, "iscrowd"),
        extras=object_extras(ann, source, record),
    )


def _image_record(image: Any, index: int, source: str) -> tuple[int, str, int | None, int | None, str]:
    record = f"image id={image['id']}" if isinstance(image, Mapping) and "id" in image else f"images[{index}]"
    image_id = as_int(require(image, "id", source, record), source, record, "id")
    file_name = require(image, "file_name", source, record)
    if not isinstance(file_name, str) or not file_name:
        raise MalformedRecordError(source, record, "file_name", f"expected a non-empty string, got {file_name!r}")
    sizes = []
    for key in ("width", "height"):
        value = image.get(key)
        size = None if value is None else as_int(value, source, record, key)
        if size is not None and size <= 0:
            raise MalformedRecordError(source, record, key, f"must be > 0, got {value!r}")
        sizes.append(size)
    return image_id, file_name, sizes[0], sizes[1], record


def iter_coco_records(
    data: Mapping[str, Any],
    source: str,
    skeleton: Skeleton,
    *,
    read_keypoints: KeypointReader = default_keypoints,
    object_extras: ExtrasReader = _no_extras,
    image_extras: ExtrasReader = _no_extras,
    crowd_keys: Sequence[str] = ("iscrowd",),
) -> Iterator[ImageRecord | MalformedRecordError]:
    """Images in file order with their converted annotations; bad annotations/images are yielded as errors."""
    by_image, errors = _group_annotations(data, source)
    yield from errors
    known: set[int] = set()
    for index, image in enumerate(data["images"]):
        try:
            image_id, file_name, width, height, record = _image_record(image, index, source)
            extras = image_extras(image, source, record)
        except MalformedRecordError as err:
            yield err
            continue
        known.add(image_id)
        objects = []
        for ann_index, ann in by_image.get(image_id, ()):
            try:
                objects.append(_convert_annotation(ann, ann_index, skeleton, source, read_keypoints,
                                                   object_extras, crowd_keys))
            except MalformedRecordError as err:
                yield err
        yield ImageRecord(image_id, file_name, width, height, objects, record, extras)
    for image_id in sorted(set(by_image) - known):
        index, ann = by_image[image_id][0]
        yield MalformedRecordError(source, _annotation_record(ann, index), "image_id",
                                   f"refers to image {image_id}, which is not in 'images'")


def read_coco_style(
    path: str | Path,
    *,
    format_name: str,
    skeleton: Skeleton,
    data: Mapping[str, Any] | None = None,
    read_keypoints: KeypointReader = default_keypoints,
    object_extras: ExtrasReader = _no_extras,
    image_extras: ExtrasReader = _no_extras,
    image_extra_names: Sequence[str] = (),
    object_extra_names: Sequence[str] = (),
    crowd_keys: Sequence[str] = ("iscrowd",),
) -> Corpus:
    """A :class:`Corpus` over a COCO-style file (``data`` may be passed when the caller already loaded it)."""
    source = str(path)
    data = load_coco_dict(path) if data is None else data
    records = iter_coco_records(data, source, skeleton, read_keypoints=read_keypoints,
                                object_extras=object_extras, image_extras=image_extras, crowd_keys=crowd_keys)
    return Corpus(format=format_name, source=source, skeleton=skeleton, num_images=len(data["images"]),
                  records=records, image_extras=tuple(image_extra_names), object_extras=tuple(object_extra_names))
