"""Optimizer parameter groups with layer-wise lr decay (spec §5.3, mmcv `LayerDecayOptimizerConstructor`).

With L = num_layers + 2: the patch and position embeddings have layer id 0, transformer block i has id i + 1,
everything else (final LayerNorm, heads, embedding head) has id L - 1. A group's lr scale is
rate ** (L - 1 - layer_id) (ViT-B 0.75, ViT-H 0.8), so heads train at the base lr, the last block at 0.75x and the
patch embedding at 0.75**13 x. Weight decay is 0 for 1-D parameters (biases, norms), names ending in ".bias"
and the position embeddings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .config import OptimizerConfig

__all__ = ["build_optimizer", "layer_id", "no_weight_decay", "param_groups"]

# transformers' VitPoseBackbone names (ViTPose++ `blocks.i` -> `encoder.layer.i`, `pos_embed`/`patch_embed` ->
# `embeddings.*`)
_BLOCK = re.compile(r"^backbone\.encoder\.layer\.(\d+)\.")
_EMBEDDINGS = ("backbone.embeddings.",)
_POSITION = ("position_embeddings", "pos_embed")


def layer_id(name: str, num_layers: int) -> int:
    """Layer id of parameter `name` for a backbone with `num_layers` blocks (0 .. num_layers + 1)."""
    if name.startswith(_EMBEDDINGS):
        return 0
    match = _BLOCK.match(name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Biases, 1-D tensors (norm weights) and position embeddings get no weight decay."""
    return param.ndim <= 1 or name.endswith(".bias") or any(p in name for p in _POSITION)


def param_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], *, num_layers: int, lr: float,
                 weight_decay: float, layer_decay: float | None) -> list[dict[str, Any]]:
    """Groups keyed by (layer id, decay / no decay), each with `lr_scale`, `base_lr` and `weight_decay`.

    Every parameter is included, trainable or not: the stage schedule toggles `requires_grad` later, and a
    parameter without a gradient is skipped by (Adam)W (no step, no decay).
    """
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    top = num_layers + 1
    for name, param in named_parameters:
        lid = layer_id(name, num_layers)
        decay = not no_weight_decay(name, param)
        key = (lid, decay)
        if key not in groups:
            scale = 1.0 if layer_decay is None else layer_decay ** (top - lid)
            groups[key] = {"name": f"layer_{lid}_{'decay' if decay else 'no_decay'}", "params": [],
                           "param_names": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr_scale": scale, "base_lr": lr, "lr": lr * scale}
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: nn.Module, config: OptimizerConfig, num_layers: int) -> torch.optim.Optimizer:
    """AdamW (or Adam, no decay, for transfer) over `param_groups` of the model's parameters.

    Buffers (the prototype banks) are not parameters and never reach the optimizer.
    """
    groups = param_groups(model.named_parameters(), num_layers=num_layers, lr=config.lr,
                          weight_decay=config.weight_decay if config.name == "adamw" else 0.0,
                          layer_decay=config.layer_decay)
    for group in groups:  # optimizers reject unknown keys only in their constructor's defaults, not in groups
        group.pop("param_names")
    betas = (float(config.betas[0]), float(config.betas[1]))
    if config.name == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=betas, eps=config.eps, weight_decay=0.0)
    return torch.optim.AdamW(groups, lr=config.lr, betas=betas, eps=config.eps, weight_decay=config.weight_decay)
