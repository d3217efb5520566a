"""``aic``: AI Challenger keypoints (14), from the native JSON or from an mmpose-style COCO conversion.

Native layout (``keypoint_{train,validation}_annotations_*.json``): a list of
``{"image_id": "<hash>", "keypoint_annotations": {"human1": [x, y, v] * 14}, "human_annotations": {"human1":
[x1, y1, x2, y2]}}`` with v = 1 visible, 2 occluded, 3 not labelled; images are ``<hash>.jpg``. Converted here to
COCO semantics (1 -> 2, 2 -> 1, 3 -> 0 with x = y = 0) and boxes to ``(x, y, w, h)``. Image ids are 1-based file
order, instance ids run over the file. A COCO-style file (a JSON object) is read as is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...skeletons import Skeleton, get_skeleton
from .base import Corpus, ImageRecord, MalformedRecordError, load_json, make_object, parse_floats, require
from .coco_style import load_coco_dict, read_coco_style
from .options import ConvertOptions

# native AIC visibility -> COCO visibility
_AIC_TO_COCO = {1.0: 2.0, 2.0: 1.0, 3.0: 0.0}


def native_keypoints(values: Any, num_keypoints: int, source: str, record: str) -> np.ndarray:
    """Native ``[x, y, v] * K`` with v in {1, 2, 3} -> COCO-semantics float32 ``[K, 3]``."""
    field_name = "keypoint_annotations"
    raw = parse_floats(values, source, record, field_name).reshape(-1)
    if raw.size != num_keypoints * 3:
        raise MalformedRecordError(source, record, field_name, f"expected {num_keypoints * 3} values "
                                   f"({num_keypoints} keypoints x 3), got {raw.size}")
    kpts = raw.reshape(num_keypoints, 3).copy()
    for k, v in enumerate(kpts[:, 2]):
        if v not in _AIC_TO_COCO:
            raise MalformedRecordError(source, record, field_name, f"visibility of keypoint {k} is {v:g}, not an AIC "
                                       "value (1 visible, 2 occluded, 3 not labelled)")
        kpts[k, 2] = _AIC_TO_COCO[v]
    kpts[kpts[:, 2] == 0, :2] = 0.0
    return kpts.astype(np.float32)


def _xyxy_to_xywh(values: Any, source: str, record: str) -> list[float]:
    box = np.asarray(values, dtype=np.float64).reshape(-1) if isinstance(values, list) else None
    if box is None or box.size != 4:
        raise MalformedRecordError(source, record, "human_annotations", f"expected [x1, y1, x2, y2], got {values!r:.60}")
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _native_records(items: Sequence[Any], source: str, skeleton: Skeleton
                    ) -> Iterator[ImageRecord | MalformedRecordError]:
    object_id = 0
    for index, item in enumerate(items):
        record = f"record {index}"
        try:
            name = require(item, "image_id", source, record)
            record = f"record {index} (image_id={name})"
            people = require(item, "keypoint_annotations", source, record)
            boxes = require(item, "human_annotations", source, record)
            if not isinstance(people, Mapping) or not isinstance(boxes, Mapping):
                raise MalformedRecordError(source, record, "keypoint_annotations", "expected objects keyed by human")
        except MalformedRecordError as err:
            yield err
            continue
        objects = []
        for human, values in people.items():
            object_id += 1
            human_record = f"{record} {human}"
            try:
                if human not in boxes:
                    raise MalformedRecordError(source, human_record, "human_annotations", "missing for this human")
                kpts = native_keypoints(values, skeleton.num_keypoints, source, human_record)
                bbox = _xyxy_to_xywh(boxes[human], source, human_record)
                objects.append(make_object(source=source, record=human_record, object_id=object_id, bbox=bbox,
                                           keypoints=kpts))
            except MalformedRecordError as err:
                yield err
        yield ImageRecord(index + 1, f"{name}.jpg", None, None, objects, record)


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    skeleton = options.skeleton or get_skeleton("aic")
    data = load_json(annotations)
    if isinstance(data, dict):
        return read_coco_style(annotations, format_name="aic", skeleton=skeleton, data=load_coco_dict(annotations))
    if not isinstance(data, list):
        raise ValueError(f"{annotations}: expected the native AIC list of records or a COCO-style object")
    return Corpus(format="aic", source=str(annotations), skeleton=skeleton, num_images=len(data),
                  records=_native_records(data, str(annotations), skeleton))
