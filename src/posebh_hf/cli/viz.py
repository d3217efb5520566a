"""`posebh viz prototypes`: a map of the model's keypoint prototypes (paper Fig. 11) and a table of each keypoint's
nearest keypoints in the other skeletons (layer 5, thin wrapper over `posebh_hf.visualize.prototype_map`).

  posebh viz prototypes --model DIR [--skeletons coco aic ...] --out map.png [--format md|json] [--table FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atomic_files import write_text_atomically

__all__ = ["register", "run_prototypes"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `viz prototypes` to a `posebh` CLI parser."""
    parser = subparsers.add_parser("viz", help="visualise model internals (prototype maps)",
                                   description="Visualisations of a PoseBH model.")
    verbs = parser.add_subparsers(dest="viz_verb", required=True, metavar="{prototypes}")
    protos = verbs.add_parser(
        "prototypes", help="2D map of all keypoint prototypes + nearest-keypoint table",
        description="Project every keypoint's prototypes to 2D (scikit-learn's t-SNE of the prototype similarity: "
                    "pip install 'posebh-hf[viz]'; or classical MDS, numpy only), colour by "
                    "skeleton, label by keypoint name, and join mutual nearest keypoints of different skeletons. "
                    "The nearest-keypoint table goes to stdout (or --table FILE).")
    protos.add_argument("--model", required=True, help="PoseBH model folder or Hub repo id")
    protos.add_argument("--skeletons", nargs="+", default=None,
                        help="skeletons to show (default: all with prototypes); e.g. coco aic mpii")
    protos.add_argument("--out", required=True, type=Path, help="output PNG")
    protos.add_argument("--format", choices=["md", "json"], default="md", help="nearest-keypoint table format")
    protos.add_argument("--table", type=Path, default=None, help="write the table to this file instead of stdout")
    protos.add_argument("--top-k", type=int, default=1, help="nearest keypoints listed per other skeleton")
    protos.add_argument("--method", choices=["tsne", "mds"], default="tsne",
                        help="2D projection (tsne needs scikit-learn: the viz extra)")
    protos.add_argument("--no-links", dest="links", action="store_false",
                        help="do not draw lines between mutual nearest keypoints")
    protos.add_argument("--link-threshold", type=float, default=0.75,
                        help="draw a line only when the two keypoints are at least this similar (default 0.75)")
    protos.set_defaults(func=run_prototypes)


def run_prototypes(args: argparse.Namespace) -> int:
    from ..hub.model_repo import load_model
    from ..visualize.prototype_map import (
        VIZ_INSTALL_HINT,
        nearest_keypoints,
        nearest_table_json,
        nearest_table_markdown,
        prototype_map,
        tsne_available,
    )

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.method == "tsne" and not tsne_available():
        raise ValueError(VIZ_INSTALL_HINT)
    model = load_model(args.model)
    protos = prototype_map(model, args.out, skeletons=args.skeletons, method=args.method, links=args.links,
                           link_threshold=args.link_threshold)
    table = nearest_keypoints(protos, top_k=args.top_k)
    text = nearest_table_json(table) if args.format == "json" else nearest_table_markdown(table)
    if args.table is None:
        sys.stdout.write(text + "\n")
    else:
        write_text_atomically(args.table, text + "\n")
    print(f"wrote {args.out} ({len(protos.names)} keypoints of {', '.join(protos.skeletons)})", file=sys.stderr)
    return 0
