"""`posebh demo`: finds app/app.py in the checkout, says clearly when it cannot, and serves the page."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port

from posebh_hf.cli import demo as demo_cli
from posebh_hf.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_the_app_is_found_in_the_checkout(monkeypatch):
    monkeypatch.delenv(demo_cli.APP_DIR_ENV, raising=False)
    assert demo_cli.find_app_file() == REPO / "app" / "app.py"


def test_a_missing_app_folder_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(demo_cli.APP_DIR_ENV, str(tmp_path))
    assert main(["demo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path / "app.py") in err and "POSEBH_APP_DIR" in err


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    import torch

    from posebh_hf.configuration_posebh import PoseBHConfig
    from posebh_hf.modeling import PoseBHForPoseEstimation

    torch.manual_seed(0)
    PoseBHForPoseEstimation(PoseBHConfig.tiny()).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_posebh_demo_serves_the_page(tiny_model):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-c", "import sys; from posebh_hf.cli import main; sys.exit(main())",
           "demo", "--model", str(tiny_model), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        page = ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode("utf-8", "replace")
                    break
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read()
        assert "PoseBH demo" in page  # the Blocks title
    finally:
        proc.terminate()
        proc.wait(timeout=30)
