"""`posebh predict IMAGE... --model PATH [--skeleton NAME ...] [--box X,Y,W,H ...] [--no-flip] [--out-dir DIR]`.

Images are read with `posebh_hf.images.load_image` (EXIF orientation applied, 16-bit images scaled), so sizes, boxes
and keypoints refer to the photo as it is shown; scores in the JSON are clipped to [0, 1]."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_threshold(text: str) -> float:
    from ..visualize import check_score_threshold  # noqa: PLC0415

    try:
        return check_score_threshold(float(text) if _is_number(text) else text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def check_model_dir(path: str) -> None:
    """Refuse folders that are not loadable PoseBH models (one line naming the file) before the slow load."""
    from ..modeling.model_folder import check_model_folder  # noqa: PLC0415

    check_model_folder(path)


def write_png_atomic(path: Path, image_rgb: np.ndarray) -> None:
    from PIL import Image  # noqa: PLC0415

    write_atomically(path, lambda tmp: Image.fromarray(image_rgb).save(tmp, format="PNG"))


def run(args: argparse.Namespace) -> int:
    from ..pipeline import PoseBHPipeline, load_image, results_to_json  # noqa: PLC0415
    from ..visualize import draw_instances  # noqa: PLC0415

    model_path = args.model or default_model_dir()
    if model_path is None:
        raise ValueError("no --model given and no embedded default model (app/default_model) in this checkout")
    check_model_dir(str(model_path))
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    from ..configuration_posebh import PoseBHConfig  # noqa: PLC0415
    from ..processing_posebh import validate_boxes  # noqa: PLC0415

    hf_logging.disable_progress_bar()
    # Validate every input (images, skeletons, boxes) before the slow model load.
    config = PoseBHConfig.from_pretrained(str(model_path))
    served = list(config.dataset_names) + list(getattr(config, "extra_prototype_skeletons", None) or [])
    skeletons = args.skeleton or config.skeletons_to_draw  # the model's default_skeletons, else every head
    unknown = [s for s in skeletons if s not in served]
    if unknown:
        raise ValueError(f"unknown skeleton(s) {unknown}; the model serves {served}")
    images = [(path, load_image(path)) for path in args.images]
    for path, array in images:
        validate_boxes(args.box or [], array.shape[1], array.shape[0], where=str(path))
    pipe = PoseBHPipeline.from_pretrained(str(model_path))
    outputs = []
    for path, array in images:
        boxes = args.box or None
        results = pipe(array, boxes=boxes, skeletons=skeletons, flip=args.flip)
        height, width = array.shape[:2]
        outputs.append(results_to_json(results, boxes, skeletons, pipe, str(path), width, height))
        if args.out_dir:
            box_list = boxes or [[0, 0, width, height]]
            for name in skeletons:
                instances = [{"bbox": b, **r[name]} for b, r in zip(box_list, results, strict=True)]
                overlay = draw_instances(array, instances, pipe.skeleton(name), score_threshold=args.threshold)
                write_png_atomic(Path(args.out_dir) / f"{Path(path).stem}_{name}.png", overlay)
    json.dump(outputs if len(outputs) > 1 else outputs[0], sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="keypoints for images (JSON to stdout, overlays to --out-dir)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--model", help="PoseBH model folder (default: the embedded default model / $POSEBH_MODEL)")
    parser.add_argument("--skeleton", action="append", help="skeleton to predict (repeatable; default: the model's default_skeletons, else every head)")
    parser.add_argument("--box", action="append", type=parse_box, help="X,Y,W,H box (repeatable; default: whole image)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                        help="flip test where the skeleton allows it (default on; never for skeletons without flip "
                             "pairs or with \"flip_test\": false)")
    parser.add_argument("--threshold", type=parse_threshold, default=0.3, help="score threshold for drawing, in [0, 1] (0.3)")
    parser.add_argument("--out-dir", help="write overlay PNGs here")
    parser.set_defaults(func=run)
