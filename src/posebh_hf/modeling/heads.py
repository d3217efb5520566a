"""Per-dataset heatmap heads (spec §2.3). Key names follow transformers' `VitPoseClassicDecoder` /
`VitPoseSimpleDecoder` (`deconv1`, `batchnorm1`, `deconv2`, `batchnorm2`, `conv`), so ViTPose checkpoints map 1:1.

Symbols: B batch, C backbone width, h x w token grid (16 x 12), K_d keypoints, H x W heatmap (64 x 48).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DeconvUpsampler", "HeatmapHead", "SimpleHeatmapHead"]


class DeconvUpsampler(nn.Module):
    """Two x2 upsampling blocks: ConvTranspose2d(4x4, stride 2, pad 1, no bias) -> BatchNorm2d -> ReLU, twice.

    Shared by the heatmap heads and the embedding head (the official code uses the same upsampler in both).
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.deconv1 = nn.ConvTranspose2d(in_channels, channels, kernel_size=4, stride=2, padding=1, bias=False)
        self.batchnorm1 = nn.BatchNorm2d(channels)
        self.deconv2 = nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1, bias=False)
        self.batchnorm2 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def upsample(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> [B, channels, 4h, 4w]."""
        hidden = self.act(self.batchnorm1(self.deconv1(features)))
        return self.act(self.batchnorm2(self.deconv2(hidden)))


class HeatmapHead(DeconvUpsampler):
    """Classic ViTPose / PoseBH head: the deconv upsampler, then a 1x1 conv (with bias) to K_d raw heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int, channels: int = 256) -> None:
        super().__init__(in_channels, channels)
        self.conv = nn.Conv2d(channels, num_keypoints, kernel_size=1, stride=1, padding=0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> raw heatmaps [B, K_d, 4h, 4w] (no activation)."""
        return self.conv(self.upsample(features))


class SimpleHeatmapHead(nn.Module):
    """ViTPose "simple" head: ReLU -> bilinear x`scale_factor` upsampling -> 3x3 conv to K_d heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int, scale_factor: int = 4) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.upsampling = nn.Upsample(scale_factor=scale_factor, mode="bilinear", align_corners=False)
        self.conv = nn.Conv2d(in_channels, num_keypoints, kernel_size=3, stride=1, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> raw heatmaps [B, K_d, s*h, s*w]."""
        return self.conv(self.upsampling(self.act(features)))
