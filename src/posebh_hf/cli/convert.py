"""`posebh convert vitpose|official`: checkpoints -> PoseBH folders (layer 5, thin wrappers over `conversion`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .convert_timm import DEFAULT_DATASETS_TEXT, register_timm

__all__ = ["register", "run_official", "run_vitpose"]

# `conversion.layout.OFFICIAL_SIZES` (a test keeps them equal): written out so `posebh --help` imports no torch
OFFICIAL_VARIANTS = ("small", "base", "large", "huge", "tiny")


def _dataset_list(values: Sequence[str] | None) -> list[str] | None:
    """`--datasets coco aic` or `--datasets coco,aic` -> ["coco", "aic"]."""
    if values is None:
        return None
    names = [name for value in values for name in value.split(",") if name]
    return names or None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `convert vitpose` and `convert official` to a `posebh` CLI parser."""
    parser = subparsers.add_parser("convert", help="convert ViTPose / official PoseBH checkpoints to PoseBH folders",
                                   description="Convert checkpoints into PoseBH save_pretrained folders.")
    verbs = parser.add_subparsers(dest="convert_source", required=True, metavar="{vitpose,official,timm}")

    vitpose = verbs.add_parser("vitpose", help="a transformers ViTPose / ViTPose++ folder",
                               description="Convert a transformers ViTPose/ViTPose++ folder (config.json + "
                               "model.safetensors). Its head becomes the first dataset's head; the other heads, the "
                               "embedding head and the prototypes are freshly initialised.")
    vitpose.add_argument("--src", required=True, type=Path, help="transformers ViTPose(++) checkpoint folder")
    vitpose.add_argument("--dst", required=True, type=Path, help="output PoseBH folder")
    vitpose.add_argument("--datasets", nargs="+", default=None,
                         help="dataset names in expert order (default: the six PoseBH datasets for a 6-expert "
                              "ViTPose++, coco for a plain ViTPose)")
    vitpose.add_argument("--no-check", dest="check", action="store_false",
                         help="skip the numeric parity check against transformers' VitPoseForPoseEstimation")
    _common_options(vitpose)
    vitpose.set_defaults(func=run_vitpose)

    official = verbs.add_parser("official", help="an official PoseBH / ViTPose++ .pth",
                                description="Convert an official PoseBH / ViTPose / ViTPose++ .pth (mmpose layout): "
                                "unsplit MDT checkpoints, model_split.py files (coco.pth, aic.pth, ...), classic or "
                                "simple decoders, one-MLP multi-head files. Size, experts and heads are inferred "
                                "from the tensors. Loaded with torch.load(weights_only=True).")
    official.add_argument("--src", required=True, type=Path, help="official .pth checkpoint")
    official.add_argument("--dst", required=True, type=Path, help="output PoseBH folder")
    official.add_argument("--variant", choices=list(OFFICIAL_VARIANTS), default=None,
                          help="expected backbone size, checked against the size inferred from the tensors "
                               "(small/base/large/huge = ViT-S/B/L/H; tiny is a test preset)")
    official.add_argument("--datasets", nargs="+", default=None,
                          help=f"dataset names in head order (default: the names in the file name, else "
                               f"{DEFAULT_DATASETS_TEXT} cut to the head count)")
    official.add_argument("--dataset", default=None,
                          help="the dataset of a split file (model_split.py output) or single-head checkpoint "
                               "(default: from the file name, e.g. coco.pth, base_coco.pth, aic.pth, wholebody.pth; "
                               "else the merged expert's dataset; else coco for 17 keypoints)")
    _common_options(official)
    official.set_defaults(func=run_official)
    register_timm(verbs)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --dst")
    parser.add_argument("--seed", type=int, default=0, help="seed for freshly initialised parts (default 0)")


def run_vitpose(args: argparse.Namespace) -> int:
    """`convert vitpose`: convert, check parity per dataset_index (unless --no-check), then save.

    Errors are `ConversionError` (a ValueError) with a specific message; the `posebh` entry point prints them as
    one line with a non-zero exit code.
    """
    from ..conversion import (  # noqa: PLC0415 - torch and transformers only when a verb runs
        PARITY_TOLERANCE,
        ConversionError,
        format_parity,
        vitpose_parity,
        vitpose_to_posebh_model,
    )
    from ..conversion.common import check_destination, save_model_atomically  # noqa: PLC0415

    check_destination(args.dst, args.overwrite)
    model, report = vitpose_to_posebh_model(args.src, _dataset_list(args.datasets), args.seed)
    if args.check:
        report.parity = vitpose_parity(args.src, model, batch_size=1, seed=args.seed)
        print(f"parity vs transformers VitPoseForPoseEstimation (tolerance {PARITY_TOLERANCE:g}):")
        print(format_parity(report.parity, model.config.dataset_names))
        worst = max(report.parity.values())
        if worst > PARITY_TOLERANCE:
            raise ConversionError(f"parity check failed: max|diff| {worst:.3e} > {PARITY_TOLERANCE:g}; nothing written")
    save_model_atomically(model, args.dst, args.overwrite)
    report.destination = args.dst
    print(report.summary())
    return 0


def run_official(args: argparse.Namespace) -> int:
    """`convert official`: convert an official .pth and save (errors as for `run_vitpose`)."""
    from ..conversion import convert_official  # noqa: PLC0415

    report = convert_official(args.src, args.dst, args.variant, _dataset_list(args.datasets),
                              overwrite=args.overwrite, seed=args.seed, dataset=args.dataset)
    print(report.summary())
    return 0
