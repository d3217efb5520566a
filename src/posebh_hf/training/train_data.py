"""Training data from the config: sources -> saved HF datasets -> instance views -> mixed, sharded batches.

A dataset's `train` / `val` entry is a COCO-style JSON (converted once with the data package's converter into
``<cache_dir>/<name>-<split>-<hash>``, image paths linked, not copied), a folder written by `posebh data build`,
or a Hub dataset id. Batches come from the data package's `MixingBatchSampler` (one per rank, never through
`accelerator.prepare`), wrapped so that an epoch can start at any step: resuming skips the batches already
trained without loading them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader, Sampler

from ..data.build import build_dataset, load_pose_dataset
from ..data.collate import PoseCollator
from ..data.converters import ConvertOptions
from ..data.instance_specs import instance_spec_for
from ..data.keypoint_mapping import BY_NAME, KeypointMappedTransform, keypoint_index_map
from ..data.mixing import MixedDataset, MixingBatchSampler, worker_init
from ..data.synth import SYNTH_SCHEME, ensure_synth_source
from ..data.transform import PoseTrainTransform
from ..data.views import instance_dataset
from ..skeletons import Skeleton, get_skeleton
from .config import ConfigError, DataConfig, DatasetConfig

__all__ = ["EpochBatches", "SourceData", "TrainData", "build_train_data", "load_source"]


@dataclass
class SourceData:
    """One split of one configured dataset: the per-image HF dataset and its skeleton (named as configured)."""

    name: str
    dataset: datasets.Dataset
    skeleton: Skeleton


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _resolve_skeleton(spec: DatasetConfig) -> Skeleton | None:
    if spec.skeleton is None:
        return None
    try:
        return get_skeleton(spec.skeleton)
    except ValueError as err:
        raise ConfigError(f"data.datasets[{spec.name!r}].skeleton: {err}") from None


def load_source(spec: DatasetConfig, split: str, cache_dir: Path, *, build: bool = True) -> SourceData:
    """The per-image dataset of `spec.train` (split "train") or `spec.val` (split "val").

    JSON files are converted into `cache_dir` (reused while the file's path, size and mtime are unchanged);
    `build=False` only looks the cache up (other processes wait for the main process to build it).
    """
    source = spec.train if split == "train" else spec.val
    if source is None:
        raise ConfigError(f"data.datasets[{spec.name!r}] has no {split!r} source")
    images = spec.images if split == "train" else (spec.val_images or spec.images)
    skeleton = _resolve_skeleton(spec)
    if str(source).startswith(SYNTH_SCHEME):  # generated figures (data/synth.py): written into the cache once
        try:
            source = str(ensure_synth_source(str(source), split, cache_dir / "synth", build=build))
        except ValueError as err:
            raise ConfigError(f"data.datasets[{spec.name!r}].{split}: {err}") from None
    path = Path(source)
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise ConfigError(f"data.datasets[{spec.name!r}].{split if split == 'val' else 'train'}: "
                              f"annotation file {path} does not exist")
        image_root = Path(images) if images else path.parent
        stat = path.stat()
        key = _fingerprint(str(path.resolve()), stat.st_size, stat.st_mtime_ns, spec.format, spec.skeleton,
                           spec.name, str(image_root.resolve()))
        out = cache_dir / f"{spec.name}-{split}-{key}"
        if not (out / "dataset_info.json").is_file():
            if not build:
                raise FileNotFoundError(f"converted dataset {out} is missing (the main process builds it)")
            options = ConvertOptions(skeleton=skeleton, skeleton_name=spec.name)
            build_dataset(spec.format, path, image_root, out, split=split, options=options, link_images=True,
                          overwrite=True, progress=False)
        dataset, found = load_pose_dataset(out)
    elif (path / "dataset_info.json").is_file():
        try:  # e.g. a folder saved by plain `datasets.save_to_disk`: no posebh metadata
            dataset, found = load_pose_dataset(path)
        except ValueError as err:
            raise ConfigError(f"data.datasets[{spec.name!r}]: {err}") from None
    elif path.exists():
        raise ConfigError(f"data.datasets[{spec.name!r}]: {path} is neither a .json annotation file nor a folder "
                          "saved by `posebh data build`")
    else:  # a Hub dataset id pushed with `posebh data build --push-to-hub` (parquet + posebh.json)
        try:
            dataset, found = load_pose_dataset(str(source), split=spec.split if split == "train" else spec.val_split)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"data.datasets[{spec.name!r}].{'train' if split == 'train' else 'val'}: {err}") from None
    skeleton = (skeleton or found).renamed(spec.name)
    if skeleton.num_keypoints != found.num_keypoints:
        raise ConfigError(f"data.datasets[{spec.name!r}].skeleton has {skeleton.num_keypoints} keypoints but the "
                          f"data has {found.num_keypoints}")
    return SourceData(spec.name, dataset, skeleton)


def make_transform(spec: DatasetConfig, skeleton: Skeleton, dataset_index: int, augment: dict[str, Any],
                   seed: int) -> PoseTrainTransform:
    """The data package's training transform with the preset of the dataset's format and config overrides."""
    preset = spec.name if spec.format == "coco-custom" else spec.format
    base = instance_spec_for(preset, skeleton).augment
    try:
        config = replace(base, **augment) if augment else None
    except TypeError as err:
        raise ConfigError(f"data.augment: {err} (keys are AugmentConfig fields)") from None
    except ValueError as err:
        raise ConfigError(f"data.augment: {err}") from None
    return PoseTrainTransform(skeleton, dataset_index=dataset_index, preset=preset, augment=config, seed=seed)


def _mapped_transforms(config: DataConfig, sources: Sequence[SourceData], seed: int
                       ) -> list[tuple[KeypointMappedTransform, float | None]]:
    """Per `keypoint_mapping` entry (in config order), the target's transform over the source's instances."""
    by_name = {s.name: (d, s) for d, s in enumerate(sources)}
    out = []
    for spec in config.datasets:
        d, target = by_name[spec.name]
        for source_name, entry in spec.keypoint_mapping.items():
            source = by_name[source_name][1]
            try:
                index = keypoint_index_map(source.skeleton, target.skeleton, entry.get("keypoints", BY_NAME))
            except ValueError as err:
                raise ConfigError(f"data.datasets[{spec.name!r}].keypoint_mapping[{source_name!r}]: {err}") from None
            base = make_transform(spec, target.skeleton, d, config.augment, seed)
            transform = KeypointMappedTransform(source.skeleton, target.skeleton, index, dataset_index=d,
                                                spec=base.spec, seed=seed)
            out.append((transform, entry.get("ratio")))
    return out


class EpochBatches(Sampler[list[int]]):
    """This rank's batches of one epoch: `MixingBatchSampler` batches `start` .. `stop` - 1 (no data is read)."""

    def __init__(self, sampler: MixingBatchSampler, start: int, stop: int) -> None:
        self.sampler, self.start, self.stop = sampler, int(start), int(stop)

    def __iter__(self) -> Iterator[list[int]]:
        batches = list(self.sampler)
        yield from batches[self.start:self.stop]

    def __len__(self) -> int:
        return max(0, min(self.stop, len(self.sampler)) - self.start)


@dataclass
class TrainData:
    """The mixed training set of one process.

    Attributes:
        sources: per configured dataset, in `dataset_index` order.
        transforms: the per-dataset training transforms (`set_epoch` before each epoch).
        mixed: `MixedDataset` over the instance views.
        sampler: this rank's `MixingBatchSampler`.
        steps_per_epoch: batches per epoch on every rank.
        max_num_keypoints: K_max, the padded target width.
    """

    sources: list[SourceData]
    transforms: list[PoseTrainTransform]
    mixed: MixedDataset
    sampler: MixingBatchSampler
    steps_per_epoch: int
    max_num_keypoints: int
    num_workers: int = 0
    seed: int = 0

    @property
    def skeletons(self) -> dict[str, Skeleton]:
        return {s.name: s.skeleton for s in self.sources}

    def loader(self, epoch: int, start_step: int = 0) -> DataLoader:
        """A DataLoader over epoch `epoch`'s batches from `start_step` on (deterministic augmentation)."""
        self.sampler.set_epoch(epoch)
        for transform in self.transforms:
            transform.set_epoch(epoch)
        batches = EpochBatches(self.sampler, start_step, self.steps_per_epoch)
        # own generator: creating the iterator must not draw from the global RNG (saved in checkpoints), so a
        # resumed run's random stream matches an uninterrupted one
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return DataLoader(self.mixed, batch_sampler=batches, collate_fn=PoseCollator(self.max_num_keypoints),
                          num_workers=self.num_workers, worker_init_fn=worker_init if self.num_workers else None,
                          generator=generator)


def build_train_data(config: DataConfig, cache_dir: Path, *, seed: int, rank: int, world_size: int,
                     steps_per_epoch: int | None, build: bool = True,
                     sources: Sequence[SourceData] | None = None) -> TrainData:
    """Instance views of every configured dataset mixed by `MixingBatchSampler` for this rank.

    Without `steps_per_epoch` an epoch is one pass over every instance (proportional mixing, spec §5.4). With it,
    an epoch has exactly that many batches per rank, drawn by the configured ratios (or by size).
    """
    if not config.datasets:
        raise ConfigError("data.datasets is empty; list at least one training dataset")
    if sources is None:
        sources = [load_source(spec, "train", cache_dir, build=build) for spec in config.datasets]
    transforms = [make_transform(spec, src.skeleton, d, config.augment, seed)
                  for d, (spec, src) in enumerate(zip(config.datasets, sources, strict=True))]
    views = [instance_dataset(src.dataset, tf) for src, tf in zip(sources, transforms, strict=True)]
    sizes = [len(v) for v in views]
    empty = [s.name for s, n in zip(sources, sizes, strict=True) if n == 0]
    if empty:
        raise ConfigError(f"datasets {empty} have no usable training instance (labelled keypoints and a valid box)")
    ratios = [spec.ratio for spec in config.datasets]
    # merged corpora (keypoint_mapping): extra pools after the datasets' own, routed to the target's head
    for transform, ratio in _mapped_transforms(config, sources, seed):
        source = next(s for s in sources if s.name == transform.source_skeleton.name)
        view = instance_dataset(source.dataset, transform)
        transforms.append(transform)
        views.append(view)
        sizes.append(len(view))
        ratios.append(ratio)
    if steps_per_epoch is None:
        mix_ratios = None if ratios[0] is None else ratios
        num_samples = None
    else:
        mix_ratios = [float(n) for n in sizes] if ratios[0] is None else ratios
        num_samples = steps_per_epoch * config.batch_size * world_size
    sampler = MixingBatchSampler(sizes, config.batch_size, ratios=mix_ratios, num_samples=num_samples,
                                 shuffle=True, seed=seed, rank=rank, world_size=world_size)
    steps = len(sampler) if steps_per_epoch is None else steps_per_epoch
    return TrainData(list(sources), transforms, MixedDataset(views), sampler, steps,
                     max(s.skeleton.num_keypoints for s in sources), config.num_workers, seed)
