"""PoseBHImageProcessor's crops (OpenCV warpAffine, no scipy) against transformers' VitPoseImageProcessorPil
(scipy affine_transform): on average within 1/255 per pixel, on synthetic and on real photos."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from posebh_hf.processing_posebh import PoseBHImageProcessor

# boxes inside, partly outside (left / bottom-right), tiny, and wider than tall
BOXES = [[100.0, 50.0, 300.0, 400.0], [-60.0, 200.0, 220.0, 260.0], [500.0, 330.0, 250.0, 200.0],
         [320.0, 100.0, 12.0, 30.0], [40.0, 300.0, 420.0, 90.0]]


def smooth_image(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """Random but smooth colours (bilinear upsampling of a coarse grid) plus a few sharp edges."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).resize((width, height),
                                                                                      Image.BILINEAR)
    array = np.array(image)
    array[height // 3: height // 3 + 40, :, :] = rng.integers(0, 256, 3)  # a hard-edged band
    return Image.fromarray(array)


def pixel_difference(ours: torch.Tensor, reference: torch.Tensor, std: list[float]) -> torch.Tensor:
    """|difference| per pixel in [0, 1] units (normalisation undone), [N, 3, H, W]."""
    return (ours - reference).abs() * torch.tensor(std).view(1, 3, 1, 1)


def reference_crops(images: list[Image.Image], boxes: list[list[list[float]]]) -> torch.Tensor:
    pytest.importorskip("scipy")  # transformers' processor needs it at call time (ours does not)
    from transformers import VitPoseImageProcessorPil

    return VitPoseImageProcessorPil()(images, boxes=boxes, return_tensors="pt").pixel_values


def check_parity(images: list[Image.Image], boxes: list[list[list[float]]]) -> torch.Tensor:
    processor = PoseBHImageProcessor()
    ours = processor(images, boxes).pixel_values
    reference = reference_crops(images, boxes)
    assert ours.shape == reference.shape == (sum(len(b) for b in boxes), 3, 256, 192)
    assert ours.dtype == torch.float32
    diff = pixel_difference(ours, reference, processor.image_std)
    per_crop = diff.flatten(1).mean(dim=1)
    assert per_crop.max() <= 1 / 255, f"mean |diff| per crop {per_crop.tolist()} exceeds 1/255"
    return diff


def test_crops_match_transformers_on_synthetic_images():
    images = [smooth_image(0), smooth_image(1, 333, 517)]
    boxes = [BOXES, [[10.0, 20.0, 200.0, 450.0], [150.0, 0.0, 183.0, 517.0]]]
    diff = check_parity(images, boxes)
    assert diff.mean() <= 0.5 / 255  # typical agreement is far inside the bound
    # the comparison is sensitive: a crop shifted by one pixel breaks the bound
    processor = PoseBHImageProcessor()
    shifted = processor(images[:1], [[[b[0] + 1.0, b[1], b[2], b[3]] for b in BOXES]]).pixel_values
    moved = pixel_difference(shifted, reference_crops(images[:1], [BOXES]), processor.image_std)
    assert moved.flatten(1).mean(dim=1).max() > 1 / 255


def test_crops_match_transformers_on_photos():
    folder = shared_path("examples")
    names = ["coco_000000442450_people_dog.jpg", "coco_000000214753_horse_riders.jpg", "zidane.jpg"]
    images = [Image.open(folder / name).convert("RGB") for name in names]
    boxes = [[[x * im.width, y * im.height, w * im.width, h * im.height]
              for x, y, w, h in ((0.1, 0.1, 0.3, 0.8), (0.5, 0.2, 0.45, 0.7), (-0.1, 0.6, 0.3, 0.5))]
             for im in images]
    check_parity(images, boxes)


def test_preprocessing_does_not_need_scipy(tmp_path):
    """Our crops work with scipy made unimportable (transformers' VitPose processors need it)."""
    code = (
        "import sys; sys.modules['scipy'] = None; sys.modules['scipy.ndimage'] = None\n"
        "import numpy as np\n"
        "from posebh_hf.processing_posebh import PoseBHImageProcessor\n"
        "image = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)\n"
        "out = PoseBHImageProcessor()(image, [[[10, 10, 50, 80]]]).pixel_values\n"
        "assert tuple(out.shape) == (1, 3, 256, 192), out.shape\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
