"""Files written whole or not at all (layer 0): a temporary file beside the target, renamed over it.

A reader (or a crash) never sees a half-written file; a failed write leaves the old file, or none, and no
temporary behind. Temporaries are opened like ordinary files (so they get the usual umask permissions) and keep
the target's suffix, for writers that pick the format from the file name.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["write_atomically", "write_json_atomically", "write_text_atomically"]


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` on a fresh path in the target's folder (created if missing), then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex[:12]}.tmp.{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: str | os.PathLike[str], text: str) -> Path:
    """`path.write_text(text)` (UTF-8), atomically."""
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomically(path: str | os.PathLike[str], data: Any, **dump_kwargs: Any) -> Path:
    """`json.dump(data, ..., **dump_kwargs)` into `path` (UTF-8), atomically."""
    def dump(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, **dump_kwargs)

    return write_atomically(path, dump)
