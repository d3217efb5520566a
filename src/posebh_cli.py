"""Entry point of the `posebh` command, outside the `posebh_hf` package on purpose.

Importing any `posebh_hf` module first runs the package's `__init__`, which registers the model with transformers
(importing torch and transformers: several seconds). This module asks for the package's lazy mode first, so
`posebh --help` and argument errors answer at once and each verb imports only what it uses.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    os.environ["POSEBH_HF_LAZY"] = "1"  # consumed (removed) by posebh_hf/__init__.py: child processes see none
    from posebh_hf.cli import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
