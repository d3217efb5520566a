"""`posebh export onnx --model DIR --dataset NAME --out FILE.onnx`: one dataset's network as ONNX (layer 5)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run_onnx"]

# `export.onnx`'s DEFAULT_OPSET, EXPORTERS and ONNX_TOLERANCE (a test keeps them equal), written out so that
# `posebh --help` imports no torch
DEFAULT_OPSET = 18
EXPORTERS = ("dynamo", "torchscript")
ONNX_TOLERANCE = 1e-4


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `export onnx` to a `posebh` CLI parser."""

    parser = subparsers.add_parser("export", help="export a model for deployment (ONNX)",
                                   description="Export PoseBH models for deployment.")
    verbs = parser.add_subparsers(dest="export_format", required=True, metavar="{onnx}")
    onnx = verbs.add_parser(
        "onnx", help="one dataset's network (expert baked in) as an ONNX file",
        description="Export one dataset's network as ONNX: the dataset's MoE expert is merged into each fc2 "
        "(a plain ViT), followed by its heatmap head. Input 'pixel_values' [B, 3, H, W] (normalised crops), "
        "output 'heatmaps' [B, K, H/4, W/4]; the batch axis is dynamic. The file is checked against eager "
        "PyTorch with onnxruntime unless --no-check is given.")
    onnx.add_argument("--model", required=True, help="PoseBH model folder (or Hub id when online)")
    onnx.add_argument("--dataset", required=True, help="dataset (head/expert) name, e.g. coco, or its index")
    onnx.add_argument("--out", required=True, type=Path, help="output file (.onnx)")
    onnx.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 17; default {DEFAULT_OPSET})")
    onnx.add_argument("--exporter", choices=EXPORTERS, default="dynamo",
                      help="torch exporter: dynamo (default, torch.export + onnxscript) or the legacy torchscript")
    onnx.add_argument("--no-check", dest="check", action="store_false",
                      help="skip the onnxruntime comparison with eager PyTorch")
    onnx.add_argument("--tolerance", type=float, default=ONNX_TOLERANCE,
                      help=f"max |onnxruntime - eager| accepted by the check (default {ONNX_TOLERANCE:g})")
    onnx.set_defaults(func=run_onnx)


def _dataset(value: str) -> str | int:
    return int(value) if value.isdigit() else value


def run_onnx(args: argparse.Namespace) -> int:
    """Load the model, export, check; exit code 1 when the check exceeds the tolerance."""
    from ..export import export_onnx
    from ..modeling import PoseBHForPoseEstimation
    from .predict import check_model_dir

    if Path(args.model).exists():  # a local folder: refuse non-PoseBH folders with one clear line
        check_model_dir(args.model)
    model = PoseBHForPoseEstimation.from_pretrained(args.model).eval()
    result = export_onnx(model, _dataset(args.dataset), args.out, opset=args.opset, check=args.check,
                         exporter=args.exporter)
    print(result.summary())
    if result.max_abs_diff is not None and result.max_abs_diff > args.tolerance:
        print(f"posebh export: error: onnxruntime differs from eager PyTorch by {result.max_abs_diff:.3e} "
              f"> tolerance {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0
