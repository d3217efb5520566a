"""Official PoseBH / ViTPose++ `.pth` (mmpose 0.x layout, spec §7.2) -> PoseBH folder (layer 3).

Accepted: the PoseBH MDT checkpoint (backbone + `keypoint_head` + `associate_keypoint_heads.{0..4}` +
`proto_head`), the ViTPose++ multi-dataset checkpoints (no `proto_head`: embedding head and prototypes are
freshly initialised), and single-dataset checkpoints (plain ViT without experts, one head, e.g. a split
`coco.pth` or a transfer model). Loaded with `torch.load(weights_only=True)`; top-level `state_dict` / `model` /
`module` wrappers and a leading `module.` are stripped.

Key table (source -> PoseBH):

| source | PoseBH |
|---|---|
| backbone.pos_embed | backbone.embeddings.position_embeddings |
| backbone.patch_embed.proj.{w,b} | backbone.embeddings.patch_embeddings.projection.{w,b} |
| backbone.blocks.i.norm1 / norm2 | backbone.encoder.layer.i.layernorm_before / layernorm_after |
| backbone.blocks.i.attn.qkv.{w,b} [3C, ...] | split in q, k, v order into ...attention.attention.{query,key,value} |
| backbone.blocks.i.attn.proj | backbone.encoder.layer.i.attention.output.dense |
| backbone.blocks.i.mlp.{fc1,fc2,experts.e} | backbone.encoder.layer.i.mlp.{fc1,fc2,experts.e} |
| backbone.last_norm | backbone.layernorm |
| keypoint_head.* / associate_keypoint_heads.j.* | heads.0.* / heads.{j+1}.* |
| ...deconv_layers.{0,1,3,4}, final_layer | deconv1, batchnorm1, deconv2, batchnorm2, conv |
| proto_head.deconv_layers.{0,1,3,4} | embedding_head.{deconv1,batchnorm1,deconv2,batchnorm2} |
| proto_head.neck.{conv1,bn1,conv2,bn2} | embedding_head.neck.{conv1,batchnorm1,conv2,batchnorm2} |
| proto_head.neck.downsample.{0,1} | embedding_head.neck.{shortcut_conv,shortcut_batchnorm} |
| proto_head.head.{0,1,3} | embedding_head.{proj_conv,proj_batchnorm,out_conv} |
| proto_head.kpt_prototype.prototypes [K, M, D] | keypoint_prototypes.prototypes |
| proto_head.cluster_prototype.prototypes [C, M, D] | keypoint_prototypes.cluster_prototypes (kept, C from shape) |

Dropped on purpose: `backbone.cls_token` (ViTPose has no class token; transformers' converter drops it too).
Any other key is an error.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..configuration_posebh import BACKBONE_PRESETS, DEFAULT_DATASETS, PoseBHConfig, backbone_config_for
from ..modeling import PoseBHForPoseEstimation
from .common import (
    ConversionError,
    ConversionReport,
    MappedTensor,
    build_converted_model,
    check_destination,
    save_model_atomically,
)

__all__ = [
    "DROPPED_KEYS",
    "convert_official",
    "load_official_state_dict",
    "map_official_state_dict",
    "official_config",
    "official_to_posebh_model",
]

DROPPED_KEYS: dict[str, str] = {
    r"backbone\.cls_token": "backbone.cls_token (unused: ViTPose has no class token)",
}
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_WB = r"(weight|bias)"
_UPSAMPLER = {"deconv_layers.0": "deconv1", "deconv_layers.1": "batchnorm1",
              "deconv_layers.3": "deconv2", "deconv_layers.4": "batchnorm2"}

# (source pattern, target template); `\N` groups are substituted, `{head}` is the PoseBH head index.
_RULES: list[tuple[str, str]] = [
    (r"backbone\.pos_embed", "backbone.embeddings.position_embeddings"),
    (rf"backbone\.patch_embed\.proj\.{_WB}", r"backbone.embeddings.patch_embeddings.projection.\1"),
    (rf"backbone\.blocks\.(\d+)\.norm1\.{_WB}", r"backbone.encoder.layer.\1.layernorm_before.\2"),
    (rf"backbone\.blocks\.(\d+)\.norm2\.{_WB}", r"backbone.encoder.layer.\1.layernorm_after.\2"),
    (rf"backbone\.blocks\.(\d+)\.attn\.proj\.{_WB}", r"backbone.encoder.layer.\1.attention.output.dense.\2"),
    (rf"backbone\.blocks\.(\d+)\.mlp\.(fc1|fc2)\.{_WB}", r"backbone.encoder.layer.\1.mlp.\2.\3"),
    (rf"backbone\.blocks\.(\d+)\.mlp\.experts\.(\d+)\.{_WB}", r"backbone.encoder.layer.\1.mlp.experts.\2.\3"),
    (rf"backbone\.last_norm\.{_WB}", r"backbone.layernorm.\1"),
    *[(rf"proto_head\.{re.escape(src)}\.{_BN}", rf"embedding_head.{dst}.\1") for src, dst in _UPSAMPLER.items()],
    (rf"proto_head\.neck\.(conv1|conv2)\.{_WB}", r"embedding_head.neck.\1.\2"),
    (rf"proto_head\.neck\.bn([12])\.{_BN}", r"embedding_head.neck.batchnorm\1.\2"),
    (r"proto_head\.neck\.downsample\.0\.weight", "embedding_head.neck.shortcut_conv.weight"),
    (rf"proto_head\.neck\.downsample\.1\.{_BN}", r"embedding_head.neck.shortcut_batchnorm.\1"),
    (rf"proto_head\.head\.0\.{_WB}", r"embedding_head.proj_conv.\1"),
    (rf"proto_head\.head\.1\.{_BN}", r"embedding_head.proj_batchnorm.\1"),
    (rf"proto_head\.head\.3\.{_WB}", r"embedding_head.out_conv.\1"),
    (r"proto_head\.kpt_prototype\.prototypes", "keypoint_prototypes.prototypes"),
    (r"proto_head\.cluster_prototype\.prototypes", "keypoint_prototypes.cluster_prototypes"),
]
_HEAD_PREFIX = re.compile(r"(keypoint_head|associate_keypoint_heads\.(\d+))\.(.+)")
_HEAD_RULES: list[tuple[str, str]] = [
    *[(rf"{re.escape(src)}\.{_BN}", rf"{dst}.\1") for src, dst in _UPSAMPLER.items()],
    (rf"final_layer\.{_WB}", r"conv.\1"),
]
_QKV = re.compile(rf"backbone\.blocks\.(\d+)\.attn\.qkv\.{_WB}")
_WRAPPERS = ("state_dict", "model", "module")


# --------------------------------------------------------------------------------------------------- reading
def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensor state dict of an official `.pth` (mmcv checkpoint or bare state dict), safely unpickled."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist or is not a file (expected an official .pth checkpoint)")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(f"{path} cannot be read with torch.load(weights_only=True): {first}. Only plain "
                              "tensor checkpoints are accepted; re-save its state_dict if you trust the file") from None
    for _ in range(3):  # mmcv {'state_dict': ...}, {'model': ...}, DataParallel {'module': ...}
        if not isinstance(obj, Mapping):
            break
        wrapper = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"{path} does not contain a state dict (a mapping of names to tensors)")
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state_dict[key.removeprefix("module.")] = value
    return state_dict


# --------------------------------------------------------------------------------------------------- mapping
def _apply_rules(key: str, rules: Sequence[tuple[str, str]]) -> str | None:
    for pattern, template in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(template)
    return None


def _map_head_key(key: str) -> str | None:
    match = _HEAD_PREFIX.fullmatch(key)
    if not match:
        return None
    head = 0 if match.group(2) is None else int(match.group(2)) + 1
    rest = _apply_rules(match.group(3), _HEAD_RULES)
    return None if rest is None else f"heads.{head}.{rest}"


def _split_qkv(key: str, tensor: torch.Tensor, block: str, kind: str) -> dict[str, MappedTensor]:
    if tensor.shape[0] % 3 != 0 or (kind == "weight" and tensor.shape[0] != 3 * tensor.shape[1]):
        raise ConversionError(f"source key {key!r} has shape {list(tensor.shape)}; expected [3C, C] / [3C] (fused "
                              "q, k, v)")
    prefix = f"backbone.encoder.layer.{block}.attention.attention"
    parts = tensor.chunk(3, dim=0)  # q, k, v in that order (heads interleaved inside each third)
    return {f"{prefix}.{name}.{kind}": MappedTensor(key, part.clone())
            for name, part in zip(("query", "key", "value"), parts, strict=True)}


def map_official_state_dict(state_dict: Mapping[str, torch.Tensor]
                            ) -> tuple[dict[str, MappedTensor], dict[str, str]]:
    """Rename / split every source key. Returns (target key -> MappedTensor, dropped source key -> reason).

    Raises `ConversionError` listing the source keys that match no rule.
    """
    mapped: dict[str, MappedTensor] = {}
    dropped: dict[str, str] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        reason = next((why for pattern, why in DROPPED_KEYS.items() if re.fullmatch(pattern, key)), None)
        if reason is not None:
            dropped[key] = reason
            continue
        qkv = _QKV.fullmatch(key)
        if qkv:
            mapped.update(_split_qkv(key, tensor, qkv.group(1), qkv.group(2)))
            continue
        target = _apply_rules(key, _RULES) or _map_head_key(key)
        if target is None:
            unknown.append(key)
        else:
            mapped[target] = MappedTensor(key, tensor)
    if unknown:
        raise ConversionError(f"{len(unknown)} source keys are not part of the PoseBH/ViTPose++ layout, e.g. "
                              f"{sorted(unknown)[:8]}")
    return mapped, dropped


# --------------------------------------------------------------------------------------------------- config
def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ConversionError(f"the checkpoint has no {key!r}; is this a PoseBH / ViTPose++ checkpoint?")
    return tuple(state_dict[key].shape)


def _count(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state_dict if (m := regex.fullmatch(k))})


def official_config(state_dict: Mapping[str, torch.Tensor], variant: str = "base",
                    dataset_names: Sequence[str] | None = None, **backbone_overrides: Any) -> PoseBHConfig:
    """The PoseBH config for an official checkpoint: backbone from `variant` (base / huge; attention heads
    cannot be read from shapes), expert count, head widths, D, M and cluster count from the tensors."""
    if variant not in BACKBONE_PRESETS:
        raise ConversionError(f"unknown variant {variant!r}; expected one of {sorted(BACKBONE_PRESETS)}")
    num_experts = _count(state_dict, r"backbone\.blocks\.0\.mlp\.experts\.(\d+)\.weight") or 1
    num_heads = _count(state_dict, r"(keypoint_head)\.final_layer\.weight") + _count(
        state_dict, r"associate_keypoint_heads\.(\d+)\.final_layer\.weight")
    if num_heads == 0:
        raise ConversionError("the checkpoint has no keypoint_head.final_layer.weight; is this a PoseBH / ViTPose++ "
                              "checkpoint?")
    if dataset_names is None:
        dataset_names = list(DEFAULT_DATASETS) if num_heads == len(DEFAULT_DATASETS) else (
            ["coco"] if num_heads == 1 else None)
        if dataset_names is None:
            raise ConversionError(f"the checkpoint has {num_heads} heatmap heads; pass --datasets with {num_heads} "
                                  "names in head order")
    if len(dataset_names) != num_heads:
        raise ConversionError(f"the checkpoint has {num_heads} heatmap heads (keypoint_head + associate_keypoint_heads)"
                              f" but {len(dataset_names)} dataset names were given: {list(dataset_names)}")
    if num_experts > 1:
        backbone_overrides.setdefault("part_features", _shape(state_dict, "backbone.blocks.0.mlp.experts.0.weight")[0])
    kwargs: dict[str, Any] = {
        "backbone_config": backbone_config_for(variant, num_experts, **backbone_overrides),
        "dataset_names": list(dataset_names),
        "head_channels": _shape(state_dict, "keypoint_head.deconv_layers.0.weight")[1],
    }
    if "proto_head.kpt_prototype.prototypes" in state_dict:
        _, m, d = _shape(state_dict, "proto_head.kpt_prototype.prototypes")
        kwargs.update(num_prototypes=m, embed_dim=d,
                      embedding_deconv_channels=_shape(state_dict, "proto_head.deconv_layers.0.weight")[1],
                      embedding_channels=_shape(state_dict, "proto_head.neck.conv1.weight")[0])
    if "proto_head.cluster_prototype.prototypes" in state_dict:
        kwargs["num_cluster_prototypes"] = _shape(state_dict, "proto_head.cluster_prototype.prototypes")[0]
    try:
        return PoseBHConfig(**kwargs)
    except ValueError as err:
        raise ConversionError(f"cannot build a PoseBH config for this checkpoint: {err}") from None


# --------------------------------------------------------------------------------------------------- convert
def official_to_posebh_model(state_dict: Mapping[str, torch.Tensor], variant: str = "base",
                             dataset_names: Sequence[str] | None = None, seed: int = 0,
                             **backbone_overrides: Any) -> tuple[PoseBHForPoseEstimation, ConversionReport]:
    """Build the PoseBH model from an official state dict (in memory). Parts absent from the checkpoint
    (embedding head and prototypes of a ViTPose++ checkpoint) are freshly initialised with `seed`."""
    config = official_config(state_dict, variant, dataset_names, **backbone_overrides)
    mapped, dropped = map_official_state_dict(state_dict)
    has_proto = any(k.startswith("proto_head.") for k in state_dict)
    fresh = [] if has_proto else ["embedding_head.", "keypoint_prototypes."]
    hint = f" (is --variant {variant!r} right?)"
    model, initialised = build_converted_model(config, mapped, fresh, seed=seed, hint=hint)
    summary = (f"variant {variant}, {config.backbone_config.num_experts} expert(s), heads {config.dataset_names}, "
               f"prototypes {list(model.keypoint_prototypes.prototypes.shape)}"
               + ("" if has_proto else " (fresh)"))
    report = ConversionReport(destination=Path(), config_summary=summary,
                              mapped={k: v.source for k, v in mapped.items()}, dropped=dropped,
                              initialised=initialised)
    return model, report


def convert_official(src: str | Path, dst: str | Path, variant: str = "base",
                     dataset_names: Sequence[str] | None = None, overwrite: bool = False, seed: int = 0
                     ) -> ConversionReport:
    """Convert an official `.pth` into a PoseBH folder (`save_pretrained` layout)."""
    dst = Path(dst)
    check_destination(dst, overwrite)
    state_dict = load_official_state_dict(src)
    model, report = official_to_posebh_model(state_dict, variant, dataset_names, seed)
    save_model_atomically(model, dst, overwrite)
    report.destination = dst
    return report
