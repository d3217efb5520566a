"""`PoseBHOutput`, the forward pass result.

Symbols: B batch, K_d keypoints of dataset d, D embedding dim, H x W heatmap size (64 x 48 for 256 x 192 input).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from transformers.utils import ModelOutput

__all__ = ["PoseBHOutput"]


@dataclass
class PoseBHOutput(ModelOutput):
    """Output of `PoseBHForPoseEstimation.forward`.

    Args:
        heatmaps: {dataset_name: raw heatmaps [B, K_d, H, W]} for the requested heads (insertion order = dataset
            order). Every head runs on the whole batch.
        embeddings: raw (un-normalised) embedding map [B, D, H, W], when `output_embeddings=True`.
        prototype_heatmaps: {skeleton_name: [B, K_d, H, W]} fp32 prototype heatmaps in [1e-4, 1 - 1e-4], when
            `output_prototype_heatmaps=True`.
        hidden_states / attentions: from the backbone, when requested through `output_hidden_states` /
            `output_attentions`.
    """

    heatmaps: dict[str, torch.Tensor] | None = None
    embeddings: torch.Tensor | None = None
    prototype_heatmaps: dict[str, torch.Tensor] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    def __post_init__(self) -> None:
        # ModelOutput would treat a dict first field as {field: value} pairs when the other fields are None (and
        # lose `heatmaps`); here every non-None field is simply stored.
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                self[f.name] = value
