"""Shared fixtures. Real-data tests read ../shared/data and skip cleanly without it (a user's fresh clone).

../shared/data is the team's sample data (real corpus samples, mdt_mini, example photos): it lies beside the team's
checkouts and is not distributed with the repository. Everything else, the training smoke included (it trains on
generated figures, `posebh data synth`), runs without it. Skip reasons say what to install or set.
"""

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
SHARED_SKIP_PREFIX = "needs the team's sample data"
_shared_skips: set[str] = set()  # node ids of tests skipped for want of ../shared/data


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the calling test with a reason that says what to do."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{SHARED_SKIP_PREFIX} ({path}; not distributed with the repository): set "
                    f"POSEBH_SHARED_DATA=/path/to/shared/data to run it")
    return path


def require_extra(module: str, extra: str) -> ModuleType:
    """Import `module` or skip with the pip command of the optional extra that provides it."""
    return pytest.importorskip(module, reason=f"needs {module.split('.')[0]}: pip install -e '.[{extra}]' "
                                              f"(or `make test`, which installs every extra)")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and SHARED_SKIP_PREFIX in str(report.longrepr):
        _shared_skips.add(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line on the data-dependent skips, so a bare clone's count of skips is not a mystery."""
    if _shared_skips:
        terminalreporter.write_line(
            f"{len(_shared_skips)} tests skipped: they need the team's sample data ({SHARED_DATA} is absent; not "
            "distributed with the repository). Set POSEBH_SHARED_DATA to a copy to run them.")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers started by a test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def save_tiny_model(folder: Path, **config_kwargs) -> Path:
    """A `PoseBHConfig.tiny(**config_kwargs)` model with seed-0 weights saved to `folder` (the model of the CLI,
    pipeline and demo-input tests)."""
    import torch

    from posebh_hf import PoseBHConfig, PoseBHForPoseEstimation

    torch.manual_seed(0)
    PoseBHForPoseEstimation(PoseBHConfig.tiny(**config_kwargs)).save_pretrained(folder)
    return folder


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
