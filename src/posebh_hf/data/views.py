"""Training views of a per-image pose dataset: map-style (``set_transform``) and streaming (``IterableDataset``).

Map-style: :func:`instance_dataset` returns a small ``datasets.Dataset`` with one row per selected instance
(``row``, ``object``) whose ``set_transform`` fetches the image row and runs :class:`PoseTrainTransform`; indexing
or a DataLoader gives training samples. Streaming: :func:`stream_instances` flattens and transforms an
``IterableDataset`` with ``.map(batched=True)``; each process keeps its share via ``split_dataset_by_node`` and
DataLoader workers split the shards (datasets' own rule), so no instance is read twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np
from datasets.distributed import split_dataset_by_node

from .image_io import decode_image
from .instances import select_instances
from .transform import OUTPUT_KEYS, PoseTrainTransform

__all__ = ["InstanceBatchTransform", "StreamFlatten", "instance_dataset", "stream_instances"]

_ROW_COLUMNS = ["image", "image_id", "width", "height", "objects"]


def _undecoded(dataset: datasets.Dataset | datasets.IterableDataset) -> Any:
    """The dataset with raw image bytes/paths (decoded later with OpenCV, faster than PIL)."""
    image = dataset.features["image"] if dataset.features else None
    if isinstance(image, datasets.Image) and image.decode:
        return dataset.cast_column("image", datasets.Image(decode=False))
    return dataset


def _stack(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {key: [s[key] for s in samples] for key in OUTPUT_KEYS}


class InstanceBatchTransform:
    """``set_transform`` callable: a batch of ``{row, object}`` -> a batch of training samples (dict of lists)."""

    def __init__(self, source: datasets.Dataset, transform: PoseTrainTransform) -> None:
        self.source = _undecoded(source).select_columns(_ROW_COLUMNS)
        self.transform = transform

    def __call__(self, batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        rows = [int(r) for r in batch["row"]]
        unique = sorted(set(rows))
        fetched = self.source[unique]
        position = {r: i for i, r in enumerate(unique)}
        images: dict[int, np.ndarray] = {}
        samples = []
        for row, obj in zip(rows, batch["object"], strict=True):
            i = position[row]
            if i not in images:  # one decode per image, however many of its instances are in the batch
                images[i] = decode_image(fetched["image"][i])
            record = {key: fetched[key][i] for key in _ROW_COLUMNS}
            samples.append(self.transform.encode_row(record, int(obj), images[i]))
        return _stack(samples)


def instance_dataset(source: datasets.Dataset, transform: PoseTrainTransform) -> datasets.Dataset:
    """One row per training instance of ``source`` (row-major order), transformed on access.

    ``len()`` is the number of selected instances; ``ds[i]`` / a DataLoader give dicts with
    ``transform``'s :data:`~posebh_hf.data.transform.OUTPUT_KEYS`.
    """
    index = select_instances(source, transform.spec)
    view = datasets.Dataset.from_dict({"row": index.rows, "object": index.objects})
    view.set_transform(InstanceBatchTransform(source, transform))
    return view


class StreamFlatten:
    """Batched ``IterableDataset.map`` function: image rows -> one transformed sample per usable instance."""

    def __init__(self, transform: PoseTrainTransform) -> None:
        self.transform = transform

    def __call__(self, batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        samples = []
        for i in range(len(batch["image_id"])):
            row = {key: batch[key][i] for key in _ROW_COLUMNS}
            usable = [j for j, obj in enumerate(row["objects"])
                      if self.transform.usable(obj, int(row["width"]), int(row["height"]))]
            if not usable:
                continue
            image = decode_image(row["image"])
            samples.extend(self.transform.encode_row(row, j, image) for j in usable)
        return _stack(samples)


def stream_instances(
    source: datasets.IterableDataset,
    transform: PoseTrainTransform,
    *,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 8,
) -> datasets.IterableDataset:
    """Training samples from a streaming pose dataset, this process's share only.

    With ``world_size > 1`` each rank keeps whole shards when ``num_shards % world_size == 0`` and every
    ``world_size``-th image otherwise (``datasets.distributed.split_dataset_by_node``); DataLoader workers then
    split the rank's shards. Either way each instance is produced by exactly one (rank, worker).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if world_size > 1:
        source = split_dataset_by_node(source, rank=rank, world_size=world_size)
    source = _undecoded(source)
    columns = list(source.features) if source.features else None
    return source.map(StreamFlatten(transform), batched=True, batch_size=batch_size, remove_columns=columns)
