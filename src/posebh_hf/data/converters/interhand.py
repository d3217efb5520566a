"""``interhand``: InterHand2.6M (``*_data.json`` + ``*_camera.json`` + ``*_joint_3d.json``), 21 keypoints per hand.

2D joints are the world joints projected with the image's camera: ``cam = R (X - campos)``, ``u = f * cam_xy /
cam_z + princpt``. Joints 0-20 are the right hand and 21-41 the left (index 20 / 41 is the wrist). Each hand becomes
its own instance: joint validity is multiplied by the validity of the hand's root, a hand is kept when more than 11
joints are valid (spec §9.7), its box is the tight box of its valid joints (the transform adds the padding), its
``hand_type`` is "right"/"left" and its id is ``2 * annotation id + (0 right | 1 left)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...skeletons import Skeleton, get_skeleton
from .base import (
    Corpus,
    ImageRecord,
    MalformedRecordError,
    as_int,
    load_json,
    make_object,
    parse_floats,
    require,
)
from .coco_style import iter_coco_records, load_coco_dict
from .options import ConvertOptions

HANDS = ("right", "left")
JOINTS_PER_HAND = 21
ROOT = 20  # wrist, the last joint of each hand
MIN_VALID_JOINTS = 11  # a hand needs more than this many valid joints


def world_to_pixel(world: np.ndarray, rotation: np.ndarray, position: np.ndarray, focal: np.ndarray,
                   principal: np.ndarray) -> np.ndarray:
    """World joints ``[J, 3]`` (mm) -> pixels ``[J, 2]`` with camera rotation ``[3, 3]``, position ``[3]``, focal and
    principal point ``[2]``."""
    cam = (world - position[None, :]) @ rotation.T
    return cam[:, :2] / cam[:, 2:3] * focal[None, :] + principal[None, :]


def _default_sibling(annotations: Path, suffix: str) -> Path:
    name = annotations.name
    if "_data.json" not in name:
        raise ValueError(f"cannot guess the InterHand2.6M {suffix} file from {annotations}; pass it explicitly")
    return annotations.with_name(name.replace("_data.json", f"_{suffix}.json"))


class _Projector:
    """Looks up a frame's camera and world joints; missing entries become MalformedRecordErrors."""

    def __init__(self, cameras: Any, joints: Any, camera_source: str, joints_source: str) -> None:
        self.cameras, self.joints = cameras, joints
        self.camera_source, self.joints_source = camera_source, joints_source

    def _camera_value(self, capture: str, camera: str, key: str) -> np.ndarray:
        record = f"capture {capture} camera {camera}"
        table = require(require(self.cameras, capture, self.camera_source, f"capture {capture}"), key,
                        self.camera_source, f"capture {capture}")
        return parse_floats(require(table, camera, self.camera_source, record), self.camera_source, record, key)

    def pixels(self, image: Mapping[str, Any], source: str, record: str) -> np.ndarray:
        capture, camera = str(require(image, "capture", source, record)), str(require(image, "camera", source, record))
        frame = str(require(image, "frame_idx", source, record))
        rotation = self._camera_value(capture, camera, "camrot").reshape(3, 3)
        position = self._camera_value(capture, camera, "campos").reshape(3)
        focal = self._camera_value(capture, camera, "focal").reshape(2)
        principal = self._camera_value(capture, camera, "princpt").reshape(2)
        frame_record = f"capture {capture} frame {frame}"
        entry = require(require(self.joints, capture, self.joints_source, f"capture {capture}"), frame,
                        self.joints_source, frame_record)
        world = parse_floats(require(entry, "world_coord", self.joints_source, frame_record), self.joints_source,
                             frame_record, "world_coord")
        if world.size != 2 * JOINTS_PER_HAND * 3:
            raise MalformedRecordError(self.joints_source, frame_record, "world_coord",
                                       f"expected {2 * JOINTS_PER_HAND} joints x 3, got {world.size} values")
        return world_to_pixel(world.reshape(-1, 3), rotation, position, focal, principal)


def _hand_objects(ann: Mapping[str, Any], pixels: np.ndarray, skeleton: Skeleton, source: str, record: str
                  ) -> list[dict[str, Any]]:
    valid = parse_floats(require(ann, "joint_valid", source, record), source, record, "joint_valid").reshape(-1)
    if valid.size != 2 * JOINTS_PER_HAND:
        raise MalformedRecordError(source, record, "joint_valid", f"expected {2 * JOINTS_PER_HAND} values, "
                                   f"got {valid.size}")
    if skeleton.num_keypoints != JOINTS_PER_HAND:
        raise MalformedRecordError(source, record, "joint_valid", f"InterHand2.6M hands have {JOINTS_PER_HAND} "
                                   f"joints but the skeleton has {skeleton.num_keypoints}")
    ann_id = as_int(require(ann, "id", source, record), source, record, "id")
    objects = []
    for hand, hand_type in enumerate(HANDS):
        part = slice(hand * JOINTS_PER_HAND, (hand + 1) * JOINTS_PER_HAND)
        hand_valid = (valid[part] > 0) & (valid[part][ROOT] > 0)
        if hand_valid.sum() <= MIN_VALID_JOINTS:
            continue
        kpts = np.zeros((JOINTS_PER_HAND, 3), dtype=np.float32)
        kpts[hand_valid, :2] = pixels[part][hand_valid]
        kpts[hand_valid, 2] = 2.0
        lo, hi = kpts[hand_valid, :2].min(axis=0), kpts[hand_valid, :2].max(axis=0)
        objects.append(make_object(source=source, record=f"{record} {hand_type} hand", object_id=2 * ann_id + hand,
                                   bbox=[lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], keypoints=kpts,
                                   extras={"hand_type": hand_type}))
    return objects


def _records(data: Mapping[str, Any], source: str, skeleton: Skeleton, projector: _Projector
             ) -> Iterator[ImageRecord | MalformedRecordError]:
    images = {img.get("id"): img for img in data["images"] if isinstance(img, Mapping)}
    anns: dict[Any, list[Mapping[str, Any]]] = {}
    for ann in data["annotations"]:
        if isinstance(ann, Mapping):
            anns.setdefault(ann.get("image_id"), []).append(ann)

    def no_keypoints(ann: Mapping[str, Any], num_keypoints: int, src: str, rec: str) -> np.ndarray:
        return np.zeros((num_keypoints, 3), dtype=np.float32)  # placeholder: hands are rebuilt below

    # Reuse the COCO reader for image-level parsing (ids, file names, sizes), then replace its instances.
    base = iter_coco_records({"images": data["images"], "annotations": []}, source, skeleton,
                             read_keypoints=no_keypoints, image_extras=_image_extras)
    for item in base:
        if isinstance(item, MalformedRecordError):
            yield item
            continue
        image = images[item.image_id]
        try:
            pixels = projector.pixels(image, source, item.record)
            for ann in anns.get(item.image_id, []):
                item.objects.extend(_hand_objects(ann, pixels, skeleton, source, f"annotation id={ann.get('id')}"))
        except MalformedRecordError as err:
            yield err
            continue
        yield item


def _image_extras(image: Mapping[str, Any], source: str, record: str) -> dict[str, Any]:
    return {"capture": as_int(require(image, "capture", source, record), source, record, "capture"),
            "camera": str(require(image, "camera", source, record)),
            "frame_idx": as_int(require(image, "frame_idx", source, record), source, record, "frame_idx")}


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    annotations = Path(annotations)
    skeleton = options.skeleton or get_skeleton("interhand")
    data = load_coco_dict(annotations)
    camera_path = Path(options.camera) if options.camera else _default_sibling(annotations, "camera")
    joints_path = Path(options.joints_3d) if options.joints_3d else _default_sibling(annotations, "joint_3d")
    projector = _Projector(load_json(camera_path, "camera file"), load_json(joints_path, "3D joint file"),
                           str(camera_path), str(joints_path))
    return Corpus(format="interhand", source=str(annotations), skeleton=skeleton, num_images=len(data["images"]),
                  records=_records(data, str(annotations), skeleton, projector),
                  image_extras=("capture", "camera", "frame_idx"), object_extras=("hand_type",))
