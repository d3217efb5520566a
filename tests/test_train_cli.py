"""`posebh train` (installed verb) and `accelerate launch -m posebh_hf.train` on configs/smoke.yaml's generated data:
a bare clone can train (no ../shared). Tiny overrides: 1 layer, 64 x 48 crops, 3 epochs x 1 step (all stages)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from posebh_hf.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _tiny(out: Path, cache: Path) -> list[str]:
    return [f"output_dir={out}", f"data.cache_dir={cache}", "data.batch_size=4",
            "data.datasets.0.train=synth:person?train=8&val=4", "data.datasets.0.val=synth:person?train=8&val=4",
            "data.datasets.1.train=synth:quadruped?train=8&val=4",
            "data.datasets.1.val=synth:quadruped?train=8&val=4",
            "data.datasets.2.train=synth:bird?train=8&val=4", "data.datasets.2.val=synth:bird?train=8&val=4",
            "data.augment={input_size: [48, 64], heatmap_size: [12, 16]}", "model.num_cluster_prototypes=8",
            "model.config_overrides={image_size: [64, 48], num_hidden_layers: 1, embedding_channels: 16, "
            "embed_dim: 16}", "schedule.epochs=3", "schedule.steps_per_epoch=1", "schedule.warmup_steps=1",
            "losses.cluster_iters=10", "eval.max_samples=8", "checkpoint.every_steps=3", "logging.every_steps=1",
            "logging.trackers=[]"]


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_posebh_train_runs_the_smoke_config_on_generated_data(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    _reset_accelerate()
    try:
        assert main(["train", "--config", str(REPO / "configs" / "smoke.yaml"), *_tiny(out, cache)]) == 0
    finally:
        _reset_accelerate()
    assert f"final model: {out / 'final'}" in capsys.readouterr().out
    assert (out / "final" / "model.safetensors").is_file()
    assert sorted(p.name for p in (cache / "synth").iterdir())[0].startswith("synth-v1-bird-t8-v4")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "train" and "loss" in r] == [1, 2, 3]
    assert any(r["type"] == "eval" for r in records)


def test_posebh_train_reports_a_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _reset_accelerate()
    try:
        code = main(["train", "--config", str(REPO / "configs" / "smoke.yaml"), f"output_dir={tmp_path}",
                     "data.datasets.0.train=synth:dragon"])
    finally:
        _reset_accelerate()
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown synthetic kind 'dragon'" in err and "Traceback" not in err


def test_help_lists_train_and_synth_without_importing_them() -> None:
    # `import posebh_hf` itself loads torch and transformers (the Auto registrations); the new verbs add nothing.
    assert "train" in build_parser().format_help()
    code = ("import sys; from posebh_hf.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('posebh_hf.training', 'posebh_hf.train', 'posebh_hf.data.synth', 'sklearn') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.stdout.strip() == "[]", proc.stdout


def test_python_m_posebh_hf_train_under_accelerate_launch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "-m", "posebh_hf.train", "--config", "configs/smoke.yaml", *_tiny(out, tmp_path / "cache"),
               "eval.at_end=false"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert f"final model: {out / 'final'}" in proc.stdout
    assert (out / "final" / "model.safetensors").is_file()
