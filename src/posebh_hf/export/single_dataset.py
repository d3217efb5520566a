"""A plain single-dataset pose network with its expert baked in (layer 4).

ViTPose++'s MoE MLP for dataset e is an ordinary ViT MLP whose `fc2` is the stack of the shared and the expert
projection (spec §2.2):

    fc2_e.weight = [fc2.weight; experts[e].weight]   [C, 4C]        fc2_e.bias = [fc2.bias; experts[e].bias]   [C]

`single_dataset_model(model, "coco")` builds a 1-expert transformers `VitPoseBackbone` holding these merged
weights plus a copy of the dataset's heatmap head: `forward(pixel_values [B, 3, H, W]) -> heatmaps [B, K_d, H/4,
W/4]`, the same numbers as `model(pixel_values, dataset_index=e, heads=[name]).heatmaps[name]` (up to fp32
summation order). It needs no `dataset_index`, runs one plain MLP per layer, and is what `export_onnx` exports.
It is a frozen copy: later changes to `model` do not reach it.

Symbols: B batch, C hidden width, K_d keypoints of the dataset, H x W input size.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import VitPoseBackbone, VitPoseBackboneConfig

from ..modeling import PoseBHForPoseEstimation, backbone_feature_map

__all__ = ["SingleDatasetPoseModel", "merge_expert_state_dict", "single_dataset_model"]

_EXPERT_KEY = ".mlp.experts."


class SingleDatasetPoseModel(nn.Module):
    """Backbone (1 expert, merged weights) + one heatmap head; no routing, no dictionaries in the output."""

    def __init__(self, backbone: VitPoseBackbone, head: nn.Module, dataset_name: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.dataset_name = dataset_name

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the backbone accepts."""
        size = self.backbone.config.image_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, H, W] (normalised crops) -> raw heatmaps [B, K_d, H/4, W/4]."""
        features, _ = backbone_feature_map(self.backbone, pixel_values, None)  # [B, C, h, w]
        return self.head(features)


def merge_expert_state_dict(state_dict: dict[str, torch.Tensor], expert: int) -> dict[str, torch.Tensor]:
    """A ViTPose++ backbone state dict -> the 1-expert (plain ViTPose) state dict of expert `expert`.

    Every `encoder.layer.{i}.mlp.fc2.{weight,bias}` gets the expert's rows appended; `mlp.experts.*` keys are
    dropped; all other keys are kept as they are.
    """
    out = {k: v for k, v in state_dict.items() if _EXPERT_KEY not in k}
    for key in [k for k in out if k.endswith(".mlp.fc2.weight") or k.endswith(".mlp.fc2.bias")]:
        prefix, kind = key.rsplit(".mlp.fc2.", 1)
        expert_key = f"{prefix}{_EXPERT_KEY}{expert}.{kind}"
        if expert_key not in state_dict:
            raise ValueError(f"backbone state dict has {key} but no {expert_key}: is it a ViTPose++ (MoE) backbone "
                             f"with more than {expert} experts?")
        out[key] = torch.cat([state_dict[key], state_dict[expert_key]], dim=0)
    return out


def single_dataset_model(model: PoseBHForPoseEstimation, dataset: str | int) -> SingleDatasetPoseModel:
    """The plain network of one dataset (name or `dataset_index`) of `model`, in eval mode, on `model`'s device."""
    config = model.config
    index = config.dataset_index_of(dataset) if isinstance(dataset, str) else int(dataset)
    if not 0 <= index < config.num_datasets:
        raise ValueError(f"dataset index {index} is out of range for {config.num_datasets} datasets "
                         f"{config.dataset_names}")
    name = config.dataset_names[index]
    source_config = model.backbone.config
    state = {k: v.detach() for k, v in model.backbone.state_dict().items()}
    if int(source_config.num_experts) > 1:
        state = merge_expert_state_dict(state, index)
    plain_config = VitPoseBackboneConfig.from_dict({**source_config.to_dict(), "num_experts": 1})
    plain_config._attn_implementation = source_config._attn_implementation or "sdpa"
    with torch.device("meta"):  # no random init of weights that are overwritten right away
        backbone = VitPoseBackbone(plain_config)
    backbone.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
    head = copy.deepcopy(model.heads[index])
    return SingleDatasetPoseModel(backbone, head, name).eval()
