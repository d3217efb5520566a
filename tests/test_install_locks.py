"""The install locks and make targets (issue 14): complete, hashed, CPU-consistent, and what the README promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"
NEVER = ("torch", "torchvision", "timm", "triton")  # torch is installed on its own; the others must stay out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock(name: str) -> dict[str, str]:
    """{package: version} of a lock, checking that every entry is pinned with at least one sha256 hash."""
    text = (LOCKS / name).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    pins: dict[str, str] = {}
    for entry in entries:
        if not entry.strip() or entry.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", entry)
        assert match, f"{name}: not pinned: {entry[:80]!r}"
        assert "--hash=sha256:" in entry, f"{name}: {match.group(1)} has no hash"
        pins[_norm(match.group(1))] = match.group(2)
    return pins


def _requirements(*extras: str) -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    names = {_norm(re.match(r"[A-Za-z0-9_.\-]+", s).group(0)) for s in specs}
    return names - {"posebh-hf", "torch"}


def test_locks_are_pinned_hashed_and_without_torch_or_cuda() -> None:
    for name in ("all.txt", "app.txt"):
        pins = _lock(name)
        assert not [p for p in pins if p in NEVER or p.startswith(("nvidia-", "cuda-"))], name
        assert pins["setuptools"]  # the build backend, for `pip install --no-build-isolation -e .`


def test_locks_cover_what_pyproject_declares() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    everything = re.search(r"\[(.*)\]", project["optional-dependencies"]["all"][0]).group(1).split(",")
    full, app = _lock("all.txt"), _lock("app.txt")
    assert not _requirements(*everything) - set(full)
    assert not _requirements("app", "eval") - set(app)  # eval: the `posebh` parser imports pycocotools
    assert all(full[p] == v for p, v in app.items())  # one resolution: the app's pins are the full lock's
    # the demo's lock is the app's, not everything: no test, lint, browser, ONNX or tracker packages
    assert not {"pytest", "ruff", "playwright", "olah", "onnxruntime", "tensorboard", "scikit-learn"} & set(app)
    assert "scikit-learn" in full  # the viz extra, for t-SNE prototype maps


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make (apt-get install make)")
def test_make_targets_install_their_lock_and_run_the_whole_suite(tmp_path: Path) -> None:
    def dry(*args: str) -> str:
        return subprocess.run(["make", "-n", f"VENV={tmp_path / 'v'}", *args], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout

    test, demo = dry("test"), dry("demo")
    assert "-r locks/all.txt" in test and "--require-hashes" in test and "pip check" in test
    assert "-r locks/app.txt" in demo and "locks/all.txt" not in demo
    pytest_line = next(line for line in test.splitlines() if " -m pytest " in line)
    assert " -x" not in pytest_line and "-m slow" not in pytest_line
    assert "torch==2.13.0" in test and "--index-url" not in test
    cpu = dry("test", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu")
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in cpu


def test_no_dangling_install_references() -> None:
    constraints = (REPO / "constraints.txt").read_text()
    assert "torchvision==" not in constraints and "torch==2.13.0" in constraints
    for doc in re.findall(r"docs/[\w.]+\.md", constraints + (REPO / "Makefile").read_text()):
        assert (REPO / doc).is_file(), doc
    install = (REPO / "docs" / "install.md").read_text()
    assert "TORCH_INDEX_URL" in install and "make lock" in install
