"""``mpii``: MPII in mmpose's JSON layout (``mpii_{train,val}.json``), 16 keypoints, optional head boxes for PCKh.

Each record is ``{image, center [x, y], scale s, joints [16][2], joints_vis [16]}`` in MATLAB's 1-based pixel frame.
Converted to 0-based pixels (joints - 1; unlabelled joints become 0, 0, 0). MPII has no person box; the stored
``bbox`` is the square ROI the reference training uses (centre shifted down by 15 s, side s * 1.25 * 200, see
``geometry.mpii_center_scale``), so the training transform must use padding 1.0 and no aspect correction for MPII
(the ``mpii`` augmentation preset does). The source ``center`` (minus 1) and ``scale`` are kept as extras, the
record's index in the file is the instance ``id`` (the order PCKh's ``.mat`` files use), and the head box of that
index comes from ``head_boxes`` when given.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...geometry import PIXEL_STD, mpii_center_scale
from ...skeletons import Skeleton, get_skeleton
from .base import Corpus, ImageRecord, MalformedRecordError, load_json, make_object, parse_floats, require
from .options import ConvertOptions


def load_head_boxes(path: Path, count: int) -> np.ndarray:
    """Head boxes ``[N, 4]`` as ``(x1, y1, x2, y2)`` from the JSON (``entries[i].headbox``) or ``.mat`` layout."""
    if path.suffix.lower() == ".mat":
        try:
            from scipy.io import loadmat  # optional dependency (eval extra); .mat files are not pickles
        except ImportError:
            raise ValueError(f"reading {path} needs scipy (pip install scipy)") from None
        mat = loadmat(str(path))
        if "headboxes_src" not in mat:
            raise ValueError(f"{path}: no 'headboxes_src' array")
        boxes = np.asarray(mat["headboxes_src"], dtype=np.float64).transpose(2, 0, 1).reshape(-1, 4)
    else:
        data = load_json(path, "head box file")
        entries = data.get("entries") if isinstance(data, Mapping) else data
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a list of entries with 'headbox' [[x1, y1], [x2, y2]]")
        boxes = np.array([parse_floats(require(e, "headbox", str(path), f"entries[{i}]"), str(path),
                                       f"entries[{i}]", "headbox").reshape(4) for i, e in enumerate(entries)])
    if len(boxes) != count:
        raise ValueError(f"{path}: {len(boxes)} head boxes for {count} MPII records; they must correspond 1:1")
    return boxes.astype(np.float32)


def _object(item: Any, index: int, skeleton: Skeleton, source: str, head_box: np.ndarray | None) -> dict[str, Any]:
    record = f"record {index}"
    k = skeleton.num_keypoints
    joints = parse_floats(require(item, "joints", source, record), source, record, "joints")
    vis = parse_floats(require(item, "joints_vis", source, record), source, record, "joints_vis").reshape(-1)
    if joints.size != 2 * k or vis.size != k:
        raise MalformedRecordError(source, record, "joints", f"expected {k} joints and {k} joints_vis, "
                                   f"got {joints.size // 2} and {vis.size}")
    center_src = parse_floats(require(item, "center", source, record), source, record, "center").reshape(-1)
    scale_src = parse_floats(require(item, "scale", source, record), source, record, "scale").reshape(-1)
    if center_src.size != 2 or scale_src.size != 1 or scale_src[0] <= 0:
        raise MalformedRecordError(source, record, "center/scale", "expected center [x, y] and a scale > 0")
    kpts = np.zeros((k, 3), dtype=np.float32)
    labelled = vis > 0
    kpts[labelled, :2] = joints.reshape(k, 2)[labelled] - 1.0
    kpts[labelled, 2] = 2.0
    center, scale = mpii_center_scale(center_src, float(scale_src[0]))
    side = scale * PIXEL_STD
    extras: dict[str, Any] = {"center": (center_src - 1.0).tolist(), "scale": float(scale_src[0])}
    if head_box is not None:
        extras["head_box"] = head_box.tolist()
    return make_object(source=source, record=record, object_id=index, bbox=[*(center - side / 2), *side],
                       keypoints=kpts, extras=extras)


def _image_ids(names: Sequence[str]) -> dict[str, int]:
    """Numeric file stems (MPII's are) as ids when they are unique, else 1-based order of first appearance."""
    stems = {n: Path(n).stem for n in names}
    if all(s.isdigit() for s in stems.values()) and len({int(s) for s in stems.values()}) == len(stems):
        return {n: int(s) for n, s in stems.items()}
    return {n: i + 1 for i, n in enumerate(names)}


def _records(items: Sequence[Any], source: str, skeleton: Skeleton, head_boxes: np.ndarray | None
             ) -> Iterator[ImageRecord | MalformedRecordError]:
    by_image: dict[str, list[dict[str, Any]]] = {}
    for index, item in enumerate(items):
        try:
            name = require(item, "image", source, f"record {index}")
            if not isinstance(name, str) or not name:
                raise MalformedRecordError(source, f"record {index}", "image", f"expected a file name, got {name!r}")
            obj = _object(item, index, skeleton, source, None if head_boxes is None else head_boxes[index])
        except MalformedRecordError as err:
            yield err
            continue
        by_image.setdefault(name, []).append(obj)
    ids = _image_ids(list(by_image))
    for name, objects in by_image.items():
        yield ImageRecord(ids[name], name, None, None, objects, f"image {name}")


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    skeleton = options.skeleton or get_skeleton("mpii")
    data = load_json(annotations)
    if not isinstance(data, list):
        raise ValueError(f"{annotations}: expected the mmpose MPII layout, a JSON list of records "
                         "{image, center, scale, joints, joints_vis}")
    head_boxes = None if options.head_boxes is None else load_head_boxes(Path(options.head_boxes), len(data))
    extras = ("head_box", "center", "scale") if head_boxes is not None else ("center", "scale")
    num_images = len({item.get("image") for item in data if isinstance(item, Mapping)})
    return Corpus(format="mpii", source=str(annotations), skeleton=skeleton, num_images=num_images,
                  records=_records(data, str(annotations), skeleton, head_boxes), object_extras=extras)
