"""Pose corpora as Hugging Face datasets and the training input pipeline (layer 3).

- :mod:`.features`: the one schema (one row per image, instances in ``objects``), skeleton in the dataset info.
- :mod:`.converters` + :func:`build_dataset`: native annotation files -> saved datasets (``posebh data build``).
- :class:`PoseTrainTransform`: instance -> crop, targets, weights, ``dataset_index`` (spec §5.5-5.6).
- :func:`instance_dataset` (map-style, ``set_transform``) / :func:`stream_instances` (``IterableDataset``).
- :class:`MixedDataset` + :class:`MixingBatchSampler` / :func:`mix_streams` (:class:`MixedStream`): mixing.
- :class:`PoseCollator`: batches with per-sample ``dataset_index`` and targets padded per skeleton.
"""

from __future__ import annotations

from .build import BuildSummary, build_dataset, load_pose_dataset
from .collate import PoseCollator, indices_by_dataset
from .converters import FORMATS, ConvertOptions, MalformedRecordError, read_corpus
from .features import pose_features, skeleton_from_info
from .instance_specs import InstanceSpec, instance_spec_for
from .instances import InstanceIndex, select_instances
from .mixing import MixedDataset, MixedStream, MixingBatchSampler, even_batches, mix_streams, worker_init
from .transform import OUTPUT_KEYS, PoseTrainTransform
from .views import instance_dataset, stream_instances

__all__ = [
    "FORMATS",
    "OUTPUT_KEYS",
    "BuildSummary",
    "ConvertOptions",
    "InstanceIndex",
    "InstanceSpec",
    "MalformedRecordError",
    "MixedDataset",
    "MixedStream",
    "MixingBatchSampler",
    "PoseCollator",
    "PoseTrainTransform",
    "build_dataset",
    "even_batches",
    "indices_by_dataset",
    "instance_dataset",
    "instance_spec_for",
    "load_pose_dataset",
    "mix_streams",
    "pose_features",
    "read_corpus",
    "select_instances",
    "skeleton_from_info",
    "stream_instances",
    "worker_init",
]
