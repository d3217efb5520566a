"""transformers ViTPose / ViTPose++ checkpoint folder -> PoseBH folder (layer 3).

A transformers `VitPoseForPoseEstimation` folder (config.json with model_type "vitpose" + safetensors) holds the
backbone (`backbone.*`, identical key layout) and ONE head (`head.*`), the COCO head for ViTPose++ (the Hub
`vitpose-plus-*` checkpoints drop the other five heads). It becomes `heads.0` of the PoseBH model; the other heads,
the embedding head and the prototypes are freshly initialised (listed in the report). Both decoder types map:
the classic decoder to `head_type="classic"`, the simple decoder to `head_type="simple"`.

The backbone config is copied as the folder has it, LayerNorm eps included: transformers' Hub folders say 1e-12 (its
`VitPoseBackboneConfig` default; its converter never sets the original ViTPose's 1e-6), so the converted model computes
exactly what the folder computes in transformers (docs/deviations.md, "LayerNorm eps").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from transformers import VitPoseConfig

from ..configuration_posebh import DEFAULT_DATASETS, PoseBHConfig, released_decoding
from ..modeling import PoseBHForPoseEstimation
from .common import (
    ConversionError,
    ConversionReport,
    MappedTensor,
    build_converted_model,
    check_destination,
    read_json,
    read_safetensors_folder,
    save_model_atomically,
)

__all__ = [
    "convert_vitpose",
    "map_vitpose_state_dict",
    "posebh_config_from_vitpose",
    "read_vitpose_folder",
    "vitpose_to_posebh_model",
]


def read_vitpose_folder(src: str | Path) -> tuple[VitPoseConfig, dict[str, torch.Tensor]]:
    """The `VitPoseConfig` and tensors of a transformers ViTPose(++) folder; `ConversionError` otherwise."""
    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"{src} is not a folder (expected a transformers ViTPose checkpoint folder)")
    config_path = src / "config.json"
    if not config_path.is_file():
        raise ConversionError(f"{src} is not a ViTPose or PoseBH checkpoint folder: it has no config.json")
    raw = read_json(config_path)
    model_type = raw.get("model_type")
    if model_type == PoseBHConfig.model_type:
        raise ConversionError(f"{src} is already a PoseBH checkpoint (model_type 'posebh'); nothing to convert")
    if model_type != VitPoseConfig.model_type:
        raise ConversionError(f"{config_path} has model_type {model_type!r}; expected 'vitpose' (a transformers "
                              "ViTPose/ViTPose++ checkpoint) or 'posebh'")
    try:
        config = VitPoseConfig.from_dict(raw)
    except Exception as err:  # a corrupt config: report the file, not a deep traceback
        raise ConversionError(f"{config_path} is not a valid ViTPose config: {err}") from None
    return config, read_safetensors_folder(src)


def posebh_config_from_vitpose(vitpose: VitPoseConfig, dataset_names: Sequence[str] | None = None) -> PoseBHConfig:
    """The PoseBH config that hosts a ViTPose(++) model: same backbone, its head as `heads.0`.

    Default datasets: the six PoseBH datasets for a 6-expert ViTPose++, ["coco"] for a plain ViTPose.
    """
    backbone = vitpose.backbone_config
    num_experts = int(backbone.num_experts)
    if dataset_names is None:
        if num_experts == 1:
            dataset_names = ["coco"]
        elif num_experts == len(DEFAULT_DATASETS):
            dataset_names = list(DEFAULT_DATASETS)
        else:
            raise ConversionError(f"the ViTPose++ backbone has {num_experts} experts; pass --datasets with "
                                  f"{num_experts} names in expert order")
    config = PoseBHConfig(
        backbone_config=copy.deepcopy(backbone),
        dataset_names=list(dataset_names),
        head_type="simple" if vitpose.use_simple_decoder else "classic",
        scale_factor=int(vitpose.scale_factor),
        initializer_range=float(vitpose.initializer_range),
        decoding=released_decoding(list(dataset_names)),  # the official recipe's table (UDP for coco/mpii)
    )
    first = config.dataset_names[0]
    if vitpose.num_labels != config.num_keypoints[0]:
        raise ConversionError(f"the ViTPose head predicts {vitpose.num_labels} keypoints but the first dataset "
                              f"{first!r} has {config.num_keypoints[0]}; pass --datasets starting with a matching "
                              "skeleton")
    return config


def map_vitpose_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, MappedTensor]:
    """`backbone.*` unchanged, `head.*` -> `heads.0.*`; any other key is an error."""
    mapped: dict[str, MappedTensor] = {}
    unknown = []
    for key, tensor in state_dict.items():
        if key.startswith("backbone."):
            mapped[key] = MappedTensor(key, tensor)
        elif key.startswith("head."):
            mapped["heads.0." + key[len("head."):]] = MappedTensor(key, tensor)
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"unexpected keys in the ViTPose checkpoint (neither backbone.* nor head.*): "
                              f"{sorted(unknown)[:10]}")
    return mapped


def vitpose_to_posebh_model(src: str | Path, dataset_names: Sequence[str] | None = None, seed: int = 0
                            ) -> tuple[PoseBHForPoseEstimation, ConversionReport]:
    """Build the PoseBH model from a ViTPose folder (in memory). Fresh parts use a fixed `seed`."""
    vitpose, state_dict = read_vitpose_folder(src)
    config = posebh_config_from_vitpose(vitpose, dataset_names)
    mapped = map_vitpose_state_dict(state_dict)
    fresh = [f"heads.{i}." for i in range(1, config.num_datasets)] + ["embedding_head.", "keypoint_prototypes."]
    model, initialised = build_converted_model(config, mapped, fresh, seed=seed, hint=f" (source {src})")
    summary = (f"{config.backbone_config.num_experts} expert(s), {config.head_type} heads for "
               f"{config.dataset_names}")
    report = ConversionReport(destination=Path(), config_summary=summary,
                              mapped={k: v.source for k, v in mapped.items()}, initialised=initialised)
    return model, report


def convert_vitpose(src: str | Path, dst: str | Path, dataset_names: Sequence[str] | None = None,
                    overwrite: bool = False, seed: int = 0) -> ConversionReport:
    """Convert a transformers ViTPose(++) folder into a PoseBH folder (`save_pretrained` layout)."""
    dst = Path(dst)
    check_destination(dst, overwrite)
    model, report = vitpose_to_posebh_model(src, dataset_names, seed)
    save_model_atomically(model, dst, overwrite)
    report.destination = dst
    return report
