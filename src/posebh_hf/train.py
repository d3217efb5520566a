"""Train PoseBH: ``accelerate launch -m posebh_hf.train --config FILE.yaml [--resume PATH|latest] [key=value ...]``.

The installed twin of `scripts/train.py` (same code: `posebh_hf.training.launch.main`), so a pip-installed package
can be launched without the repository: ``python -m posebh_hf.train ...`` runs one process, ``accelerate launch -m
posebh_hf.train ...`` as many as Accelerate is told. `posebh train` is the same in one process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["run"]


def run(argv: Sequence[str] | None = None) -> int:
    """Train and return the exit code (0 ok, 1 stopped on non-finite losses, 2 bad config)."""
    from .training.launch import main

    return main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    code = run()
    sys.stdout.flush()
    sys.stderr.flush()
    # torch's gloo backend sometimes aborts during interpreter shutdown on CPU (hf_notes §10): leave at once.
    os._exit(code)
