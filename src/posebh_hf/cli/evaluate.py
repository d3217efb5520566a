"""`posebh evaluate --gt FILE --pred FILE --protocol P [--skeleton NAME_OR_JSON]`: metrics as JSON on stdout."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..atomic_files import write_text_atomically

# `evaluation.PROTOCOLS` (a test keeps them equal): written out so `posebh --help` imports no pycocotools or scipy
PROTOCOL_NAMES = ("coco", "ap10k", "apt36k", "ochuman", "pw3d", "aic", "crowdpose", "coco_wholebody", "pckh",
                  "pck-auc-epe", "pck")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a prediction file against ground truth (COCO AP, PCKh, PCK/AUC/EPE)",
        description="Score predictions (COCO results format; MPII also N x 16 x 2 lists) against a ground truth "
                    "with a reference protocol and print the metrics as one JSON object.")
    p.add_argument("--gt", required=True, help="ground truth: COCO keypoint JSON; for pckh mmpose's MPII JSON or "
                                               "mpii_gt_val.mat")
    p.add_argument("--pred", required=True, help="predictions JSON (COCO results: image_id, category_id, "
                                                 "keypoints [x, y, score] * K, score)")
    p.add_argument("--protocol", required=True, choices=list(PROTOCOL_NAMES), help="evaluation protocol")
    p.add_argument("--skeleton", help="skeleton name or JSON file (default: the protocol's; needed for custom K)")
    p.add_argument("--headboxes", help="pckh: MPII head boxes (.mat with headboxes_src, or JSON) when the GT JSON "
                                       "has no 'headbox' per record")
    p.add_argument("--pred-one-based", action="store_true",
                   help="pckh: predictions are already in MATLAB 1-based pixels (default: 0-based, +1 is added)")
    p.add_argument("--thr", type=float, help="pck: threshold as a fraction of the box size / torso (default 0.2)")
    p.add_argument("--norm", choices=("bbox", "torso"), help="pck: normalise by max(w, h) of the box or a torso")
    p.add_argument("--torso", help="pck with --norm torso: two keypoint names or indices, e.g. left_shoulder,right_hip")
    p.add_argument("--output", help="also write the metrics JSON to this file")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.protocol == "pckh":
        if args.headboxes:
            opts["headboxes"] = args.headboxes
        opts["pred_one_based"] = bool(args.pred_one_based)
    elif args.protocol == "pck":
        if args.thr is not None:
            opts["thr"] = args.thr
        if args.norm:
            opts["norm"] = args.norm
        if args.torso:
            opts["torso"] = tuple(args.torso.split(","))
    ignored = [flag for flag, used in (("--headboxes", args.headboxes), ("--pred-one-based", args.pred_one_based),
                                       ("--thr", args.thr is not None), ("--norm", args.norm),
                                       ("--torso", args.torso))
               if used and not _takes(args.protocol, flag)]
    if ignored:
        raise ValueError(f"{', '.join(ignored)} do(es) not apply to protocol {args.protocol!r}")
    return opts


def _takes(protocol: str, flag: str) -> bool:
    return (protocol == "pckh" and flag in ("--headboxes", "--pred-one-based")) or \
        (protocol == "pck" and flag in ("--thr", "--norm", "--torso"))


def _clean(value: Any) -> Any:
    """NaN/inf -> null, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate  # noqa: PLC0415

    try:
        metrics = evaluate(args.protocol, args.gt, args.pred, skeleton=args.skeleton, **_options(args))
    except (ValueError, OSError) as err:  # EvaluationInputError, SkeletonError, unreadable files
        print(f"posebh evaluate: error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(_clean(metrics), indent=2, allow_nan=False)
    print(text, flush=True)  # first: a failed --output write (full disk) must not lose the metrics
    if args.output:
        try:
            write_text_atomically(Path(args.output), text + "\n")
        except OSError as err:  # WriteError names the path and the reason
            print(f"posebh evaluate: error: {err} (the metrics are on stdout above)", file=sys.stderr)
            return 2
    return 0
