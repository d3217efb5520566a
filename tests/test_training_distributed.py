"""Two CPU processes (gloo) through `accelerate launch scripts/train.py`: identical ranks, kill + resume, smoke.

The fast test trains the tiny two-dataset config for 6 steps (three stages) on 2 processes; the slow ones kill a
30-step run mid-way and resume it, and run `configs/smoke.yaml` end to end under the 5-minute budget.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, shared_path
from test_training_run import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
LONGER = ["schedule.epochs=10", "schedule.steps_per_epoch=3", "schedule.heads_thaw_epoch=3",
          "schedule.prototype_freeze_epoch=3", "schedule.cps_start_epoch=3", "schedule.backbone_thaw_epoch=7",
          "schedule.css_start_epoch=7", "checkpoint.every_steps=3", "checkpoint.keep=null",
          "logging.param_digest=true", "eval.at_end=false"]


def _command(overrides: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), "scripts/train.py", "--config", "configs/smoke.yaml",
            *extra, *overrides]


def _env() -> dict[str, str]:
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO / "src")}


def _launch(overrides: list[str], *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(_command(overrides, *extra), cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _losses(out: Path) -> dict[int, float]:
    """Per-step loss (averaged over processes); for repeated steps (killed + resumed) the last record wins."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {int(r["step"]): r["loss"] for r in records if r["type"] == "train" and "loss" in r}


@pytest.fixture(scope="module")
def crops() -> Path:
    return shared_path("mdt_mini", "crops")


def test_two_processes_keep_identical_parameters_and_finish(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    _launch(tiny_overrides(crops, tmp_path / "cache", out, "logging.param_digest=true", "eval.at_end=false"))
    digests = sorted((out / "param_digest").glob("rank_*.txt"))
    assert [p.name for p in digests] == ["rank_0.txt", "rank_1.txt"]
    assert digests[0].read_text() == digests[1].read_text()  # parameters and prototype banks agree bit for bit
    assert sorted(_losses(out)) == list(range(1, 7))
    state = json.loads((out / "checkpoints" / "step_6" / "training_state.json").read_text())
    assert state["world_size"] == 2 and state["stage"]["stage"] == 3.0 and state["stage"]["css"] == 1.0
    assert (out / "final" / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def reference(crops: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2-process run of 30 steps (stages at epochs 3 and 7)."""
    root = tmp_path_factory.mktemp("ddp")
    out = root / "reference"
    _launch(tiny_overrides(crops, root / "cache", out, *LONGER))
    return out


@pytest.mark.slow
def test_killed_two_process_run_resumes_with_the_same_losses(crops: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    overrides = tiny_overrides(crops, reference.parent / "cache", out, *LONGER)
    proc = subprocess.Popen(_command(overrides), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while not (out / "checkpoints" / "step_6" / "training_state.json").exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, mid-run
        proc.wait()
    assert not (out / "final").exists()
    done = sorted(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*"))
    assert done and done[-1] < 30
    _launch(overrides, "--resume", "latest")
    resumed, expected = _losses(out), _losses(reference)
    assert sorted(resumed) == list(range(1, 31))
    for step in range(done[-1] + 1, 31):
        assert resumed[step] == pytest.approx(expected[step], rel=1e-5), step
    digest = (out / "param_digest" / "rank_0.txt").read_text()
    assert digest == (out / "param_digest" / "rank_1.txt").read_text()


@pytest.mark.slow
def test_smoke_config_with_two_processes_under_five_minutes(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    start = time.monotonic()
    _launch([f"output_dir={out}", "logging.param_digest=true"], timeout=900)
    elapsed = time.monotonic() - start
    assert (out / "final" / "model.safetensors").is_file()
    assert (out / "param_digest" / "rank_0.txt").read_text() == (out / "param_digest" / "rank_1.txt").read_text()
    stages = {json.loads(line).get("stage/stage") for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert {1.0, 2.0, 3.0} <= stages
    assert elapsed < 300, f"smoke run took {elapsed:.0f} s"
