"""`PoseBHImageProcessor` (layer 3): images + person/animal boxes -> crops; heatmaps -> image-space keypoints.

Crops follow the top-down protocol of the official code: each COCO box `[x, y, w, h]` becomes (center, scale) with
padding 1.25 and the input aspect ratio (192:256), and is warped with OpenCV (`warpAffine`, bilinear) using the UDP
matrix (or the classic one for datasets decoded the "default" way). Heatmap geometry (decoding, mapping back) is the
codec's; this class only routes boxes and modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_base import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .codecs import HeatmapCodec
from .geometry import box_to_center_scale, get_affine_matrix, get_udp_warp_matrix, warp_crop

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DECODE_MODES = ("udp", "default")
# Decoding used by the released evaluation configs (spec 6.3): UDP+DARK for COCO and MPII, plain elsewhere.
RELEASED_DECODING = {"coco": "udp", "mpii": "udp"}


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or an array (H, W, 3 / H, W / H, W, 4) as a contiguous RGB uint8 array [H, W, 3]."""
    if isinstance(image, Image.Image):
        # np.asarray reads an RGB image's buffer once; convert("RGB") would copy it first
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got an array of shape {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[:, :, :3])


def validate_boxes(boxes: Sequence[Sequence[float]], width: int, height: int, where: str = "image") -> np.ndarray:
    """Boxes [N, 4] xywh as float32; NaN, non-positive sizes and boxes entirely outside the image are refused."""
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4))
    for i, (x, y, w, h) in enumerate(array):
        if not np.all(np.isfinite([x, y, w, h])):
            raise ValueError(f"box {i} of {where} has a non-finite value: {[x, y, w, h]}")
        if w <= 0 or h <= 0:
            raise ValueError(f"box {i} of {where} has a non-positive size: w={w}, h={h}")
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise ValueError(f"box {i} of {where} [{x}, {y}, {w}, {h}] lies outside the {width}x{height} image")
    return array.astype(np.float32)


class PoseBHImageProcessor(BaseImageProcessor):
    """Top-down crops and keypoint post-processing for PoseBH models.

    Args:
        size: crop size `{"height": 256, "width": 192}`.
        padding: box context factor (1.25).
        image_mean / image_std: normalisation after scaling to [0, 1] (ImageNet).
        heatmap_size: `{"height": 64, "width": 48}`.
        decoding: skeleton name -> "udp" | "default"; skeletons not listed use `default_decoding`.
        default_decoding: "udp" (models trained by this package) unless the model says otherwise.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: dict[str, int] | None = None,
        padding: float = 1.25,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        heatmap_size: dict[str, int] | None = None,
        decoding: dict[str, str] | None = None,
        default_decoding: str = "udp",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.size = dict(size or {"height": 256, "width": 192})
        self.padding = float(padding)
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.heatmap_size = dict(heatmap_size or {"height": self.size["height"] // 4, "width": self.size["width"] // 4})
        self.decoding = dict(decoding or {})
        self.default_decoding = default_decoding
        for mode in [default_decoding, *self.decoding.values()]:
            if mode not in DECODE_MODES:
                raise ValueError(f"decoding mode must be one of {DECODE_MODES}, got {mode!r}")

    # ------------------------------------------------------------------------------------------------ preprocessing
    @property
    def input_size(self) -> tuple[int, int]:
        return self.size["width"], self.size["height"]

    def decoding_for(self, skeleton_name: str) -> str:
        return self.decoding.get(skeleton_name, self.default_decoding)

    def codec_for(self, skeleton_name: str, heatmap_size: tuple[int, int]) -> HeatmapCodec:
        """The codec that decodes and flips back skeleton `skeleton_name`'s heatmaps of size (W, H) cut from this
        processor's crops (the same table as the model's `config.codec_for`; the pipeline keeps them in sync)."""
        return HeatmapCodec(input_size=self.input_size, heatmap_size=(int(heatmap_size[0]), int(heatmap_size[1])),
                            use_udp=self.decoding_for(skeleton_name) == "udp")

    def boxes_to_center_scale(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, 4] xywh -> center [N, 2], scale [N, 2] (pixel_std units)."""
        width, height = self.input_size
        return box_to_center_scale(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), width / height, self.padding)

    def crop_matrices(self, boxes: np.ndarray, udp: bool = True) -> list[np.ndarray]:
        """[N, 4] xywh boxes -> N image-to-crop [2, 3] matrices."""
        centers, scales = self.boxes_to_center_scale(boxes)
        warp_matrix = get_udp_warp_matrix if udp else get_affine_matrix
        return [warp_matrix(center, scale * 200.0, 0.0, self.input_size) for center, scale in zip(centers, scales,
                                                                                                strict=True)]

    def crop(self, image: np.ndarray, box: Sequence[float], udp: bool = True) -> np.ndarray:
        """One RGB uint8 crop [H, W, 3] of `box` (xywh)."""
        return warp_crop(image, self.crop_matrices(np.asarray([box]), udp)[0], self.input_size)

    def normalize_crops(self, crops: np.ndarray) -> torch.Tensor:
        """[N, H, W, 3] uint8 -> [N, 3, H, W] float32, scaled to [0, 1] and normalised."""
        # One pass converts uint8 HWC to float CHW, then an in-place multiply and add:
        # (x / 255 - mean) / std == x * (1 / (255 std)) + (-mean / std). ~2-3x faster than permuting floats.
        source = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)
        tensor = torch.empty(source.shape, dtype=torch.float32).copy_(source)
        std = torch.tensor(self.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(self.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        return tensor.mul_(1.0 / (255.0 * std)).add_(-mean / std)

    def __call__(self, images: Any, boxes: Sequence[Sequence[Sequence[float]]], udp: bool = True,
                 return_tensors: str = "pt") -> BatchFeature:
        """images (one or a list) + boxes per image (lists of xywh) -> `pixel_values` [total_boxes, 3, H, W]."""
        image_list = images if isinstance(images, (list, tuple)) else [images]
        if len(boxes) != len(image_list):
            raise ValueError(f"got {len(image_list)} images but boxes for {len(boxes)}; pass one list of boxes per image")
        jobs = []  # (image array, image-to-crop matrix) per box, validated before any warping
        for i, (image, image_boxes) in enumerate(zip(image_list, boxes, strict=True)):
            array = to_rgb_array(image)
            valid = validate_boxes(image_boxes, array.shape[1], array.shape[0], where=f"image {i}")
            jobs.extend((array, matrix) for matrix in self.crop_matrices(valid, udp))
        width, height = self.input_size
        crops = np.empty((len(jobs), height, width, 3), np.uint8)
        for crop, (array, matrix) in zip(crops, jobs, strict=True):
            warp_crop(array, matrix, self.input_size, out=crop)  # straight into the batch: no per-crop copy + stack
        return BatchFeature({"pixel_values": self.normalize_crops(crops)}, tensor_type=return_tensors)

    # ------------------------------------------------------------------------------------------------ postprocessing
    def keypoints_from_heatmaps(self, heatmaps: np.ndarray | torch.Tensor, boxes: np.ndarray,
                                skeleton_name: str) -> tuple[np.ndarray, np.ndarray]:
        """heatmaps [N, K, h, w] of N boxes [N, 4] -> keypoints [N, K, 2] image pixels, scores [N, K]."""
        if isinstance(heatmaps, torch.Tensor):
            heatmaps = heatmaps.detach().float().cpu().numpy()
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        codec = self.codec_for(skeleton_name, (heatmaps.shape[-1], heatmaps.shape[-2]))
        center, scale = self.boxes_to_center_scale(boxes)
        return codec.decode_to_image(heatmaps, center, scale)

    def post_process_pose_estimation(self, outputs: Any, boxes: Sequence[Sequence[Sequence[float]]],
                                     dataset: str) -> list[list[dict[str, np.ndarray]]]:
        """Per image, per box: `keypoints` [K, 2] (image pixels), `scores` [K], `bbox` (the box as given).

        `outputs.heatmaps[dataset]` must hold the heatmaps of all boxes in the order they were cropped.
        """
        heatmaps = outputs.heatmaps[dataset] if hasattr(outputs, "heatmaps") else outputs[dataset]
        flat = [np.asarray(b, dtype=np.float32) for image_boxes in boxes for b in image_boxes]
        if len(flat) != heatmaps.shape[0]:
            raise ValueError(f"{len(flat)} boxes given for {heatmaps.shape[0]} heatmaps")
        keypoints, scores = self.keypoints_from_heatmaps(heatmaps, np.asarray(flat).reshape(-1, 4), dataset)
        results, i = [], 0
        for image_boxes in boxes:
            per_image = []
            for box in image_boxes:
                per_image.append({"keypoints": keypoints[i], "scores": scores[i], "bbox": np.asarray(box, np.float32)})
                i += 1
            results.append(per_image)
        return results


def _register_image_processor() -> None:
    """`AutoImageProcessor.from_pretrained` on a PoseBH folder (idempotent; run when this module is imported)."""
    from transformers import AutoImageProcessor  # noqa: PLC0415

    from .configuration_posebh import PoseBHConfig  # noqa: PLC0415

    AutoImageProcessor.register(PoseBHConfig, slow_image_processor_class=PoseBHImageProcessor, exist_ok=True)


_register_image_processor()
