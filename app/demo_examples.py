"""Example images for the demo, none of them stored in this repository (licences).

- scikit-image ships `astronaut.png` (public domain, NASA) and `chelsea.png` (CC0, Stefan van der Walt) in its
  wheel; they are used from the installed package.
- The team's shared photos (`../shared/data/examples` beside the checkout, or `POSEBH_EXAMPLES_DIR`) are
  added when that folder is present.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

EXAMPLES_ENV = "POSEBH_EXAMPLES_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_EXAMPLES = _REPO_ROOT.parent / "shared" / "data" / "examples"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
BUNDLED = ("astronaut.png", "chelsea.png")


def bundled_examples() -> list[Path]:
    """Public-domain / CC0 photos inside the installed scikit-image (empty when it is not installed)."""
    try:
        import skimage.data
    except ImportError:
        return []
    folder = Path(skimage.data.__file__).resolve().parent
    return [folder / name for name in BUNDLED if (folder / name).is_file()]


def shared_examples(folder: Path | None = None) -> list[Path]:
    """Images in the shared examples folder, sorted by name; empty when the folder is absent."""
    if folder is None:
        env = os.environ.get(EXAMPLES_ENV)
        folder = Path(env) if env else SHARED_EXAMPLES
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def example_images(folder: Path | None = None) -> list[Path]:
    """Bundled examples first, then shared ones; byte-identical copies (the same skimage photo) appear once."""
    seen: set[str] = set()
    out: list[Path] = []
    for path in [*bundled_examples(), *shared_examples(folder)]:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(path)
    return out
