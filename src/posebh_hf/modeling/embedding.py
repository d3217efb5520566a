"""The keypoint embedding heads: backbone map [B, C, h, w] -> raw (un-normalised) embedding map [B, D, 4h, 4w].

`EmbeddingHead` ("KptProtoHead" in the official code, spec §2.4; `embedding_head_type="deconv"`):
deconv upsampler (ReLU) -> residual neck (deconv channels -> E, SiLU) -> conv3x3-BN-SiLU -> conv1x1 to D.
E = `embedding_channels` (64), D = `embed_dim` (64).

`LinearEmbeddingHead` (`embedding_head_type="linear"`, ours): a 1x1 conv to D, centred per image, bilinearly
upsampled x4.
L2 normalisation happens in the prototype module for both.
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import DeconvUpsampler

__all__ = ["EmbeddingHead", "LinearEmbeddingHead", "ResidualNeck"]


class ResidualNeck(nn.Module):
    """One basic residual block, in -> out channels, with a 1x1 conv + BN shortcut (official `neck_type='res'`).

    main: conv3x3 (bias) -> BN -> SiLU -> conv3x3 (bias) -> BN; shortcut: conv1x1 (no bias) -> BN;
    output = SiLU(main + shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True)
        self.batchnorm1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=True)
        self.batchnorm2 = nn.BatchNorm2d(out_channels)
        self.shortcut_conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.shortcut_batchnorm = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] -> [B, out, H, W]."""
        main = self.act(self.batchnorm1(self.conv1(hidden)))
        main = self.batchnorm2(self.conv2(main))
        shortcut = self.shortcut_batchnorm(self.shortcut_conv(hidden))
        return self.act(main + shortcut)


class EmbeddingHead(DeconvUpsampler):
    """Deconv upsampler + residual neck + conv3x3-BN-SiLU-conv1x1 projection to D channels."""

    def __init__(self, in_channels: int, deconv_channels: int = 256, channels: int = 64, embed_dim: int = 64) -> None:
        super().__init__(in_channels, deconv_channels)
        self.neck = ResidualNeck(deconv_channels, channels)
        self.proj_conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)
        self.proj_batchnorm = nn.BatchNorm2d(channels)
        self.proj_act = nn.SiLU()
        self.out_conv = nn.Conv2d(channels, embed_dim, kernel_size=1, bias=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> raw embeddings [B, D, 4h, 4w]."""
        hidden = self.neck(self.upsample(features))
        hidden = self.proj_act(self.proj_batchnorm(self.proj_conv(hidden)))
        return self.out_conv(hidden)


class LinearEmbeddingHead(nn.Module):
    """A 1x1 conv (no bias) from the backbone's C channels to D, minus its mean over the image's pixels, then
    bilinear x4 upsampling.

    Why: prototypes of a skeleton the model never trained on can only be as good as the embedding they are matched
    in. Measured on `dlc_reaching` (docs/mdt_mini.md section 3), prototypes fitted to the backbone map itself, or to a
    random linear image of it, find the new keypoints about as well as a new heatmap head, while the deconv head's
    non-linear map loses most of that. A linear head keeps the backbone's geometry (up to a linear map it learns).
    Centring removes what every pixel of an image shares, so cosines compare a pixel with the rest of its image
    (measured: class-mean prototypes 78 -> 81, fitted 75 -> 91 on the backbone map); a bias would cancel out.
    The projection commutes with the upsampling, so it runs at backbone resolution (h x w), which is also cheaper.
    """

    upsample_factor = 4  # the deconv head's two stride-2 layers: embeddings stay on the heatmap grid

    def __init__(self, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=1, bias=False)
        self.upsampling = nn.Upsample(scale_factor=self.upsample_factor, mode="bilinear", align_corners=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> raw embeddings [B, D, 4h, 4w]."""
        projected = self.proj(features)
        return self.upsampling(projected - projected.mean(dim=(2, 3), keepdim=True))
