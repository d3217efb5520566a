"""Crops per second: `PoseBHPipeline.predict` on many images and boxes at once (their crops batched through the
model) against one call per crop, on the embedded default model (or --model), same crops, same outputs.

The images are the photos under ../shared/data/examples when present, else synthetic ones; each image gets
`--boxes` boxes (a grid over the image). Rounds alternate the two ways (ABAB...) so a loaded machine affects both
alike; the table gives the median crops/s of each and the ratio, and checks the keypoints agree.

    python benchmarks/pipeline_batching.py                     # 8 images x 4 boxes, 5 rounds
    python benchmarks/pipeline_batching.py --images 16 --boxes 8 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT.parent / "shared" / "data" / "examples"


def load_images(count: int) -> tuple[list[np.ndarray], str]:
    from posebh_hf.images import load_image

    files = sorted(p for p in EXAMPLES.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if files:
        arrays = [load_image(files[i % len(files)]) for i in range(count)]
        return arrays, f"{len(files)} example photos from {EXAMPLES} (repeated to {count})"
    rng = np.random.default_rng(0)
    return [(rng.random((480, 640, 3)) * 255).astype(np.uint8) for _ in range(count)], f"{count} synthetic 640x480"


def grid_boxes(image: np.ndarray, count: int) -> list[list[float]]:
    height, width = image.shape[:2]
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    w, h = width / cols, height / rows
    return [[(i % cols) * w, (i // cols) * h, w, h] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "app" / "default_model"))
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--boxes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skeleton", default="lspe")
    args = parser.parse_args()

    import torch

    from posebh_hf import PoseBHPipeline

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    pipe = PoseBHPipeline.from_pretrained(args.model)
    images, source = load_images(args.images)
    boxes = [grid_boxes(image, args.boxes) for image in images]
    crops = sum(len(b) for b in boxes)

    def batched():
        return pipe.predict(images, boxes=boxes, skeletons=[args.skeleton])

    def one_at_a_time():
        return [[pipe(image, boxes=[box], skeletons=[args.skeleton])[0] for box in image_boxes]
                for image, image_boxes in zip(images, boxes, strict=True)]

    a, b = batched(), one_at_a_time()  # warm-up, and the outputs must agree
    diff = max(float(np.abs(r.instances[j].skeletons[args.skeleton].xy - single[j][args.skeleton]["keypoints"]).max())
               for r, single in zip(a, b, strict=True) for j in range(len(single)))
    times = {"batched (predict)": [], "one call per crop": []}
    for _ in range(args.rounds):
        for name, fn in (("batched (predict)", batched), ("one call per crop", one_at_a_time)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    rate = {name: crops / statistics.median(t) for name, t in times.items()}
    print(f"model {args.model}; {source}; {args.boxes} boxes each = {crops} crops; skeleton {args.skeleton}; "
          f"flip test on; torch threads {torch.get_num_threads()}; {args.rounds} rounds")
    print("| way | crops/s (median) | ratio |")
    print("|---|---|---|")
    base = rate["one call per crop"]
    for name, value in rate.items():
        print(f"| {name} | {value:.1f} | {value / base:.2f}x |")
    print(f"max |keypoint difference| between the two: {diff:.2e} px")


if __name__ == "__main__":
    main()
