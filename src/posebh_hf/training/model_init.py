"""The model a run trains: from scratch, or initialised from a converted ViTPose++ / PoseBH folder (spec §5.1, §8).

Initialisation copies tensors from the source model into a freshly built target model by meaning, not only by
key: experts, heads and prototype blocks are matched by dataset name (or `model.init_map`), a plain (1-expert)
target backbone receives fc2 = [fc2 ; experts[e]] of the source expert e (the MoE -> ViT merge of spec §2.2 /
§7.3), and mismatched shapes (e.g. a new skeleton's final 1x1 conv) keep their fresh initialisation, as the
released non-strict loading does. The report lists what was copied and what was initialised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import VitPoseBackboneConfig

from ..configuration_posebh import PoseBHConfig, backbone_config_for
from ..modeling import PoseBHForPoseEstimation
from ..skeletons import Skeleton
from .config import ConfigError, TrainConfig

__all__ = ["TIMM_PREFIX", "InitReport", "build_model", "transplant"]

TIMM_PREFIX = "timm:"  # `model.init: timm:NAME_OR_FOLDER` starts the backbone from a timm ViT

_BACKBONE_KEYS = frozenset(k for k in VitPoseBackboneConfig().to_dict() if not k.startswith("_"))
_EXPERT = re.compile(r"^(backbone\.encoder\.layer\.\d+\.mlp)\.experts\.(\d+)\.(weight|bias)$")
_FC2 = re.compile(r"^(backbone\.encoder\.layer\.\d+\.mlp)\.fc2\.(weight|bias)$")
_HEAD = re.compile(r"^heads\.(\d+)\.(.+)$")


@dataclass
class InitReport:
    """What `transplant` did: target key -> source description, and target keys left freshly initialised."""

    source: str
    copied: dict[str, str] = field(default_factory=dict)
    fresh: list[str] = field(default_factory=list)

    def summary(self) -> str:
        prefixes = sorted({".".join(k.split(".")[:2]) for k in self.fresh})
        return (f"initialised from {self.source}: {len(self.copied)} tensors copied, {len(self.fresh)} fresh"
                + (f" ({', '.join(prefixes)})" if prefixes else ""))


def _split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    backbone = {k: v for k, v in overrides.items() if k in _BACKBONE_KEYS}
    return backbone, {k: v for k, v in overrides.items() if k not in backbone}


def _target_config(cfg: TrainConfig, skeletons: dict[str, Skeleton], source: PoseBHConfig | None) -> PoseBHConfig:
    names = cfg.dataset_names
    use_protos = cfg.mode != "multihead"
    num_rows = sum(skeletons[n].num_keypoints for n in names)
    clusters = min(cfg.model.num_cluster_prototypes, num_rows) if cfg.mode == "posebh" else 0
    experts = len(names) if len(names) > 1 else 1
    backbone_over, model_over = _split_overrides(dict(cfg.model.config_overrides))
    common: dict[str, Any] = {"dataset_names": names, "skeletons": {n: skeletons[n].to_dict() for n in names},
                              "num_cluster_prototypes": clusters if use_protos else 0}
    try:
        if source is not None:
            keep = {k: getattr(source, k) for k in ("head_type", "head_channels", "scale_factor", "embedding_head_type",
                                                    "embedding_deconv_channels", "embedding_channels", "embed_dim",
                                                    "num_prototypes", "similarity", "prototype_init_std",
                                                    "head_init_std", "initializer_range")}
            backbone = {k: v for k, v in source.backbone_config.to_dict().items() if k in _BACKBONE_KEYS}
            backbone.update(backbone_over, num_experts=experts)
            backbone.pop("model_type", None)
            return PoseBHConfig(backbone_config=VitPoseBackboneConfig(**backbone), **{**keep, **common, **model_over})
        common["similarity"] = cfg.model.similarity
        if cfg.model.variant == "tiny":
            return PoseBHConfig.tiny(**common, **backbone_over, **model_over)
        backbone_cfg = backbone_config_for(cfg.model.variant, num_experts=experts, **backbone_over)
        return PoseBHConfig(backbone_config=backbone_cfg, **common, **model_over)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: cannot build the model config: {err}") from None


def _source_index(target_name: str, source: PoseBHConfig, init_map: dict[str, str], fallback: str | None) -> int:
    name = init_map.get(target_name, target_name)
    if name in source.dataset_names:
        return source.dataset_names.index(name)
    if fallback is not None and fallback in source.dataset_names:
        return source.dataset_names.index(fallback)
    return 0


@torch.no_grad()
def transplant(source: PoseBHForPoseEstimation, target: PoseBHForPoseEstimation, *,
               init_map: dict[str, str] | None = None, fallback: str | None = None,
               copy_prototypes: bool = True, source_name: str = "source") -> InitReport:
    """Copy the source's tensors into `target` (in place) by dataset name; see the module docstring."""
    init_map = dict(init_map or {})
    src_cfg, tgt_cfg = source.config, target.config
    src_state = source.state_dict()
    src_moe = src_cfg.backbone_config.num_experts > 1
    idx = {n: _source_index(n, src_cfg, init_map, fallback) for n in tgt_cfg.dataset_names}
    report = InitReport(source_name)
    new_state: dict[str, torch.Tensor] = {}
    for key, tensor in target.state_dict().items():
        found = _lookup(key, tensor, src_state, src_cfg, tgt_cfg, idx, src_moe, copy_prototypes)
        if found is None:
            report.fresh.append(key)
            continue
        origin, value = found
        if tuple(value.shape) != tuple(tensor.shape):
            report.fresh.append(key)
            continue
        new_state[key] = value.to(tensor.dtype)
        report.copied[key] = origin
    target.load_state_dict(new_state, strict=False)
    return report


def _lookup(key: str, tensor: torch.Tensor, src: dict[str, torch.Tensor], src_cfg: PoseBHConfig,
            tgt_cfg: PoseBHConfig, idx: dict[str, int], src_moe: bool, copy_prototypes: bool
            ) -> tuple[str, torch.Tensor] | None:
    expert = _EXPERT.match(key)
    if expert:
        e = idx[tgt_cfg.dataset_names[int(expert.group(2))]]
        name = f"{expert.group(1)}.experts.{e}.{expert.group(3)}"
        return (name, src[name]) if name in src else None
    fc2 = _FC2.match(key)
    if fc2 and tgt_cfg.backbone_config.num_experts == 1 and src_moe:
        e = idx[tgt_cfg.dataset_names[0]]
        shared, part = f"{key}", f"{fc2.group(1)}.experts.{e}.{fc2.group(2)}"
        if shared in src and part in src:
            return f"cat({shared}, {part})", torch.cat([src[shared], src[part]], dim=0)
        return None
    head = _HEAD.match(key)
    if head:
        d = idx[tgt_cfg.dataset_names[int(head.group(1))]]
        name = f"heads.{d}.{head.group(2)}"
        return (name, src[name]) if name in src else None
    if key == "keypoint_prototypes.prototypes":
        return _prototype_rows(tensor, src, src_cfg, tgt_cfg) if copy_prototypes else None
    if key == "keypoint_prototypes.cluster_prototypes":
        return None  # rebuilt by K-means when the cluster stage starts
    return (key, src[key]) if key in src else None


def _prototype_rows(tensor: torch.Tensor, src: dict[str, torch.Tensor], src_cfg: PoseBHConfig,
                    tgt_cfg: PoseBHConfig) -> tuple[str, torch.Tensor] | None:
    """Rows of skeletons present (same name, same K) in the source; other rows keep their fresh init."""
    bank = src.get("keypoint_prototypes.prototypes")
    if bank is None or bank.shape[1:] != tensor.shape[1:]:
        return None
    out, copied = tensor.clone(), []
    src_offsets, tgt_offsets = src_cfg.prototype_offsets, tgt_cfg.prototype_offsets
    for name, (start, stop) in tgt_offsets.items():
        if name in src_offsets and src_offsets[name][1] - src_offsets[name][0] == stop - start:
            s0, s1 = src_offsets[name]
            out[start:stop] = bank[s0:s1]
            copied.append(name)
    return (f"prototypes of {copied}", out) if copied else None


def build_model(cfg: TrainConfig, skeletons: dict[str, Skeleton]) -> tuple[PoseBHForPoseEstimation, str]:
    """The model to train and a one-line description of its initialisation.

    Args:
        cfg: the run config (mode, model section, dataset order).
        skeletons: name -> skeleton of every configured dataset.
    """
    model, text = _build(cfg, skeletons)
    if cfg.model.grouped_experts:
        from ..modeling.fast_backbone import enable_grouped_experts

        enable_grouped_experts(model, cache_merged_weights=False)  # weights change every step while training
    if cfg.model.activation_checkpointing:
        _enable_activation_checkpointing(model)
    return model, text


def _enable_activation_checkpointing(model: PoseBHForPoseEstimation) -> None:
    """Checkpoint every backbone block (transformers >= 5.x name, with the older one as a fallback)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:  # pragma: no cover - older transformers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _build(cfg: TrainConfig, skeletons: dict[str, Skeleton]) -> tuple[PoseBHForPoseEstimation, str]:
    if cfg.model.init is None:
        model = PoseBHForPoseEstimation(_target_config(cfg, skeletons, None))
        return model, f"built from scratch ({cfg.model.variant})"
    if cfg.model.init.startswith(TIMM_PREFIX):
        return _build_from_timm(cfg, skeletons, cfg.model.init[len(TIMM_PREFIX):])
    try:
        source = PoseBHForPoseEstimation.from_pretrained(cfg.model.init, revision=cfg.model.revision)
    except (OSError, ValueError) as err:
        raise ConfigError(f"model.init: cannot load {cfg.model.init!r}: {err}") from None
    model = PoseBHForPoseEstimation(_target_config(cfg, skeletons, source.config))
    fallback = cfg.transfer.source_dataset if cfg.mode == "transfer" else None
    init_map = dict(cfg.model.init_map)
    if cfg.mode == "transfer":
        init_map.setdefault(cfg.dataset_names[0], cfg.transfer.source_dataset)
    report = transplant(source, model, init_map=init_map, fallback=fallback,
                        copy_prototypes=cfg.mode == "posebh", source_name=cfg.model.init)
    return model, report.summary()


def _build_from_timm(cfg: TrainConfig, skeletons: dict[str, Skeleton], name: str
                     ) -> tuple[PoseBHForPoseEstimation, str]:
    """`model.init: timm:NAME_OR_FOLDER`: the backbone from a timm ViT (pretrained weights through timm's cache;
    `conversion.timm`), converted at the run's input size with one expert per configured dataset; heads,
    embedding head and prototypes start fresh."""
    from ..conversion import ConversionError
    from ..conversion.timm import timm_to_posebh_model

    backbone_over, _ = _split_overrides(dict(cfg.model.config_overrides))
    image_size = backbone_over.pop("image_size", [256, 192])
    patch = backbone_over.pop("patch_size", [16, 16])
    patch = int(patch if isinstance(patch, int) else patch[0])
    try:
        source, report = timm_to_posebh_model(name, cfg.dataset_names, image_size=image_size, patch_size=patch,
                                              seed=cfg.seed)
    except ConversionError as err:
        raise ConfigError(f"model.init: cannot start from timm model {name!r}: {err}") from None
    model = PoseBHForPoseEstimation(_target_config(cfg, skeletons, source.config))
    missing, unexpected = model.backbone.load_state_dict(source.backbone.state_dict(), strict=False)
    if missing or unexpected:
        raise ConfigError(f"model.init: the converted timm backbone does not fit the configured model (missing "
                          f"{missing[:5]}, unexpected {unexpected[:5]}); check model.config_overrides")
    return model, f"backbone from timm {name} ({report.config_summary}); heads, embedding head and prototypes fresh"
