"""Train PoseBH: ``accelerate launch scripts/train.py --config configs/smoke.yaml [--resume latest] [key=value ...]``.

Thin wrapper around `posebh_hf.training.launch.main`. Each process ends with `os._exit` after the trackers are
closed: torch's gloo backend sometimes aborts during interpreter shutdown on CPU (hf_notes §10).
"""

from __future__ import annotations

import os
import sys

from posebh_hf.training.launch import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
