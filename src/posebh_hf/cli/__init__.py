"""The `posebh` command (layer 5): argument parsing and calls into the layers below, nothing else.

Each verb lives in its own module exposing `register(subparsers)`, which adds the verb's parser and sets
`func(args) -> int`. Errors that users can fix (bad files, unknown skeletons, ...) are printed as one line and give
exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Verb modules, in the order `posebh --help` lists them. Imported lazily so `posebh --help` stays fast.
VERB_MODULES = ("predict", "convert", "data", "evaluate", "train", "pack", "hub", "viz", "export", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posebh", description="PoseBH multi-skeleton pose estimation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue  # verb not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("posebh: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as err:
        # User-fixable problems arrive here as exceptions with specific messages; show them as one line.
        print(f"posebh {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        # safetensors' errors (a full disk while writing, a damaged file while reading) are not OSErrors; our
        # writers and readers translate the ones they meet, this keeps any other one to one line as well.
        if type(err).__name__ != "SafetensorError":
            raise
        print(f"posebh {args.command}: error: safetensors: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
