"""`posebh convert timm`: a timm ViT -> PoseBH folder (layer 5, a thin wrapper over `conversion.timm`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register_timm", "run_timm"]

# `configuration_posebh.DEFAULT_DATASETS` (a test keeps them equal): written out so `posebh --help` imports no torch
DEFAULT_DATASETS_TEXT = "coco aic mpii ap10k apt36k coco_wholebody"


def register_timm(verbs: argparse._SubParsersAction) -> None:
    """Add `convert timm` to the `convert` verbs."""
    timm = verbs.add_parser(
        "timm", help="a timm Vision Transformer (name or timm folder) as the backbone",
        description="Map a timm ViT (patch 14 or 16; class token, register tokens and LayerScale allowed) into the "
        "ViTPose++ backbone: the patch kernel is resized to --patch-size (FlexiViT pseudo-inverse, bicubic), the "
        "position grid is interpolated to the pose grid (bicubic), fc2 is split into the shared part and one copy "
        "per expert (the ViTPose++ recipe). Heads, embedding head and prototypes start fresh. Needs the optional "
        "timm extra.")
    timm.add_argument("--model", required=True,
                      help="timm model name (e.g. vit_small_patch14_dinov2.lvd142m, hf-hub:org/name) or a local "
                           "timm folder (config.json + model.safetensors)")
    timm.add_argument("--dst", required=True, type=Path, help="output PoseBH folder")
    timm.add_argument("--datasets", nargs="+", default=None,
                      help=f"dataset names in expert order (default: {DEFAULT_DATASETS_TEXT}); one name gives "
                           "a plain (1-expert) MLP")
    timm.add_argument("--image-size", nargs=2, type=int, default=[256, 192], metavar=("H", "W"),
                      help="model input size (default 256 192: a 16x12 grid with patch 16)")
    timm.add_argument("--patch-size", type=int, default=16, help="patch size of the PoseBH backbone (default 16)")
    timm.add_argument("--part-features", type=int, default=None,
                      help="expert width P (default: width / 4, as ViTPose++ B/H)")
    timm.add_argument("--random-init", action="store_true",
                      help="build the timm architecture with random weights (no download; for tests)")
    timm.add_argument("--no-check", dest="check", action="store_false",
                      help="skip the feature parity check (run only when both models compute the same thing)")
    timm.add_argument("--overwrite", action="store_true", help="replace a non-empty --dst")
    timm.add_argument("--seed", type=int, default=0, help="seed for freshly initialised parts (default 0)")
    timm.set_defaults(func=run_timm)


def run_timm(args: argparse.Namespace) -> int:
    """`convert timm`: load the timm model, convert, check feature parity where it applies, save."""
    from ..conversion.common import ConversionError, check_destination, save_model_atomically  # noqa: PLC0415
    from ..conversion.parity import PARITY_TOLERANCE  # noqa: PLC0415
    from ..conversion.timm import (  # noqa: PLC0415
        load_timm_model,
        parity_blockers,
        timm_parity,
        timm_to_posebh_model,
    )

    check_destination(args.dst, args.overwrite)
    datasets = [n for value in args.datasets for n in value.split(",") if n] if args.datasets else None
    source = load_timm_model(args.model, pretrained=not args.random_init)
    model, report = timm_to_posebh_model(source, datasets, image_size=args.image_size, patch_size=args.patch_size,
                                         part_features=args.part_features, seed=args.seed)
    if args.check:
        reasons = parity_blockers(source, model)
        if reasons:
            print("feature parity not checked (the models differ by design): " + "; ".join(reasons))
        else:
            diffs = timm_parity(source, model)
            print(f"feature parity vs timm forward_features (tolerance {PARITY_TOLERANCE:g}):")
            for index, diff in diffs.items():
                print(f"  dataset_index={index} [{model.config.dataset_names[index]} expert]: max|diff| = {diff:.3e}")
            worst = max(diffs.values())
            if worst > PARITY_TOLERANCE:
                raise ConversionError(f"parity check failed: max|diff| {worst:.3e} > {PARITY_TOLERANCE:g}; "
                                      "nothing written")
    save_model_atomically(model, args.dst, args.overwrite)
    report.destination = args.dst
    print(report.summary())
    return 0
