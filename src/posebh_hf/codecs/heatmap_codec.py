"""``HeatmapCodec``: one object holding a dataset's heatmap geometry (sizes, sigma, UDP or not, blur kernel)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..geometry import PIXEL_STD
from .decode import decode_heatmaps
from .encode import encode_heatmaps
from .flip import flip_back_heatmaps, flip_back_heatmaps_torch
from .projection import heatmap_to_image
from .torch_codec import decode_heatmaps_torch, encode_heatmaps_torch


@dataclass(frozen=True)
class HeatmapCodec:
    """Encode/decode Gaussian heatmaps for one dataset protocol (spec 5.6, 6.2, 6.4).

    ``use_udp=True`` (COCO, MPII): UDP targets, argmax + DARK/UDP decoding, ``size - 1`` back-projection, no
    flip shift. ``use_udp=False`` (AIC, AP-10K, APT-36K, WholeBody, OCHuman): MSRA targets, argmax +-0.25
    decoding, ``size`` back-projection, flip-back shifted by one pixel.

    Attributes:
        input_size: crop ``(W_in, H_in)``.
        heatmap_size: ``(W, H)``.
        sigma: target Gaussian sigma (heatmap pixels).
        use_udp: see above.
        blur_kernel: DARK blur kernel (odd).
    """

    input_size: tuple[int, int] = (192, 256)
    heatmap_size: tuple[int, int] = (48, 64)
    sigma: float = 2.0
    use_udp: bool = True
    blur_kernel: int = 11

    @property
    def encoding(self) -> str:
        """Target mode: ``"udp"`` or ``"msra"``."""
        return "udp" if self.use_udp else "msra"

    @property
    def decoding(self) -> str:
        """Decode mode: ``"udp"`` or ``"default"``."""
        return "udp" if self.use_udp else "default"

    @property
    def shift_heatmap(self) -> bool:
        """Whether flip-back shifts by one pixel (mmpose ``shift_heatmap``; off with UDP)."""
        return not self.use_udp

    def encode(self, keypoints: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[K, 2]`` crop-pixel keypoints + ``[K]`` visibility -> targets ``[K, H, W]``, weights ``[K]`` (float32)."""
        return encode_heatmaps(
            keypoints, visibility, self.input_size, self.heatmap_size, self.sigma, self.encoding
        )

    def encode_torch(
        self, keypoints: torch.Tensor, visibility: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, K, 2]`` crop-pixel keypoints + ``[B, K]`` -> ``[B, K, H, W]``, ``[B, K]``."""
        return encode_heatmaps_torch(
            keypoints, visibility, self.heatmap_size, self.input_size, self.sigma, self.encoding
        )

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[N, K, H, W]`` -> heatmap-pixel coords ``[N, K, 2]`` and scores ``[N, K]``."""
        return decode_heatmaps(heatmaps, self.decoding, self.blur_kernel)

    def decode_torch(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Torch twin of :meth:`decode`."""
        return decode_heatmaps_torch(heatmaps, self.decoding, self.blur_kernel)

    def to_image(
        self, coords: np.ndarray, center: np.ndarray, scale: np.ndarray, pixel_std: float = PIXEL_STD
    ) -> np.ndarray:
        """Heatmap-pixel ``[N, K, 2]`` -> image pixels given ``center`` ``[N, 2]`` and ``scale`` ``[N, 2]`` (200-px units)."""
        return heatmap_to_image(coords, center, scale, self.heatmap_size, self.use_udp, pixel_std)

    def decode_to_image(
        self, heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode ``[N, K, H, W]`` and map to image pixels: ``coords`` ``[N, K, 2]``, ``scores`` ``[N, K]``."""
        coords, scores = self.decode(heatmaps)
        return self.to_image(coords, center, scale), scores

    def flip_back(self, heatmaps: np.ndarray, flip_indices: Sequence[int]) -> np.ndarray:
        """Flip-back ``[N, K, H, W]`` heatmaps of the mirrored crop (shifted when not UDP)."""
        return flip_back_heatmaps(heatmaps, flip_indices, self.shift_heatmap)

    def flip_back_torch(self, heatmaps: torch.Tensor, flip_indices: Sequence[int]) -> torch.Tensor:
        """Torch twin of :meth:`flip_back`."""
        return flip_back_heatmaps_torch(heatmaps, flip_indices, self.shift_heatmap)
