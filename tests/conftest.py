"""Shared fixtures. Real-data tests read ../shared/data and skip cleanly without it (a user's fresh clone)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("POSEBH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the calling test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the team's shared data folder beside the checkout); absent here")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers started by a test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_demo_app() -> ModuleType:
    """app/app.py, imported as `posebh demo` imports it, once per session (the module holds the app's state)."""
    from posebh_hf.cli.demo import load_app_module

    return sys.modules.get("posebh_demo_app") or load_app_module(REPO_ROOT / "app" / "app.py")


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """Tiny test models run faster on one thread; oversubscribing 2 cores made small ops 10-40x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
