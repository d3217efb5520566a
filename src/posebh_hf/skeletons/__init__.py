"""Skeletons as validated data (layer 0). Built-ins are JSON files in `skeletons/data/`."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from .skeleton import DEFAULT_SIGMA, Skeleton, SkeletonError, infer_flip_pairs

__all__ = ["DEFAULT_SIGMA", "Skeleton", "SkeletonError", "get_skeleton", "infer_flip_pairs", "list_skeletons"]

_DATA_DIR = Path(__file__).with_name("data")


def list_skeletons() -> list[str]:
    """Names of the built-in skeletons."""
    return sorted(p.stem for p in _DATA_DIR.glob("*.json"))


@cache
def _builtin(name: str) -> Skeleton:
    return Skeleton.from_json(_DATA_DIR / f"{name}.json")


def get_skeleton(name_or_path: str | Path | Skeleton) -> Skeleton:
    """A built-in skeleton by name, or a user skeleton from a JSON file path."""
    if isinstance(name_or_path, Skeleton):
        return name_or_path
    text = str(name_or_path)
    if text in list_skeletons():
        return _builtin(text)
    path = Path(text)
    if path.suffix == ".json" or path.exists():
        return Skeleton.from_json(path)
    raise SkeletonError(f"unknown skeleton {text!r}: not a built-in ({', '.join(list_skeletons())}) "
                        "and not a JSON file")
