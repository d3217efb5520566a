"""Command-line entry of `scripts/train.py`: ``--config FILE.yaml [--resume PATH|latest] [key.sub=value ...]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import ConfigError, load_train_config
from .trainer import NonFiniteLossError, Trainer, TrainResult

__all__ = ["main", "parse_args"]

# The finished trainer stays referenced until the entry point's os._exit: destroying its DDP reducer destroys the gloo
# process group, whose destructor can wait forever for a peer process that has already exited (seen as a hung rank 0
# after a 2-process CPU run; hf_notes §10).
_FINISHED: list[Trainer] = []


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="accelerate launch scripts/train.py",
        description="Train PoseBH (or the multihead baseline, or a transfer to a new skeleton) from a YAML config. "
                    "Dotted key=value arguments override the YAML, e.g. output_dir=/x schedule.epochs=3.")
    parser.add_argument("--config", required=True, help="YAML training config (see configs/)")
    parser.add_argument("--resume", default=None, metavar="PATH|latest",
                        help="continue from a checkpoint folder, or the newest one under output_dir/checkpoints")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    return parser.parse_intermixed_args(argv)  # overrides may come before and after --resume


def main(argv: Sequence[str] | None = None) -> int:
    """Run training; returns the process exit code (0 ok, 1 stopped on non-finite losses, 2 bad config)."""
    args = parse_args(argv)
    try:
        cfg = load_train_config(args.config, args.overrides)
        trainer = Trainer(cfg)
        _FINISHED.append(trainer)
        result: TrainResult = trainer.train(resume=args.resume)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # WriteError (full disk, permissions) names the folder it could not write
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.is_main and result.final_model is not None:
        print(f"final model: {result.final_model}" + (f"; prototype pack: {result.pack}" if result.pack else ""))
    return 0
