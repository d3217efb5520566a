"""`posebh predict IMAGE|FOLDER|GLOB... --model PATH [--skeleton NAME ...] [--box X,Y,W,H ...] [--no-flip] [--out-dir DIR]`.

Prints one JSON object per image (JSON Lines, `PoseResult.to_json()`), in input order, as each chunk of images is
done; folders give their image files (sorted, not recursive), glob patterns their matches.

Images are read with `posebh_hf.images.load_image` (EXIF orientation applied, 16-bit images scaled), so sizes, boxes
and keypoints refer to the photo as it is shown; scores in the JSON are clipped to [0, 1]."""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_files import write_atomically


def default_model_dir() -> Path | None:
    """The embedded default model (app/default_model in a checkout), or POSEBH_MODEL when set."""
    env = os.environ.get("POSEBH_MODEL")
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parents[3] / "app" / "default_model"
    return candidate if (candidate / "config.json").is_file() else None


def parse_box(text: str) -> list[float]:
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"box {text!r} is not four comma-separated numbers X,Y,W,H") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"box {text!r} has {len(values)} values; expected X,Y,W,H")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"box {text!r} has a non-finite value")
    if values[2] <= 0 or values[3] <= 0:
        raise argparse.ArgumentTypeError(f"box {text!r} has a non-positive width or height")
    return values


def parse_threshold(text: str) -> float:
    from ..visualize import check_score_threshold  # noqa: PLC0415

    try:
        return check_score_threshold(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def check_model_dir(path: str) -> Any:
    """Refuse folders that are not loadable PoseBH models (one line naming the file) before the slow load; returns
    the folder's `PoseBHConfig`."""
    from ..modeling.model_folder import check_model_folder  # noqa: PLC0415

    return check_model_folder(path)


def write_png_atomic(path: Path, image_rgb: np.ndarray) -> None:
    from PIL import Image  # noqa: PLC0415

    write_atomically(path, lambda tmp: Image.fromarray(image_rgb).save(tmp, format="PNG"))


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")  # video.VIDEO_SUFFIXES (kept light for --help)
CHUNK = 8  # images per model call: their crops are batched together, memory stays bounded


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given; a folder -> its image files (sorted, not recursive); a glob pattern -> its matches (sorted).
    Nothing found for an argument is an error naming it."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)  # not videos
            if not found:
                raise ValueError(f"folder {item} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif not path.exists() and any(ch in item for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise ValueError(f"pattern {item!r} matches no files")
            out.extend(found)
        else:
            out.append(path)
    return out


def run(args: argparse.Namespace) -> int:

    paths = expand_inputs(args.images)  # missing files fail here, before torch and the model are loaded
    for path in paths:
        if not path.is_file():
            raise ValueError(f"image {path} does not exist")
    model_path = args.model or default_model_dir()
    if model_path is None:
        raise ValueError("no --model given and no embedded default model (app/default_model) in this checkout")
    config = check_model_dir(str(model_path))
    if args.threshold is None:  # the model's own suggestion (a weak model's scores stay low), else 0.3
        args.threshold = config.keypoint_draw_threshold
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    from ..pipeline import PoseBHPipeline, load_image  # noqa: PLC0415
    from ..processing_posebh import validate_boxes  # noqa: PLC0415

    hf_logging.disable_progress_bar()
    # Validate the skeletons before the slow model load (images are checked chunk by chunk below).
    served = list(config.dataset_names) + list(config.extra_prototype_skeletons or [])
    skeletons = args.skeleton or config.skeletons_to_draw  # the model's default_skeletons, else every head
    unknown = [s for s in skeletons if s not in served]
    if unknown:
        raise ValueError(f"unknown skeleton(s) {unknown}; the model serves {served}")
    pipe = PoseBHPipeline.from_pretrained(str(model_path), check_folder=False)  # checked above
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    images = [p for p in paths if p.suffix.lower() not in VIDEO_SUFFIXES]
    for video in videos:
        _run_video(pipe, video, args, skeletons)
    for start in range(0, len(images), CHUNK):
        chunk = images[start:start + CHUNK]
        arrays = [load_image(path) for path in chunk]
        for path, array in zip(chunk, arrays, strict=True):
            validate_boxes(args.box or [], array.shape[1], array.shape[0], where=str(path))
        results = pipe.predict(arrays, boxes=_boxes_for(arrays, chunk, args), skeletons=skeletons, flip=args.flip,
                               image_names=[str(p) for p in chunk])
        for path, result in zip(chunk, results, strict=True):
            sys.stdout.write(result.to_json() + "\n")  # JSON Lines: one object per image, as soon as it is done
            if args.out_dir:
                for name in skeletons:  # one overlay per skeleton: its boxes, name, limbs and points
                    write_png_atomic(Path(args.out_dir) / f"{path.stem}_{name}.png",
                                     result.plot(threshold=args.threshold, skeletons=[name]))
        sys.stdout.flush()
    return 0


def _boxes_for(arrays: list, paths: list[Path], args: argparse.Namespace) -> list | None:
    """Per image: --box (every image), else --detect blazepose|hog (no person found: no instances, said on
    stderr), else None (the whole image)."""
    if args.box:
        return [args.box] * len(arrays)
    if (args.detect or "none") == "none":
        return None
    from ..detection import people_detector  # noqa: PLC0415

    detect = people_detector(args.detect)  # a missing model or runtime: one error line naming the fix
    boxes = [detect(array) for array in arrays]
    for path, found in zip(paths, boxes, strict=True):
        if not found:
            print(f"posebh predict: note: the {args.detect} detector found no person in {path}", file=sys.stderr)
    return boxes


def _video_detector(args: argparse.Namespace) -> str:
    """--detect, else blazepose when its runtime and model files are there, else hog (said on stderr)."""
    if args.detect:
        return args.detect
    from ..detection import choose_detector  # noqa: PLC0415

    name, why = choose_detector("auto")
    print("posebh predict: videos: person boxes from the BlazePose detector" if name == "blazepose" else
          f"posebh predict: videos: person boxes from HOG (BlazePose is not usable: {why})", file=sys.stderr)
    return name


def _run_video(pipe, video: Path, args: argparse.Namespace, skeletons: list[str]) -> None:
    from ..video import predict_video  # noqa: PLC0415

    out_dir = Path(args.out_dir) if args.out_dir else video.parent
    out_video = out_dir / f"{video.stem}_pose.mp4"
    frames = 0
    for record in predict_video(pipe, video, out_video=out_video, detect=_video_detector(args), every=args.every,
                                skeletons=skeletons, flip=args.flip, threshold=args.threshold,
                                progress=sys.stderr.isatty()):
        sys.stdout.write(json.dumps(record) + "\n")
        frames += 1
    sys.stdout.flush()
    print(f"posebh predict: {frames} frames of {video} -> {out_video}", file=sys.stderr)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="keypoints for images (JSON Lines to stdout, overlays to --out-dir)")
    parser.add_argument("images", nargs="+", help="image or video files (.mp4, .avi, .mov, .mkv, .webm), folders "
                        "(their images) or glob patterns; one JSON object per image or video frame is printed (JSON "
                        "Lines; frames carry frame, time and a track_id per instance)")
    parser.add_argument("--model", help="PoseBH model folder (default: the embedded default model / $POSEBH_MODEL)")
    parser.add_argument("--skeleton", action="append", help="skeleton to predict (repeatable; default: the model's default_skeletons, else every head)")
    parser.add_argument("--box", action="append", type=parse_box, help="X,Y,W,H box (repeatable; default: whole image)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                        help="flip test where the skeleton allows it (default on; never for skeletons without flip "
                             "pairs or with \"flip_test\": false)")
    parser.add_argument("--threshold", type=parse_threshold, default=None,
                        help="score threshold for drawing, in [0, 1] (default: the model's draw_threshold, else 0.3)")
    parser.add_argument("--out-dir", help="write overlay PNGs here (videos: <stem>_pose.mp4; default beside the video)")
    parser.add_argument("--detect", choices=("none", "hog", "blazepose"), default=None,
                        help="person boxes: blazepose = MediaPipe's BlazePose person detector, offline (pip install "
                             "'posebh-hf[detect]', then python -m posebh_hf.detection.model_file once); hog = "
                             "OpenCV's HOG people detector (weak); none = the whole image (default: none for "
                             "images; for videos blazepose when it is set up, else hog; --box wins)")
    parser.add_argument("--every", type=int, default=5,
                        help="videos: run the detector every N frames and follow people from their keypoints in "
                             "between (default 5)")
    parser.set_defaults(func=run)
