"""Two CPU processes (gloo) through `accelerate launch scripts/train.py`: DDP and FSDP2, identical ranks, resume.

The fast tests train the tiny two-dataset config for 6 steps (three stages) on 2 processes and check that the logged
validation equals a fresh evaluation of the saved `final/`, and that launches which would train two copies (or an
FSDP combination that cannot run on CPU) stop with one line. The slow ones kill a 30-step run mid-way and resume
it, run `configs/smoke.yaml` end to end under the 5-minute budget, and run it with FSDP2 (checkpoint, resume)
against the DDP result.
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
from safetensors.torch import load_file
from test_training_run import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
FSDP_CONFIG = REPO / "configs" / "accelerate" / "fsdp2_cpu.yaml"
LONGER = ["schedule.epochs=10", "schedule.steps_per_epoch=3", "schedule.heads_thaw_epoch=3",
          "schedule.prototype_freeze_epoch=3", "schedule.cps_start_epoch=3", "schedule.backbone_thaw_epoch=7",
          "schedule.css_start_epoch=7", "checkpoint.every_steps=3", "checkpoint.keep=null",
          "logging.param_digest=true", "eval.at_end=false"]


def _command(overrides: list[str], *extra: str, fsdp: bool = False, launcher: tuple[str, ...] = ()) -> list[str]:
    how = ["--config_file", str(FSDP_CONFIG), *launcher] if fsdp else \
        ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no"]
    return [sys.executable, "-m", "accelerate.commands.launch", *how, "--main_process_port", str(free_port()),
            "scripts/train.py", "--config", "configs/smoke.yaml", *extra, *overrides]


def _env(cpu: bool = True) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": str(REPO / "src")}
    env.pop("ACCELERATE_USE_CPU", None)
    return {**env, "ACCELERATE_USE_CPU": "1"} if cpu else env


def _launch(overrides: list[str], *extra: str, timeout: int = 600, fsdp: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(_command(overrides, *extra, fsdp=fsdp), cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _logged_eval(out: Path) -> dict[str, float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "eval"]
    assert evals, "no evaluation was logged"
    return {k: v for k, v in evals[-1].items() if k.startswith("val/")}


def _fresh_eval(out: Path, world_size: int = 2) -> dict[str, float]:
    """This process evaluates the saved `<out>/final` with the run's config, data cache and eval settings.

    The instances are split into the same per-process shards and batches as in the run (and one thread, as the
    ranks had), so the heatmaps are bit-identical: on a barely trained model DARK refinement of near-flat heatmaps
    turns float noise from another batch composition into large end-point errors (PCK and AP stay equal).
    """
    import torch

    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.training import load_train_config
    from posebh_hf.training.train_data import load_source
    from posebh_hf.training.validation import build_validation_sets, validate

    cwd = Path.cwd()
    os.chdir(REPO)  # the smoke config's data paths are relative to the repository root
    try:
        cfg = load_train_config(out / "train_config.yaml")
        cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else out / "data_cache"
        sources = [load_source(spec, "val", cache) if spec.val else None for spec in cfg.data.datasets]
        sets = build_validation_sets(cfg.data.datasets, sources, cfg.data.augment, cfg.eval)
    finally:
        os.chdir(cwd)
    model = PoseBHForPoseEstimation.from_pretrained(out / "final")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        parts: list[list] = []  # per validation set: the shards of ranks 1..W-1, then rank 0 merges them
        for rank in range(1, world_size):
            recorded: list = []
            validate(model, sets, cfg.eval, rank=rank, world_size=world_size,
                     gather=lambda obj, recorded=recorded: recorded.append(obj[0]) or obj)
            parts.append(recorded)
        per_set = iter(zip(*parts, strict=True))
        return validate(model, sets, cfg.eval, rank=0, world_size=world_size,
                        gather=lambda obj: [obj[0], *next(per_set)])
    finally:
        torch.set_num_threads(threads)


def _assert_logged_val_is_fresh_val(out: Path) -> float:
    """Logged val (2 processes, each scoring its share, gathered) == a fresh evaluation of the saved model."""
    logged, fresh = _logged_eval(out), _fresh_eval(out)
    assert set(logged) == set(fresh)
    worst = 0.0
    for key, value in logged.items():
        worst = max(worst, abs(fresh[key] - value))
        assert fresh[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    return worst


def _max_param_diff(a: Path, b: Path) -> float:
    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert set(left) == set(right)
    return max(float((left[k].double() - right[k].double()).abs().max()) if left[k].numel() else 0.0
               for k in left)


def _losses(out: Path) -> dict[int, float]:
    """Per-step loss (averaged over processes); for repeated steps (killed + resumed) the last record wins."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {int(r["step"]): r["loss"] for r in records if r["type"] == "train" and "loss" in r}


@pytest.fixture(scope="module")
def crops() -> Path:
    return shared_path("mdt_mini", "crops")


def test_two_processes_keep_identical_parameters_and_finish(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    _launch(tiny_overrides(crops, tmp_path / "cache", out, "logging.param_digest=true"))
    digests = sorted((out / "param_digest").glob("rank_*.txt"))
    assert [p.name for p in digests] == ["rank_0.txt", "rank_1.txt"]
    # parameters, prototype banks and BatchNorm statistics agree bit for bit
    assert digests[0].read_text() == digests[1].read_text()
    assert json.loads((out / "distributed.json").read_text())["kind"] == "ddp"
    assert sorted(_losses(out)) == list(range(1, 7))
    state = json.loads((out / "checkpoints" / "step_6" / "training_state.json").read_text())
    assert state["world_size"] == 2 and state["stage"]["stage"] == 3.0 and state["stage"]["css"] == 1.0
    assert (out / "final" / "model.safetensors").is_file()
    diff = _assert_logged_val_is_fresh_val(out)
    print(f"\nDDP tiny: logged val vs fresh evaluation of final/: max abs diff {diff:.3g}")


@pytest.mark.parametrize(("cpu", "launcher", "message"), [
    (False, (), "error: the launcher started 2 processes (WORLD_SIZE=2) but Accelerate runs 1 together"),
    (True, ("--fsdp_version", "1", "--fsdp_reshard_after_forward", "FULL_SHARD"),
     "error: FSDP version 1 cannot run on CPU"),
], ids=["fsdp-config-without-ACCELERATE_USE_CPU", "fsdp1-on-cpu"])
def test_launches_that_cannot_train_as_configured_stop_with_one_line(tmp_path: Path, cpu: bool,
                                                                     launcher: tuple[str, ...],
                                                                     message: str) -> None:
    out = tmp_path / "refused"  # stopped before any data is read: no shared data needed
    command = _command([f"output_dir={out}"], fsdp=True, launcher=launcher)
    proc = subprocess.run(command, cwd=REPO, env=_env(cpu), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    lines = [line.split("]: ", 1)[-1] for line in proc.stderr.splitlines() if "error: " in line]
    # one line per process that gets there (the launcher may stop the second rank once the first has exited)
    assert 1 <= len(lines) <= 2 and all(line.startswith(message) for line in lines), proc.stderr[-4000:]
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()


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


@pytest.fixture(scope="module")
def smoke_ddp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`configs/smoke.yaml` (generated figures) on 2 DDP processes, uninterrupted (36 steps, three stages)."""
    out = tmp_path_factory.mktemp("smoke") / "ddp"
    start = time.monotonic()
    _launch([f"output_dir={out}", "logging.param_digest=true"], timeout=900)
    (out / "elapsed_s.txt").write_text(f"{time.monotonic() - start:.1f}")
    return out


@pytest.mark.slow
def test_smoke_config_with_two_processes_under_five_minutes(smoke_ddp: Path) -> None:
    out = smoke_ddp
    elapsed = float((out / "elapsed_s.txt").read_text())
    assert (out / "final" / "model.safetensors").is_file()
    assert (out / "param_digest" / "rank_0.txt").read_text() == (out / "param_digest" / "rank_1.txt").read_text()
    stages = {json.loads(line).get("stage/stage") for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert {1.0, 2.0, 3.0} <= stages
    assert elapsed < 300, f"smoke run took {elapsed:.0f} s"


@pytest.mark.slow
def test_fsdp2_smoke_run_checkpoints_resumes_and_matches_ddp(smoke_ddp: Path, tmp_path: Path) -> None:
    out = tmp_path / "fsdp"
    common = [f"output_dir={out}", f"data.cache_dir={smoke_ddp / 'data_cache'}", "logging.param_digest=true"]
    _launch([*common, "max_steps=12"], fsdp=True, timeout=900)  # stops after the step-12 checkpoint
    assert (out / "checkpoints" / "step_12" / "training_state.json").is_file()
    state = json.loads((out / "checkpoints" / "step_12" / "training_state.json").read_text())
    assert state["launch"] == "fsdp2" and state["world_size"] == 2
    report = json.loads((out / "distributed.json").read_text())
    assert report["kind"] == "fsdp2" and report["world_size"] == 2
    assert {"", "backbone.encoder.layer.0", "backbone.encoder.layer.1"} == set(report["sharded_modules"])
    per_rank = report["param_bytes_per_rank"]
    assert len(per_rank) == 2 and sum(per_rank) == report["param_bytes_full"]  # every parameter sharded, no copy
    assert max(per_rank) < 0.51 * report["param_bytes_full"]
    _launch(common, "--resume", "latest", fsdp=True, timeout=900)
    # the resumed FSDP run and the uninterrupted DDP run: same losses, same final model (within float noise)
    resumed, expected = _losses(out), _losses(smoke_ddp)
    assert sorted(resumed) == sorted(expected)
    for step, loss in expected.items():
        assert resumed[step] == pytest.approx(loss, rel=1e-4), step
    diff = _max_param_diff(out / "final", smoke_ddp / "final")
    assert diff < 1e-4, diff
    assert (out / "param_digest" / "rank_0.txt").read_text() == (out / "param_digest" / "rank_1.txt").read_text()
    assert json.loads((out / "final" / "config.json").read_text())["architectures"] == ["PoseBHForPoseEstimation"]
    ddp_val, fsdp_val = _assert_logged_val_is_fresh_val(smoke_ddp), _assert_logged_val_is_fresh_val(out)
    print(f"\nFSDP2 (resumed at step 12) vs DDP, smoke config: max abs parameter/buffer diff {diff:.3g}; "
          f"logged val vs fresh evaluation of final/: DDP {ddp_val:.3g}, FSDP2 {fsdp_val:.3g}; parameter bytes per "
          f"rank {per_rank} of {report['param_bytes_full']}")


@pytest.mark.parametrize("init", ["class_mean", "fit"])
def test_two_process_transfer_starts_the_same_prototypes_on_every_rank(crops: Path, tmp_path: Path,
                                                                       init: str) -> None:
    """`transfer.prototype_init`: class-mean sums are added over processes and the fit is broadcast from rank 0, so
    both ranks hold the same bank (and everything else) at the end. The momentum rule is off (prototypes frozen from
    epoch 0): its post-step average would hide a start that differs between ranks."""
    import torch

    from posebh_hf.configuration_posebh import PoseBHConfig
    from posebh_hf.modeling import PoseBHForPoseEstimation

    torch.manual_seed(0)
    base = tmp_path / "base"
    PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco", "ap10k"], num_hidden_layers=1,
                                              image_size=[64, 48], embedding_channels=16, embed_dim=16)
                            ).save_pretrained(base)
    out, openfield = tmp_path / "transfer", crops / "dlc_openfield"
    proc = _launch([f"output_dir={out}", f"model.init={base}", "transfer.source_dataset=ap10k",
                    f"data.datasets.0.train={openfield / 'dlc_openfield_train.json'}",
                    f"data.datasets.0.val={openfield / 'dlc_openfield_val.json'}", f"data.cache_dir={tmp_path / 'c'}",
                    "data.augment={input_size: [48, 64], heatmap_size: [12, 16], use_udp: false}",
                    "schedule.epochs=2", "schedule.steps_per_epoch=2", "schedule.warmup_steps=1",
                    "eval.max_samples=8", "logging.param_digest=true", "logging.trackers=[]",
                    "schedule.prototype_freeze_epoch=0", f"transfer.prototype_init={init}",
                    "transfer.prototype_init_batches=2"],
                   "--config", "configs/transfer_smoke.yaml")
    assert ("prototypes fitted on 2 batch(es)" if init == "fit" else "prototypes warm-started on 2 batch(es)") \
        in proc.stdout + proc.stderr
    digests = sorted((out / "param_digest").glob("rank_*.txt"))
    assert len(digests) == 2 and digests[0].read_text() == digests[1].read_text()
