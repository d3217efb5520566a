"""Where the BlazePose model files come from (layer 0): `pose_detection.tflite` (the person detector, 2.9 MB) and
`pose_landmark_full.tflite` (the landmark model that tightens its boxes, 6.4 MB) ship inside the `mediapipe`
wheel (Apache-2.0) and are copied once into a cache folder. Nothing here imports mediapipe (it needs numpy<2) or
reaches the network unless `fetch_models` is asked to run `pip download`.

    python -m posebh_hf.detection.model_file                # pip download mediapipe==0.10.14 (no deps), extract
    python -m posebh_hf.detection.model_file WHEEL_OR_DIR   # extract from a wheel (or its folder) you already have

Lookup order of `find_model(kind)`: an explicit path, `$POSEBH_BLAZEPOSE_DIR/<file>`, the cache
(`$POSEBH_CACHE` or `~/.cache/posebh_hf`, then `blazepose/<file>`), an installed `mediapipe` package (found without
importing it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = ["FETCH_COMMAND", "MEDIAPIPE_VERSION", "MODELS", "ModelNotFoundError", "cache_dir", "extract_models",
           "fetch_models", "find_model"]

MEDIAPIPE_VERSION = "0.10.14"
# kind -> (member of the wheel, sha256 of the file in the 0.10.14 wheels; other versions may differ and still work)
MODELS = {
    "detector": ("mediapipe/modules/pose_detection/pose_detection.tflite",
                 "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    "landmarks": ("mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                  "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
}
ENV_DIR = "POSEBH_BLAZEPOSE_DIR"
FETCH_COMMAND = "python -m posebh_hf.detection.model_file"


class ModelNotFoundError(FileNotFoundError):
    """A BlazePose model file is in none of the places `find_model` looks; the message names the command."""


def cache_dir() -> Path:
    """`$POSEBH_CACHE/blazepose`, else `~/.cache/posebh_hf/blazepose`."""
    root = os.environ.get("POSEBH_CACHE") or Path.home() / ".cache" / "posebh_hf"
    return Path(root) / "blazepose"


def _file_name(kind: str) -> str:
    if kind not in MODELS:
        raise ValueError(f"unknown BlazePose model {kind!r}; one of {sorted(MODELS)}")
    return MODELS[kind][0].rsplit("/", 1)[1]


def _installed_mediapipe(kind: str) -> Path | None:
    try:
        spec = importlib.util.find_spec("mediapipe")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location).parent / MODELS[kind][0]
        if path.is_file():
            return path
    return None


def find_model(kind: str = "detector", path: str | os.PathLike | None = None) -> Path:
    """The .tflite file for `kind` ("detector" or "landmarks"); raises `ModelNotFoundError` (one line naming the
    command that fixes it) when absent."""
    name = _file_name(kind)
    if path is not None:
        if not Path(path).is_file():
            raise ModelNotFoundError(f"BlazePose {kind} model {path} does not exist")
        return Path(path)
    env = os.environ.get(ENV_DIR)
    if env:
        if not (Path(env) / name).is_file():
            raise ModelNotFoundError(f"${ENV_DIR}={env} has no {name}: run `{FETCH_COMMAND}` or unset it")
        return Path(env) / name
    cached = cache_dir() / name
    if cached.is_file():
        return cached
    installed = _installed_mediapipe(kind)
    if installed is not None:
        return installed
    raise ModelNotFoundError(
        f"the BlazePose person detector needs {cached}: run `{FETCH_COMMAND}` once (pip-downloads "
        f"mediapipe=={MEDIAPIPE_VERSION} without dependencies and copies its two .tflite files, Apache-2.0)")


def _members(source: Path) -> dict[str, bytes]:
    """kind -> file bytes from a mediapipe wheel, a folder holding one, or an unpacked wheel / site-packages."""
    if source.is_dir():
        unpacked = {kind: source / member for kind, (member, _) in MODELS.items()}
        if all(p.is_file() for p in unpacked.values()):
            return {kind: p.read_bytes() for kind, p in unpacked.items()}
        wheels = sorted(source.glob("mediapipe-*.whl"))
        if not wheels:
            raise ModelNotFoundError(f"no mediapipe-*.whl and no unpacked mediapipe/modules in {source}")
        source = wheels[-1]
    try:
        with zipfile.ZipFile(source) as archive:
            return {kind: archive.read(member) for kind, (member, _) in MODELS.items()}
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise ModelNotFoundError(f"cannot read the BlazePose models from {source} ({type(err).__name__}: {err})"
                                 ) from err


def extract_models(source: str | os.PathLike, dest_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Copy both .tflite files out of a mediapipe wheel (or a folder holding one, or an unpacked tree) into
    `dest_dir` (default `cache_dir()`), each atomically. Returns kind -> written path."""
    dest = Path(dest_dir) if dest_dir is not None else cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, data in _members(Path(source)).items():
        final = dest / _file_name(kind)
        with tempfile.NamedTemporaryFile(dir=dest, prefix=f".{final.stem}.", delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, final)
        written[kind] = final
    return written


def fetch_models(dest_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """`pip download` the mediapipe wheel (no dependencies; a pinned manylinux cp311 wheel whatever this Python is,
    since only its model files are used) into a temporary folder and extract them. Needs the package index."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", f"mediapipe=={MEDIAPIPE_VERSION}", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
                        "--quiet", "-d", tmp], check=True)
        return extract_models(tmp, dest_dir)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        written = extract_models(args[0]) if args else fetch_models()
    except (ModelNotFoundError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for kind, path in written.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        note = "" if digest == MODELS[kind][1] else f" (sha256 {digest[:12]}..., not the {MEDIAPIPE_VERSION} file)"
        print(f"{path}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
