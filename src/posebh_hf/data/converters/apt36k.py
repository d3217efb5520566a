"""``apt36k``: APT-36K split files (COCO-style + ``video_id``; AP-10K's 17 keypoints) and the by-video split.

:func:`split_apt36k` reproduces PoseBH's ``tools/dataset/prepro_apt36k.py`` (spec §9.4): per category (the
third-from-last component of the Windows-style image path), the per-image list of video ids is cut at
``int((n + 1) * 0.7)`` and ``int((n + 1) * 0.8)``; an image (and an annotation) goes to train when its video id is
in any category's train slice, else to val when in a val slice, else to test. File names become the last three
path components joined with "/" and five mis-encoded folder names are mapped to the names on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...atomic_files import write_json_atomically
from ...skeletons import get_skeleton
from .base import Corpus, MalformedRecordError, as_int, require
from .coco_style import load_coco_dict, read_coco_style
from .options import ConvertOptions

SPLITS = ("train", "val", "test")
# Folder names as written in the released annotation file -> as they appear on disk (from the reference script).
ON_DISK_FOLDER_NAMES = {
    "clip46√": "clip46б╠",
    "video11_clip6_1m44s-1m46s_frame╬╩╠Γ": "video11_clip6_1m44s-1m46s_frameиpиmиdжг",
    "video20_clip5_1m44s-1m46s_frame╬╩╠Γ": "video20_clip5_1m44s-1m46s_frameиpиmиdжг",
    "video2_clip3_0m55s-0m57s_frame╬╩╠Γ": "video2_clip3_0m55s-0m57s_frameиpиmиdжг",
    "v2c21太多": "v2c21╠л╢р",
}


def _video_id(image: Mapping[str, Any], source: str, record: str) -> dict[str, Any]:
    return {"video_id": as_int(require(image, "video_id", source, record), source, record, "video_id")}


def convert(annotations: Path, options: ConvertOptions) -> Corpus:
    return read_coco_style(annotations, format_name="apt36k", skeleton=options.skeleton or get_skeleton("apt36k"),
                           image_extras=_video_id, image_extra_names=("video_id",),
                           crowd_keys=("iscrowd", "is_crowd"))


def _video_slices(images: list[Any], source: str) -> tuple[set[int], set[int]]:
    """Train and val video ids (test = the rest), cut per category in file order."""
    per_category: dict[str, list[int]] = {}
    for index, image in enumerate(images):
        record = f"images[{index}]"
        name = require(image, "file_name", source, record)
        parts = str(name).split("\\")
        if len(parts) < 3:
            raise MalformedRecordError(source, record, "file_name", f"expected a Windows path with at least three "
                                       f"components (category\\video\\frame), got {name!r}")
        per_category.setdefault(parts[-3], []).append(
            as_int(require(image, "video_id", source, record), source, record, "video_id"))
    train: set[int] = set()
    val: set[int] = set()
    for videos in per_category.values():
        cut_val, cut_test = int((len(videos) + 1) * 0.7), int((len(videos) + 1) * 0.8)
        train.update(videos[:cut_val])
        val.update(videos[cut_val:cut_test])
    return train, val


def _split_of(video_id: int, train: set[int], val: set[int]) -> str:
    return "train" if video_id in train else "val" if video_id in val else "test"


def _disk_name(windows_path: str) -> str:
    parts = windows_path.split("\\")[-3:]
    parts[-2] = ON_DISK_FOLDER_NAMES.get(parts[-2], parts[-2])
    return "/".join(parts)


def split_apt36k(annotations: str | Path, out_dir: str | Path) -> dict[str, tuple[int, int]]:
    """Write ``apt36k_{train,val,test}.json`` into ``out_dir``; returns ``{split: (images, annotations)}``."""
    source = str(annotations)
    data = load_coco_dict(annotations)
    train, val = _video_slices(data["images"], source)
    header = {key: data[key] for key in ("info", "license", "licenses") if key in data}
    categories = sorted(data.get("categories") or [], key=lambda c: c.get("id", 0))
    out: dict[str, dict[str, Any]] = {s: {**header, "categories": categories, "images": [], "annotations": []}
                                      for s in SPLITS}
    for image in data["images"]:
        split = _split_of(int(image["video_id"]), train, val)
        out[split]["images"].append({**image, "file_name": _disk_name(str(image["file_name"]))})
    for index, ann in enumerate(data["annotations"]):
        record = f"annotation id={ann.get('id', index)}" if isinstance(ann, Mapping) else f"annotations[{index}]"
        video = as_int(require(ann, "video_id", source, record), source, record, "video_id")
        renamed = {("iscrowd" if k == "is_crowd" else k): v for k, v in ann.items()}
        out[_split_of(video, train, val)]["annotations"].append(renamed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, content in out.items():
        write_json_atomically(out_dir / f"apt36k_{split}.json", content, ensure_ascii=False)
    return {s: (len(out[s]["images"]), len(out[s]["annotations"])) for s in SPLITS}
