"""Numeric parity of a converted model against transformers' `VitPoseForPoseEstimation` (layer 3)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import VitPoseForPoseEstimation

from ..modeling import PoseBHForPoseEstimation
from .common import ConversionError

__all__ = ["PARITY_TOLERANCE", "format_parity", "vitpose_parity"]

PARITY_TOLERANCE = 1e-5  # fp32 max abs difference accepted for heatmaps


@torch.no_grad()
def vitpose_parity(src: str | Path, model: PoseBHForPoseEstimation, batch_size: int = 2, seed: int = 0
                   ) -> dict[int, float]:
    """Max |heatmap difference| per dataset_index between the ViTPose folder `src` and the converted `model`.

    One random fp32 batch holds `batch_size` samples per expert e (dataset_index = e for those samples; only 0 for
    a plain ViTPose), so both models run once with mixed routing. transformers' heatmaps are compared with the
    converted model's first head (`heatmaps[dataset_names[0]]`, the COCO head), separately for each e.
    """
    reference = VitPoseForPoseEstimation.from_pretrained(str(src)).eval()
    model = model.eval()
    first = model.config.dataset_names[0]
    backbone = reference.config.backbone_config
    height, width = (backbone.image_size, backbone.image_size) if isinstance(backbone.image_size, int) \
        else backbone.image_size
    experts = max(1, int(backbone.num_experts))
    index = torch.arange(experts).repeat_interleave(batch_size)  # [E * batch_size]
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(index.numel(), 3, height, width, generator=generator)
    expected = reference(pixel_values, dataset_index=index).heatmaps
    got = model(pixel_values, index, heads=[first]).heatmaps[first]
    if got.shape != expected.shape:
        raise ConversionError(f"heatmap shapes differ: transformers {list(expected.shape)}, PoseBH {list(got.shape)}")
    diff = (got - expected).abs().flatten(1).amax(dim=1)  # [E * batch_size]
    return {e: diff[index == e].max().item() for e in range(experts)}


def format_parity(diffs: dict[int, float], names: list[str] | None = None) -> str:
    """One line per dataset_index: `dataset_index=e [expert name] heatmaps['coco'] max|diff| = x`."""
    head = repr(names[0]) if names else "first head"
    lines = []
    for index, diff in diffs.items():
        label = f" [{names[index]} expert]" if names and index < len(names) else ""
        lines.append(f"  dataset_index={index}{label} heatmaps[{head}]: max|diff| = {diff:.3e}")
    return "\n".join(lines)
