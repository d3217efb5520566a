"""The ViTPose(++) backbone: transformers' `VitPoseBackbone` (MoE MLP routed by `dataset_index`, spec §2.2).

Symbols: B batch, N = h * w tokens, C width, h x w token grid (16 x 12 for 256 x 192 input).

The model only talks to the backbone through `build_backbone` and `backbone_feature_map`, so a faster
implementation with the same parameter names (e.g. one that evaluates only the selected expert) can be swapped in
here without touching checkpoints or heads.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import VitPoseBackbone, VitPoseBackboneConfig
from transformers.modeling_outputs import BackboneOutput

__all__ = ["backbone_feature_map", "build_backbone", "token_grid"]


def build_backbone(config: VitPoseBackboneConfig) -> VitPoseBackbone:
    """A randomly initialised ViTPose(++) backbone (weights come from the checkpoint when loading)."""
    return VitPoseBackbone(config)


def token_grid(config: VitPoseBackboneConfig) -> tuple[int, int]:
    """(h, w) of the token grid: image size // patch size per axis."""
    image_h, image_w = _pair(config.image_size)
    patch_h, patch_w = _pair(config.patch_size)
    return image_h // patch_h, image_w // patch_w


def backbone_feature_map(backbone: VitPoseBackbone, pixel_values: torch.Tensor, dataset_index: torch.Tensor,
                         **kwargs: Any) -> tuple[torch.Tensor, BackboneOutput]:
    """Run the backbone and reshape its last output feature [B, N, C] to a map [B, C, h, w].

    `dataset_index` [B] (long) routes every sample through its expert; ignored by a plain (1-expert) backbone.
    Extra kwargs (`output_hidden_states`, `output_attentions`) go to the backbone.
    """
    outputs: BackboneOutput = backbone(pixel_values, dataset_index=dataset_index, **kwargs)
    tokens = outputs.feature_maps[-1]  # [B, N, C]
    grid_h, grid_w = token_grid(backbone.config)
    features = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid_h, grid_w).contiguous()  # [B, C, h, w]
    return features, outputs


def _pair(value: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])
