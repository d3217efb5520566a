"""Input-pipeline throughput: decode + augment + targets per CPU core, posebh_hf vs a naive numpy/PIL version.

Builds the mdt_mini crop datasets (``../shared/data/mdt_mini/crops/<ds>/<ds>_train.json``, 192x256 JPEGs) with
``posebh_hf.data.build_dataset`` into a temporary folder (not timed), then runs in one process, one thread each
for OpenCV and torch:

- ``posebh_hf``: ``instance_dataset`` per corpus (``box_source="content"``: each crop is its instance's ROI) + ``MixedDataset``, batches of 32 through ``__getitems__`` (what a
  DataLoader worker does), then ``PoseCollator``;
- ``naive``: the same instances, one at a time: PIL decode, PIL flip and affine crop, numpy normalisation, and a
  per-keypoint full-map Gaussian in numpy.

"samples/CPU-s" divides by the process's CPU time (``time.process_time``), i.e. samples per second per core; on a
shared machine it is steadier than wall time, which is printed too.

    python benchmarks/input_pipeline.py [--root ../shared/data/mdt_mini] [--samples 1500] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import datasets
import numpy as np
import torch
from PIL import Image, ImageOps

from posebh_hf.data import (
    ConvertOptions,
    MixedDataset,
    PoseCollator,
    PoseTrainTransform,
    build_dataset,
    instance_dataset,
    load_pose_dataset,
)

DATASETS = ("lspe", "coco_mini", "bee", "mirror_mouse", "dlc_openfield")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def build_all(root: Path, work: Path) -> list[tuple[str, Path]]:
    out = []
    for name in DATASETS:
        folder = root / "crops" / name
        target = work / name
        options = ConvertOptions(skeleton_name=name)
        build_dataset("coco-custom", folder / f"{name}_train.json", folder, target, split="train", options=options,
                      progress=False)
        out.append((name, target))
    return out


def timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    count = fn()
    return count, time.perf_counter() - wall, time.process_time() - cpu


def run_posebh(mixed: MixedDataset, order: np.ndarray, batch_size: int) -> int:
    collate = PoseCollator()
    done = 0
    for start in range(0, len(order), batch_size):
        batch = collate(mixed.__getitems__(order[start:start + batch_size].tolist()))
        done += int(batch["pixel_values"].shape[0])
    return done


# ------------------------------------------------------------------------------------------- naive reference
def naive_sample(image_bytes: bytes, obj: dict, flip_pairs: list, rng: np.random.Generator) -> dict:
    """Per-instance numpy/PIL version of the same steps (flip, scale/rotation, crop, normalise, targets)."""
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    kpts = np.array(obj["keypoints"], dtype=np.float64)
    w, h = image.width / 1.25, image.height / 1.25  # the crop's content, as box_source="content"
    cx, cy = image.width / 2, image.height / 2
    if w > 0.75 * h:
        h = w / 0.75
    else:
        w = h * 0.75
    sw, sh = w * 1.25, h * 1.25
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
        kpts[:, 0] = image.width - 1 - kpts[:, 0]
        for a, b in flip_pairs:
            kpts[[a, b]] = kpts[[b, a]]
        cx = image.width - 1 - cx
    s = float(np.clip(rng.standard_normal() * 0.5 + 1, 0.5, 1.5))
    r = float(np.clip(rng.standard_normal() * 40, -80, 80)) if rng.random() < 0.6 else 0.0
    sw, sh = sw * s, sh * s
    t = math.radians(r)
    sx, sy = 191.0 / sw, 255.0 / sh
    forward = np.array([[math.cos(t) * sx, -math.sin(t) * sx, 0], [math.sin(t) * sy, math.cos(t) * sy, 0], [0, 0, 1]])
    forward[0, 2] = 95.5 - forward[0, 0] * cx - forward[0, 1] * cy
    forward[1, 2] = 127.5 - forward[1, 0] * cx - forward[1, 1] * cy
    inverse = np.linalg.inv(forward)
    crop = image.transform((192, 256), Image.AFFINE, tuple(inverse[:2].reshape(-1)), resample=Image.BILINEAR)
    pixels = ((np.asarray(crop, dtype=np.float64) / 255.0 - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)
    target = np.zeros((len(kpts), 64, 48), np.float32)
    weight = np.zeros(len(kpts), np.float32)
    yy, xx = np.meshgrid(np.arange(64), np.arange(48), indexing="ij")
    for k, (px, py, v) in enumerate(kpts):
        if v <= 0:
            continue
        qx, qy = forward[0, 0] * px + forward[0, 1] * py + forward[0, 2], forward[1, 0] * px + forward[1, 1] * py + forward[1, 2]
        mx, my = qx * 47 / 191, qy * 63 / 255
        if -7 < mx < 55 and -7 < my < 71:
            weight[k] = 1
            target[k] = np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / 8.0)
    return {"pixel_values": pixels, "target": target, "target_weight": weight}


def run_naive(corpora: list, order: list[tuple[int, int, int]]) -> int:
    rng = np.random.default_rng(0)
    for part, row_index, obj_index in order:
        dataset, skeleton = corpora[part]
        row = dataset[row_index]
        naive_sample(row["image"]["bytes"], row["objects"][obj_index], list(skeleton.flip_pairs), rng)
    return len(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mdt_mini")
    parser.add_argument("--samples", type=int, default=1500, help="instances per method (random, all corpora)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="posebh-bench-") as tmp:
        built = build_all(args.root, Path(tmp))
        parts, corpora = [], []
        for index, (_, path) in enumerate(built):
            dataset, skeleton = load_pose_dataset(path)
            transform = PoseTrainTransform.from_dataset(dataset, dataset_index=index, seed=0, box_source="content")
            parts.append(instance_dataset(dataset, transform))
            corpora.append((dataset.cast_column("image", datasets.Image(decode=False)), skeleton))
        mixed = MixedDataset(parts)
        order = np.random.default_rng(0).permutation(len(mixed))[: args.samples]
        run_posebh(mixed, order[: args.batch_size * 2], args.batch_size)  # warm-up (imports, caches)
        results = {"posebh_hf": timed(lambda: run_posebh(mixed, order, args.batch_size))}
        index_columns = [(p.data.column("row").to_numpy(), p.data.column("object").to_numpy()) for p in parts]
        naive_order = []
        for i in order.tolist():
            part, local = mixed.locate(i)
            rows, objects = index_columns[part]
            naive_order.append((part, int(rows[local]), int(objects[local])))
        results["naive numpy/PIL"] = timed(lambda: run_naive(corpora, naive_order))
    print(f"mdt_mini crops ({', '.join(DATASETS)}), {len(mixed)} train instances; "
          f"{args.samples} random instances per method; 1 OpenCV/torch thread")
    print("| method | samples | wall s | CPU s | samples/s (wall) | samples/CPU-s |")
    print("|---|---|---|---|---|---|")
    for name, (count, wall, cpu) in results.items():
        print(f"| {name} | {count} | {wall:.2f} | {cpu:.2f} | {count / wall:.0f} | {count / cpu:.0f} |")
    ratio = (results["posebh_hf"][0] / results["posebh_hf"][2]) / (results["naive numpy/PIL"][0] / results["naive numpy/PIL"][2])
    print(f"posebh_hf / naive (per CPU-s): {ratio:.1f}x")


if __name__ == "__main__":
    main()
