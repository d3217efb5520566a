"""``posebh data build``: native annotations -> a saved ``datasets.Dataset`` (one row per image), atomically.

Rows are written with ``datasets``' ArrowWriter into a staging folder beside ``out``; only a complete dataset is
moved into place (``os.replace``), so an error leaves nothing half-written in ``out``, and the staging folder of a
killed build is removed by the next build to the same ``out`` (`atomic_files.write_folder_atomically`).

Every file name of the annotation file must resolve (symlinks followed) inside the image folder: ``../x``,
absolute paths and links that leave it are malformed records, like missing or undecodable images and duplicate
image or annotation ids, so ``--skip-bad`` skips and counts them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets.arrow_writer import ArrowWriter
from PIL import Image as PILImage
from tqdm.auto import tqdm

from ..atomic_files import write_folder_atomically
from ..skeletons import Skeleton
from .converters import ConvertOptions, Corpus, ImageRecord, MalformedRecordError, read_corpus
from .features import dataset_description, metadata_from_description, pose_features, skeleton_from_info

__all__ = ["SIDECAR", "BuildSummary", "build_dataset", "load_pose_dataset"]

SIDECAR = "posebh.json"  # metadata copy next to the data (survives parquet exports and Hub uploads)


@dataclass
class BuildSummary:
    """What a build produced (and skipped)."""

    out: Path
    format: str
    skeleton: str
    num_keypoints: int
    images: int = 0
    instances: int = 0
    instances_with_keypoints: int = 0
    skipped: int = 0
    skipped_by_field: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"{self.format} -> {self.out}: {self.images} images, {self.instances} instances, "
                f"{self.instances_with_keypoints} with keypoints (skeleton {self.skeleton}, K={self.num_keypoints})")
        if self.skipped:
            fields = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped_by_field.items()))
            text += f"; skipped {self.skipped} malformed record(s) ({fields})"
        return text


def _image_path(root: Path, record: ImageRecord, source: str) -> Path:
    """The image file of `record`, resolved; it must lie inside `root` (itself resolved)."""
    name = record.file_name
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # symlink loops, NUL bytes
        raise MalformedRecordError(source, record.record, "file_name", f"cannot resolve {name!r}: {err}") from None
    if not path.is_relative_to(root):
        raise MalformedRecordError(source, record.record, "file_name",
                                   f"{name!r} resolves to {path}, outside the image folder {root}; file names must "
                                   "stay inside --images (no '..', absolute paths or links leading out)")
    if not path.is_file():
        raise MalformedRecordError(source, record.record, "file_name", f"image {path} not found on disk")
    return path


def _decoded_size(path: Path, record: ImageRecord, source: str) -> tuple[int, int]:
    """(width, height) of an image that decodes (JPEGs at 1/8 scale: every byte is read, fewer pixels made)."""
    try:
        with PILImage.open(path) as img:
            size = img.size
            img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise MalformedRecordError(source, record.record, "file_name",
                                   f"cannot decode image {path}: {reason}") from None
    return size


def _row(record: ImageRecord, images_dir: Path, corpus: Corpus, link_images: bool) -> dict[str, Any]:
    path = _image_path(images_dir, record, corpus.source)
    width, height = _decoded_size(path, record, corpus.source)
    width = width if record.width is None else record.width
    height = height if record.height is None else record.height
    image = ({"path": str(path), "bytes": None} if link_images
             else {"path": record.file_name, "bytes": path.read_bytes()})
    return {"image": image, "image_id": record.image_id, "width": width, "height": height,
            "file_name": record.file_name, "skeleton": corpus.skeleton.name, **record.extras,
            "objects": record.objects}


def _skip(summary: BuildSummary, err: MalformedRecordError) -> None:
    summary.skipped += 1
    summary.skipped_by_field[err.field] = summary.skipped_by_field.get(err.field, 0) + 1
    if len(summary.first_errors) < 5:
        summary.first_errors.append(str(err))


@dataclass
class _Seen:
    """Ids met so far: images (with the counts of the row written for each) and annotations (-> image id)."""

    images: dict[int, tuple[int, int] | None] = field(default_factory=dict)
    objects: dict[int, int] = field(default_factory=dict)
    duplicate_images: set[int] = field(default_factory=set)


def _unique_objects(record: ImageRecord, seen: _Seen, source: str) -> tuple[ImageRecord, list[MalformedRecordError]]:
    """`record` without annotations whose id was already used (in this image or another), and one error for each."""
    kept, errors, here = [], [], set()
    for obj in record.objects:
        oid = int(obj["id"])
        if oid in seen.objects or oid in here:
            first = seen.objects.get(oid, record.image_id)
            errors.append(MalformedRecordError(source, f"{record.record} annotation id={oid}", "id",
                                               f"annotation id {oid} is used more than once (also in image id="
                                               f"{first})"))
            continue
        here.add(oid)
        kept.append(obj)
    return (dataclasses.replace(record, objects=kept) if errors else record), errors


def _rows(corpus: Corpus, images_dir: Path, link_images: bool, skip_bad: bool, summary: BuildSummary,
          progress: bool, seen: _Seen) -> Iterator[dict[str, Any]]:
    bar = tqdm(total=corpus.num_images, desc=f"build {corpus.format}", unit="img", disable=not progress)
    try:
        for item in corpus.records:
            try:
                if isinstance(item, MalformedRecordError):
                    raise item
                if item.image_id in seen.images:
                    seen.duplicate_images.add(item.image_id)
                    raise MalformedRecordError(corpus.source, item.record, "id",
                                               f"image id {item.image_id} appears more than once; its annotations "
                                               "cannot be attributed to one file")
                seen.images[item.image_id] = None
                item, errors = _unique_objects(item, seen, corpus.source)
                for err in errors:
                    if not skip_bad:
                        raise err
                    _skip(summary, err)
                row = _row(item, images_dir, corpus, link_images)
            except MalformedRecordError as err:
                if not skip_bad:
                    raise
                _skip(summary, err)
                continue
            seen.objects.update((int(o["id"]), item.image_id) for o in item.objects)
            seen.images[item.image_id] = (len(row["objects"]), sum(1 for o in row["objects"] if o["num_keypoints"] > 0))
            bar.update(1)
            yield row
    finally:
        bar.close()


def _drop_images(folder: Path, image_ids: set[int]) -> None:
    """Remove the rows of `image_ids` from the arrow shards in `folder` (rare: duplicate ids with --skip-bad)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for shard in sorted(folder.glob("data-*.arrow")):
        with pa.OSFile(str(shard), "rb") as source:
            table = pa.ipc.open_stream(source).read_all()
        drop = pa.array(sorted(image_ids), type=table.schema.field("image_id").type)
        table = table.filter(pc.invert(pc.is_in(table["image_id"], value_set=drop)))
        tmp = shard.with_name(f".{shard.name}.tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, shard)


def _count(summary: BuildSummary, row: dict[str, Any]) -> None:
    summary.images += 1
    summary.instances += len(row["objects"])
    summary.instances_with_keypoints += sum(1 for o in row["objects"] if o["num_keypoints"] > 0)


def _approx_bytes(row: dict[str, Any]) -> int:
    """Rough arrow size of a row: the embedded image plus the instances (for cutting shards)."""
    image = row["image"].get("bytes") or b""
    return len(image) + sum(16 + 4 * np.size(o["keypoints"]) + 64 for o in row["objects"]) + 256


def _write(rows: Iterator[dict[str, Any]], folder: Path, summary: BuildSummary, info: datasets.DatasetInfo,
           split: str | None, max_shard_bytes: int) -> None:
    """Write rows as ``datasets.save_to_disk``'s layout (arrow shards + ``state.json`` + ``dataset_info.json``).

    Written here rather than with ``save_to_disk``, which always embeds image files: ``--link-images`` must keep
    paths, and writing once avoids a second full copy of a large corpus.
    """
    folder.mkdir(exist_ok=True)
    features = info.features
    shards: list[Path] = []
    writer: ArrowWriter | None = None
    shard_bytes = 0
    try:
        for row in rows:
            if writer is None:
                shards.append(folder / f"shard-{len(shards):05d}.arrow")
                writer = ArrowWriter(features=features, path=str(shards[-1]), embed_local_files=False)
                shard_bytes = 0
            encoded = features.encode_example({**row, "image": None})
            # set directly: datasets' Image encoder drops the bytes whenever "path" names a file relative to the
            # working directory (building with `--images .`), which would leave a dataset without its images
            encoded["image"] = {"bytes": row["image"]["bytes"], "path": row["image"]["path"]}
            writer.write(encoded)
            _count(summary, row)
            shard_bytes += _approx_bytes(row)
            if shard_bytes >= max_shard_bytes:
                writer.finalize()
                writer.close()
                writer = None
        if writer is None and not shards:  # an empty corpus still gets one (empty) shard
            shards.append(folder / "shard-00000.arrow")
            writer = ArrowWriter(features=features, path=str(shards[-1]), embed_local_files=False)
        if writer is not None:
            writer.finalize()
    finally:
        if writer is not None:
            writer.close()
    names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
    for shard, name in zip(shards, names, strict=True):
        os.replace(shard, folder / name)
    state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": uuid.uuid4().hex[:16],
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
             "_split": split}
    (folder / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    info.write_to_directory(str(folder))


def build_dataset(
    format_name: str,
    annotations: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    options: ConvertOptions | None = None,
    link_images: bool = False,
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    max_shard_bytes: int = 500 * 1024 * 1024,
) -> BuildSummary:
    """Convert ``annotations`` (format ``format_name``) with images under ``images`` into a dataset at ``out``.

    Images are embedded (their file bytes) unless ``link_images``. Malformed records raise
    :class:`~posebh_hf.data.converters.MalformedRecordError` (naming file, record and field) unless ``skip_bad``,
    which skips and counts them; so are file names that resolve outside ``images``, undecodable images and duplicate
    image or annotation ids. ``out`` must not exist, or be empty (or ``overwrite``). The output is
    ``datasets.load_from_disk`` compatible, in arrow shards of about ``max_shard_bytes``.
    """
    out, images_dir = Path(out), Path(images).expanduser()
    if not images_dir.is_dir():
        what = "is not a folder" if images_dir.exists() else "does not exist"
        raise FileNotFoundError(f"image folder {images_dir} {what}")
    images_dir = images_dir.resolve()
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"output {out} already exists (pass --overwrite to replace it)")
    corpus = read_corpus(format_name, annotations, options)
    skeleton = corpus.skeleton
    summary = BuildSummary(out=out, format=format_name, skeleton=skeleton.name, num_keypoints=skeleton.num_keypoints)
    features = pose_features(skeleton.num_keypoints, corpus.image_extras, corpus.object_extras)
    description = dataset_description(skeleton, format_name, split, source_file=Path(annotations).name)
    info = datasets.DatasetInfo(description=description, features=features, dataset_name=format_name,
                                config_name=skeleton.name)

    def write(staging: Path) -> None:
        seen = _Seen()
        rows = _rows(corpus, images_dir, link_images, skip_bad, summary, progress, seen)
        _write(rows, staging, summary, info, split, max_shard_bytes)
        written = [i for i in seen.duplicate_images if seen.images.get(i) is not None]
        if written:  # the first record of a duplicated id was written before its twin showed up
            _drop_images(staging, set(written))
            for image_id in written:
                instances, with_keypoints = seen.images[image_id]  # type: ignore[misc]
                summary.images -= 1
                summary.instances -= instances
                summary.instances_with_keypoints -= with_keypoints
                _skip(summary, MalformedRecordError(corpus.source, f"image id={image_id}", "id",
                                                    f"image id {image_id} appears more than once"))
        meta = metadata_from_description(description)
        meta["summary"] = {"images": summary.images, "instances": summary.instances,
                           "instances_with_keypoints": summary.instances_with_keypoints, "skipped": summary.skipped}
        (staging / SIDECAR).write_text(json.dumps(meta, indent=1), encoding="utf-8")

    write_folder_atomically(out, write, overwrite=overwrite)
    return summary


def load_pose_dataset(path: str | Path, *, split: str | None = None, revision: str | None = None,
                      token: str | bool | None = None) -> tuple[datasets.Dataset, Skeleton]:
    """A pose dataset and its skeleton: a folder saved by :func:`build_dataset`, or a Hub dataset id
    (``namespace/name``) pushed with ``posebh data build --push-to-hub`` (:mod:`.hub_io`; ``split``, ``revision``
    and ``token`` apply to Hub ids only). Problems are ValueErrors/FileNotFoundErrors with a one-line message."""
    text = str(path)
    path = Path(path)
    if not path.exists():
        from .hub_io import load_hub_dataset, looks_like_hub_id  # noqa: PLC0415 - huggingface_hub on demand

        if looks_like_hub_id(text):
            return load_hub_dataset(text, split=split, revision=revision, token=token)
        raise FileNotFoundError(f"{path} does not exist (and is not a Hub dataset id 'namespace/name')")
    if not (path / "dataset_info.json").is_file():
        raise FileNotFoundError(f"{path} is not a dataset saved by `posebh data build` (no dataset_info.json)")
    dataset = datasets.load_from_disk(str(path))
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(f"{path} holds a DatasetDict; pass one split's folder")
    try:
        return dataset, skeleton_from_info(dataset.info)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
