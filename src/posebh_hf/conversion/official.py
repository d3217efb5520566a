"""Official PoseBH / ViTPose / ViTPose++ `.pth` (mmpose 0.x layout, spec §7.2) -> PoseBH folder (layer 3).

Nothing about the file has to be told: `layout.detect_layout` infers the backbone size (ViT-S/B/L/H from width and
depth), the experts, the heads, the head type and whether it is a split file. Accepted layouts:
- the unsplit PoseBH MDT checkpoint (backbone with experts + `keypoint_head` + `associate_keypoint_heads.{0..4}` +
  `proto_head`) and the ViTPose++ multi-dataset checkpoints (no `proto_head`: embedding head and prototypes are
  freshly initialised);
- `tools/model_split.py` outputs (spec §7.3): fc2 [C, 4C] already holds one expert merged in; the leftover expert
  tensors (PoseBH's script, Q12) and, in `coco.pth`, the associate heads are dropped and reported; the file becomes a
  one-dataset model named by `--dataset`, the file name (`coco.pth`, `base_coco.pth`, `aic.pth`, `wholebody.pth`,
  ...) or the merged expert; its prototype rows are kept when `proto_head` is still in the file;
- plain ViTPose files: one classic head (deconvs + 1x1 conv) or the simple decoder (`final_layer` 3x3 only), and
  one-MLP multi-head files (`vitpose_*_coco_aic_mpii.pth`), hosted with one identical expert per head.
Loaded with `torch.load(weights_only=True)`; top-level `state_dict` / `model` / `module` wrappers and a leading
`module.` are stripped.

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

Dropped on purpose: `backbone.cls_token` (ViTPose has no class token; transformers' converter drops it too) and, in
split files only, the leftovers named above. Any other key is an error.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..configuration_posebh import DEFAULT_DATASETS, PoseBHConfig, backbone_config_for, released_decoding
from ..modeling import PoseBHForPoseEstimation
from ..skeletons import get_skeleton
from .common import (
    ConversionError,
    ConversionReport,
    MappedTensor,
    build_converted_model,
    check_destination,
    save_model_atomically,
)
from .layout import (
    CheckpointLayout,
    dataset_from_filename,
    datasets_from_filename,
    default_datasets_for,
    detect_layout,
)

__all__ = [
    "DROPPED_KEYS",
    "convert_official",
    "load_official_state_dict",
    "map_official_state_dict",
    "official_config",
    "normalise_official_state_dict",
    "official_to_posebh_model",
    "resolve_dataset_names",
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


# --------------------------------------------------------------------------------------------------- layouts
_LEFTOVER_EXPERT = "leftover expert of a split file (fc2 already holds the merged expert)"
_LEFTOVER_HEAD = "associate head left in a split file (keypoint_head is this file's dataset head)"


def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ConversionError(f"the checkpoint has no {key!r}; is this a PoseBH / ViTPose++ checkpoint?")
    return tuple(state_dict[key].shape)


def _skeleton_keypoints(name: str) -> int | None:
    """K of a built-in skeleton, None for a name that is not built in (a custom skeleton)."""
    try:
        return get_skeleton(name).num_keypoints
    except (KeyError, ValueError, OSError):
        return None


def _check_keypoints(names: Sequence[str], layout: CheckpointLayout) -> None:
    for name, prefix, k in zip(names, layout.heads, layout.head_keypoints, strict=False):
        skeleton_k = _skeleton_keypoints(name)
        if skeleton_k is not None and skeleton_k != k:  # a custom skeleton: PoseBHConfig reports it
            raise ConversionError(f"{prefix} predicts {k} keypoints but dataset {name!r} has {skeleton_k}; pass "
                                  "--dataset / --datasets with matching skeletons")


def resolve_dataset_names(layout: CheckpointLayout, dataset_names: Sequence[str] | None = None,
                          dataset: str | None = None, source: str | Path | None = None) -> list[str]:
    """The PoseBH dataset names for a checkpoint.

    One output head (a split file or a single-head ViTPose file): `dataset`, else a one-name `dataset_names`, else the
    dataset in the file name (`coco.pth`, `base_coco.pth`, `aic.pth`, ...), else the merged expert's dataset (split
    files), else "coco" for 17 keypoints. A split file whose merged expert is a different PoseBH dataset than the
    name is refused. Several heads: `dataset_names`, else the names in the file name, else the PoseBH order cut to
    the head count when the keypoint counts match.
    """
    single = layout.kind == "split" or len(layout.heads) == 1
    if single:
        if dataset_names is not None and len(dataset_names) != 1 and dataset is None:
            raise ConversionError(f"this {'split file' if layout.kind == 'split' else 'checkpoint'} has one heatmap "
                                  f"head but {len(dataset_names)} dataset names were given: {list(dataset_names)}")
        name = dataset or (dataset_names[0] if dataset_names else None) or dataset_from_filename(source)
        expert_name = (DEFAULT_DATASETS[layout.merged_expert] if layout.merged_expert is not None
                       and layout.num_experts == len(DEFAULT_DATASETS) else None)
        if name is None:
            name = expert_name or ("coco" if layout.head_keypoints[0] == 17 else None)
        if name is None:
            raise ConversionError(f"cannot tell which dataset this one-head checkpoint is for (keypoint_head predicts "
                                  f"{layout.head_keypoints[0]} keypoints); pass --dataset NAME")
        if expert_name is not None and name in DEFAULT_DATASETS and name != expert_name:
            raise ConversionError(f"the dataset is {name!r} (--dataset or the file name) but the file's fc2 holds "
                                  f"expert {layout.merged_expert} ({expert_name!r}) merged; pass --dataset "
                                  f"{expert_name} or check the file")
        names = [name]
    else:
        if dataset is not None:
            raise ConversionError(f"--dataset names the dataset of a one-head (split) file; this checkpoint has "
                                  f"{len(layout.heads)} heatmap heads, use --datasets")
        from_file = datasets_from_filename(source)
        if dataset_names is not None:
            names = list(dataset_names)
        elif len(from_file) == len(layout.heads):
            names = from_file
        else:
            names = default_datasets_for(len(layout.heads), layout.head_keypoints)
            if names is None:
                raise ConversionError(f"the checkpoint has {len(layout.heads)} heatmap heads "
                                      f"({layout.head_keypoints} keypoints); pass --datasets with "
                                      f"{len(layout.heads)} names in head order")
        if len(names) != len(layout.heads):
            raise ConversionError(f"the checkpoint has {len(layout.heads)} heatmap heads (keypoint_head + "
                                  f"associate_keypoint_heads) but {len(names)} dataset names were given: {names}")
    _check_keypoints(names, layout)
    return names


def normalise_official_state_dict(state_dict: Mapping[str, torch.Tensor], layout: CheckpointLayout,
                                  dataset_names: Sequence[str]
                                  ) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """Remove what a split file keeps by accident (spec §7.3, Q12): leftover experts and associate heads.

    The prototype rows of the split file's dataset are kept (rows off_d .. off_d + K_d - 1 of the six-dataset table)
    when the file holds the full 214-row table; otherwise `proto_head.*` is dropped. Returns (state dict, dropped
    source key -> reason, notes). Unsplit and plain checkpoints pass through unchanged.
    """
    if layout.kind != "split":
        return dict(state_dict), {}, []
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    notes: list[str] = []
    for key, tensor in state_dict.items():
        if re.fullmatch(r"backbone\.blocks\.\d+\.mlp\.experts\.\d+\.(weight|bias)", key):
            dropped[key] = _LEFTOVER_EXPERT
        elif key.startswith("associate_keypoint_heads."):
            dropped[key] = _LEFTOVER_HEAD
        else:
            out[key] = tensor
    proto_key = "proto_head.kpt_prototype.prototypes"
    if proto_key in out:
        name = dataset_names[0]
        counts = [get_skeleton(n).num_keypoints for n in DEFAULT_DATASETS]
        rows = out[proto_key].shape[0]
        if rows == sum(counts) and name in DEFAULT_DATASETS:
            d = DEFAULT_DATASETS.index(name)
            start = sum(counts[:d])
            out[proto_key] = out[proto_key][start:start + counts[d]]
            notes.append(f"kept prototype rows {start}..{start + counts[d] - 1} of {rows} ({name})")
        elif rows != _skeleton_keypoints(name):
            for key in [k for k in out if k.startswith("proto_head.")]:
                dropped[key] = (f"proto_head of a split file whose prototype table ({rows} rows) has no rows "
                                f"for {name!r}")
                del out[key]
    if layout.merged_expert is not None:
        notes.append(f"fc2 holds expert {layout.merged_expert} merged; {layout.num_experts} leftover experts dropped")
    return out, dropped, notes


# --------------------------------------------------------------------------------------------------- config
def _hosted_experts(layout: CheckpointLayout) -> int:
    """Experts of the PoseBH backbone: the file's experts (unsplit), 1 (split or one head), else one per head (a
    one-MLP multi-head file is hosted with identical experts, see `_replicate_shared_mlp`)."""
    if layout.kind == "moe":
        return layout.num_experts
    return 1 if layout.kind == "split" or len(layout.heads) == 1 else len(layout.heads)


def _config(state_dict: Mapping[str, torch.Tensor], layout: CheckpointLayout, dataset_names: Sequence[str],
            **backbone_overrides: Any) -> PoseBHConfig:
    size = layout.size
    experts = _hosted_experts(layout)
    if layout.kind == "moe" and experts != len(dataset_names):
        raise ConversionError(f"the checkpoint has {experts} experts but {len(dataset_names)} heatmap heads; a "
                              "ViTPose++ / PoseBH checkpoint has one head per expert")
    backbone_overrides.setdefault("part_features", layout.part_features if layout.kind == "moe"
                                  else size.part_features)
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
        backbone_overrides.setdefault(name, getattr(size, name))
    kwargs: dict[str, Any] = {
        "backbone_config": backbone_config_for("base", experts, **backbone_overrides),
        "dataset_names": list(dataset_names),
        "head_type": layout.head_type,
        "decoding": released_decoding(list(dataset_names)),  # UDP for coco/mpii, classic elsewhere (as trained)
    }
    if layout.head_type == "classic":
        kwargs["head_channels"] = _shape(state_dict, "keypoint_head.deconv_layers.0.weight")[1]
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


def official_config(state_dict: Mapping[str, torch.Tensor], variant: str | None = None,
                    dataset_names: Sequence[str] | None = None, *, dataset: str | None = None,
                    source: str | Path | None = None, **backbone_overrides: Any) -> PoseBHConfig:
    """The PoseBH config for an official checkpoint, inferred from its tensors: size (S/B/L/H; `variant` is only a
    check), experts, heads and their keypoint counts, head type, D, M and the cluster count."""
    layout = detect_layout(state_dict, variant)
    names = resolve_dataset_names(layout, dataset_names, dataset, source)
    normalised, _, _ = normalise_official_state_dict(state_dict, layout, names)
    return _config(normalised, layout, names, **backbone_overrides)


# --------------------------------------------------------------------------------------------------- convert
def _replicate_shared_mlp(mapped: dict[str, MappedTensor], config: PoseBHConfig) -> None:
    """Host a one-MLP multi-head checkpoint (e.g. vitpose_base_coco_aic_mpii.pth) in a PoseBH backbone with one
    expert per head: fc2 [C, 4C] is cut into the shared rows [:C-P] and the expert rows [C-P:], copied to every
    expert, so every dataset_index computes exactly the original MLP."""
    backbone = config.backbone_config
    shared = backbone.hidden_size - backbone.part_features
    for i in range(backbone.num_hidden_layers):
        for kind in ("weight", "bias"):
            key = f"backbone.encoder.layer.{i}.mlp.fc2.{kind}"
            item = mapped[key]
            mapped[key] = MappedTensor(item.source, item.tensor[:shared])
            for e in range(backbone.num_experts):
                mapped[f"backbone.encoder.layer.{i}.mlp.experts.{e}.{kind}"] = MappedTensor(
                    item.source, item.tensor[shared:])


def official_to_posebh_model(state_dict: Mapping[str, torch.Tensor], variant: str | None = None,
                             dataset_names: Sequence[str] | None = None, seed: int = 0, *,
                             dataset: str | None = None, source: str | Path | None = None,
                             **backbone_overrides: Any) -> tuple[PoseBHForPoseEstimation, ConversionReport]:
    """Build the PoseBH model from an official state dict (in memory), inferring its layout (`detect_layout`).

    `variant` (small / base / large / huge / tiny) is a check of the inferred size. `source` (the file name) names
    the dataset of a split file when `dataset` does not. Parts absent from the checkpoint (embedding head and
    prototypes of a ViTPose(++) checkpoint) are freshly initialised with `seed`.
    """
    layout = detect_layout(state_dict, variant)
    names = resolve_dataset_names(layout, dataset_names, dataset, source)
    normalised, dropped, notes = normalise_official_state_dict(state_dict, layout, names)
    config = _config(normalised, layout, names, **backbone_overrides)
    mapped, unused = map_official_state_dict(normalised)
    dropped.update(unused)
    if layout.kind == "plain" and config.backbone_config.num_experts > 1:
        _replicate_shared_mlp(mapped, config)
        notes.append(f"one shared MLP for {len(names)} heads: fc2 hosted as {config.backbone_config.num_experts} "
                     "identical experts (every dataset_index computes the original MLP)")
    has_proto = any(k.startswith("proto_head.") for k in normalised)
    fresh = [] if has_proto else ["embedding_head.", "keypoint_prototypes."]
    hint = f" (inferred {layout.size.describe()})"
    model, initialised = build_converted_model(config, mapped, fresh, seed=seed, hint=hint)
    summary = (f"{layout.size.label}, {config.backbone_config.num_experts} expert(s), {config.head_type} heads "
               f"{config.dataset_names}, prototypes {list(model.keypoint_prototypes.prototypes.shape)}"
               + ("" if has_proto else " (fresh)"))
    report = ConversionReport(destination=Path(), config_summary=summary,
                              mapped={k: v.source for k, v in mapped.items()}, dropped=dropped,
                              initialised=initialised, layout=layout.describe(), notes=layout.notes + notes)
    return model, report


def convert_official(src: str | Path, dst: str | Path, variant: str | None = None,
                     dataset_names: Sequence[str] | None = None, overwrite: bool = False, seed: int = 0,
                     dataset: str | None = None) -> ConversionReport:
    """Convert an official `.pth` into a PoseBH folder (`save_pretrained` layout); the size and layout are inferred
    from the tensors, a split file's dataset from `dataset` or the file name."""
    dst = Path(dst)
    check_destination(dst, overwrite)
    state_dict = load_official_state_dict(src)
    model, report = official_to_posebh_model(state_dict, variant, dataset_names, seed, dataset=dataset,
                                             source=Path(src).name)
    save_model_atomically(model, dst, overwrite)
    report.destination = dst
    return report
