"""Heatmap codecs (layer 1): the only owner of heatmap geometry.

- :func:`encode_heatmaps` (numpy, data workers) / :func:`encode_heatmaps_torch` (batched, CSS pseudo-labels):
  keypoints in input-crop pixels -> Gaussian targets + weights, modes ``"udp"`` and ``"msra"``.
- :func:`decode_heatmaps` / :func:`decode_heatmaps_torch`: heatmaps -> heatmap-pixel coords + scores, modes
  ``"udp"`` (argmax + DARK/UDP refinement) and ``"default"`` (argmax +-0.25).
- :func:`heatmap_to_image` / :func:`image_to_heatmap`: heatmap pixels <-> image pixels for a (center, scale) crop.
- :func:`flip_back_heatmaps` / :func:`flip_back_heatmaps_torch`: flip test channel swap + mirror (+ shift).
- :class:`HeatmapCodec`: all of the above bound to one dataset protocol.
"""

from __future__ import annotations

from .blur import gaussian_blur_heatmaps, opencv_gaussian_kernel, opencv_gaussian_sigma
from .decode import (
    DECODE_MODES,
    decode_heatmaps,
    get_max_preds,
    refine_dark_udp,
    refine_quarter_offset,
)
from .encode import ENCODE_MODES, encode_heatmaps, heatmap_stride
from .flip import flip_back_heatmaps, flip_back_heatmaps_torch
from .heatmap_codec import HeatmapCodec
from .projection import heatmap_to_image, image_to_heatmap
from .torch_codec import (
    decode_heatmaps_torch,
    encode_heatmaps_torch,
    gaussian_blur_torch,
    get_max_preds_torch,
)

__all__ = [
    "DECODE_MODES",
    "ENCODE_MODES",
    "HeatmapCodec",
    "decode_heatmaps",
    "decode_heatmaps_torch",
    "encode_heatmaps",
    "encode_heatmaps_torch",
    "flip_back_heatmaps",
    "flip_back_heatmaps_torch",
    "gaussian_blur_heatmaps",
    "gaussian_blur_torch",
    "get_max_preds",
    "get_max_preds_torch",
    "heatmap_stride",
    "heatmap_to_image",
    "image_to_heatmap",
    "opencv_gaussian_kernel",
    "opencv_gaussian_sigma",
    "refine_dark_udp",
    "refine_quarter_offset",
]
