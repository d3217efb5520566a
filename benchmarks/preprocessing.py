"""P2: top-down preprocessing (images + boxes -> normalised crops [N, 3, 256, 192]), crops/s.

    PoseBHImageProcessor       OpenCV warpAffine (UDP matrix, bilinear) per box, normalisation in torch
    VitPoseImageProcessorPil   transformers' reference: scipy.ndimage.affine_transform per channel. Without
                               torchvision (this project's default install) `VitPoseImageProcessor` resolves to
                               this class too.

Inputs: the demo photos of ../shared/data/examples when present (else synthetic 640x480 images), as PIL images,
each with --boxes-per-image random boxes (seeded; partly outside the image sometimes, as detector boxes are).
Both processors get the same PIL images and boxes in one call per round; rounds alternate the order, and the
table gives the median crops/s and the median per-round speed ratio. The crops are compared in [0, 1] pixel units
(normalisation undone): mean and max |difference| per pixel.

    python benchmarks/preprocessing.py [--boxes-per-image 4] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine_info import cpu_name
from PIL import Image
from transformers import VitPoseImageProcessorPil

from posebh_hf.processing_posebh import PoseBHImageProcessor

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "examples"


def load_images(folder: Path, seed: int) -> tuple[list[Image.Image], str]:
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}) \
        if folder.is_dir() else []
    if files:
        return [Image.open(p).convert("RGB") for p in files], f"{len(files)} photos from {folder}"
    rng = np.random.default_rng(seed)
    # smooth random images (bilinear interpolation is then meaningful, unlike on white noise)
    images = [Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((640, 480),
                                                                                        Image.BILINEAR)
              for _ in range(10)]
    return images, "10 synthetic 640x480 images"


def random_boxes(images: list[Image.Image], per_image: int, seed: int) -> list[list[list[float]]]:
    """xywh boxes, 10-80 % of the image side, centres anywhere in the image (so some stick out)."""
    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        width, height = image.size
        boxes = []
        for _ in range(per_image):
            w, h = rng.uniform(0.1, 0.8) * width, rng.uniform(0.1, 0.8) * height
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            boxes.append([float(cx - w / 2), float(cy - h / 2), float(w), float(h)])
        out.append(boxes)
    return out


def crop_difference(a: torch.Tensor, b: torch.Tensor, std: list[float]) -> tuple[float, float]:
    """mean and max |a - b| in [0, 1] pixel units (normalised values times the per-channel std)."""
    diff = (a - b).abs() * torch.tensor(std).view(1, 3, 1, 1)
    return float(diff.mean()), float(diff.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes-per-image", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (OpenCV keeps its default)")
    parser.add_argument("--images", type=Path, default=EXAMPLES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    images, source = load_images(args.images, args.seed)
    boxes = random_boxes(images, args.boxes_per_image, args.seed)
    crops = sum(len(b) for b in boxes)
    ours, reference = PoseBHImageProcessor(), VitPoseImageProcessorPil()
    candidates = {
        "transformers VitPoseImageProcessorPil": lambda: reference(images, boxes=boxes,
                                                                   return_tensors="pt").pixel_values,
        "posebh PoseBHImageProcessor": lambda: ours(images, boxes).pixel_values,
    }
    outputs = {name: fn() for name, fn in candidates.items()}  # warm-up + the crops compared below
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(args.repeats):
        for name in names[r % 2:] + names[: r % 2]:
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
    mean_diff, max_diff = crop_difference(outputs[names[1]], outputs[names[0]], ours.image_std)
    import cv2
    import transformers

    print(f"\nP2 preprocessing, {platform.machine()} {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads "
          f"{args.threads}, OpenCV threads {cv2.getNumThreads()}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, opencv {cv2.__version__}, numpy {np.__version__}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"input: {source}, {args.boxes_per_image} boxes each = {crops} crops of 256x192 per call, "
          f"{args.repeats} rounds")
    print("| processor | crops/s | x transformers | mean abs diff (0-1 px) | max abs diff |")
    print("|---|---|---|---|---|")
    for name in names:
        ratios = [t_ref / t for t_ref, t in zip(times[names[0]], times[name], strict=True)]
        rate = crops / statistics.median(times[name])
        diff = "-" if name == names[0] else f"{mean_diff:.4f}"
        peak = "-" if name == names[0] else f"{max_diff:.3f}"
        print(f"| {name} | {rate:.0f} | {statistics.median(ratios):.1f} | {diff} | {peak} |")


if __name__ == "__main__":
    main()
