"""`posebh train --config FILE.yaml [--resume PATH|latest] [key.sub=value ...]` (layer 5).

One process, the same code as `scripts/train.py` and `python -m posebh_hf.train`; for several processes use
``accelerate launch -m posebh_hf.train ...`` (or ``accelerate launch scripts/train.py ...`` in the repository).
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train PoseBH from a YAML config (one process; see `accelerate launch -m posebh_hf.train`)",
        description="Train PoseBH (or the multihead baseline, or a transfer to a new skeleton) from a YAML config, "
                    "in this process. Dotted key=value arguments override the YAML, e.g. output_dir=/x "
                    "schedule.epochs=3. configs/smoke.yaml trains a tiny model on generated figures (no download). "
                    "Several processes: accelerate launch -m posebh_hf.train --config FILE.yaml [...].")
    parser.add_argument("--config", required=True, help="YAML training config (see configs/)")
    parser.add_argument("--resume", default=None, metavar="PATH|latest",
                        help="continue from a checkpoint folder, or the newest one under output_dir/checkpoints")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import run as train

    argv = ["--config", args.config, *(["--resume", args.resume] if args.resume else []), *args.overrides]
    code = train(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by a launcher: leave before gloo's shutdown abort
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
