"""Frames per second of `posebh predict clip.mp4` on CPU: a 10 s 640x360 clip at 25 fps made from an example photo
(a slow pan and zoom over ../shared/data/examples, else a synthetic scene), the embedded default model, the HOG
detector every 5 frames, people followed from their keypoints in between, the annotated video written.

    python benchmarks/video_fps.py [--seconds 10] [--every 5] [--detect hog|blazepose|none]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT.parent / "shared" / "data" / "examples"


def make_clip(path: Path, seconds: float, fps: float = 25.0, size: tuple[int, int] = (640, 360)) -> str:
    import cv2

    photos = sorted(p for p in EXAMPLES.glob("*.jpg")) if EXAMPLES.is_dir() else []
    if photos:
        source = cv2.imread(str(photos[0]))
        what = f"a pan/zoom over {photos[0].name}"
    else:
        source = np.full((720, 1280, 3), 40, np.uint8)
        cv2.rectangle(source, (500, 150), (640, 600), (200, 200, 200), -1)
        what = "a synthetic scene"
    height, width = source.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    frames = int(seconds * fps)
    for i in range(frames):
        t = i / max(frames - 1, 1)
        zoom = 1.0 - 0.25 * t  # the crop shrinks to 75 % of the photo: a slow zoom in while panning
        cw, ch = int(width * zoom), int(height * zoom)
        x0, y0 = int((width - cw) * t), int((height - ch) * 0.5)
        writer.write(cv2.resize(source[y0:y0 + ch, x0:x0 + cw], size, interpolation=cv2.INTER_AREA))
    writer.release()
    return f"{frames} frames {size[0]}x{size[1]} at {fps:g} fps, {what}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--detect", default="hog", choices=("hog", "blazepose", "none"))
    parser.add_argument("--model", default=str(ROOT / "app" / "default_model"))
    args = parser.parse_args()

    import torch

    from posebh_hf import PoseBHPipeline
    from posebh_hf.video import predict_video

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    pipe = PoseBHPipeline.from_pretrained(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        what = make_clip(clip, args.seconds)
        start = time.perf_counter()
        records = list(predict_video(pipe, clip, out_video=Path(tmp) / "clip_pose.mp4", detect=args.detect,
                                     every=args.every, progress=False))
        elapsed = time.perf_counter() - start
    people = np.mean([len(r["instances"]) for r in records])
    tracks = len({i["track_id"] for r in records for i in r["instances"]})
    print(f"clip: {what}; model {args.model}; detector {args.detect} every {args.every} frames; flip test on; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{len(records)} frames in {elapsed:.1f} s = {len(records) / elapsed:.2f} frames/s; "
          f"{people:.2f} people per frame on average, {tracks} track ids")


if __name__ == "__main__":
    main()
