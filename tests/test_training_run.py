"""End-to-end training runs on mdt_mini in one process (the fast CI path): stages, outputs, resume, non-finite.

A tiny model on two small mdt_mini datasets at 64 x 48 input, 6 steps through all three stages.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import shared_path

from posebh_hf.modeling import PoseBHForPoseEstimation
from posebh_hf.processing_posebh import PoseBHImageProcessor
from posebh_hf.training import NonFiniteLossError, StepResult, Trainer, load_train_config

REPO = Path(__file__).resolve().parents[1]


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def crops() -> Path:
    return shared_path("mdt_mini", "crops")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data_cache")


def tiny_overrides(crops: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    """Two datasets, 64x48 crops, 3 epochs x 2 steps: stage 1 (epoch 0), 2 (epoch 1), 3 + CSS (epoch 2)."""
    sets = []
    for i, name in enumerate(["coco_mini", "dlc_openfield"]):
        folder = crops / name
        sets.append(f"data.datasets.{i}={{name: {name}, train: {folder / (name + '_train.json')}, "
                    f"val: {folder / (name + '_val.json')}, ratio: 1.0}}")
    return [f"output_dir={out}", f"data.cache_dir={cache}", "data.datasets=[]", *sets,
            "data.batch_size=4", "data.augment={input_size: [48, 64], heatmap_size: [12, 16]}",
            "model.variant=tiny", "model.num_cluster_prototypes=8", "mixed_precision=no",
            "model.config_overrides={image_size: [64, 48], num_hidden_layers: 1, embedding_channels: 16, "
            "embed_dim: 16}",
            "schedule.epochs=3", "schedule.steps_per_epoch=2", "schedule.warmup_steps=2",
            "schedule.heads_thaw_epoch=1", "schedule.prototype_freeze_epoch=1", "schedule.cps_start_epoch=1",
            "schedule.backbone_thaw_epoch=2", "schedule.css_start_epoch=2", "losses.cluster_iters=20",
            "eval.every_epochs=null", "eval.max_samples=8", "checkpoint.every_steps=3", "checkpoint.keep=2",
            "logging.every_steps=1", *extra]


def _run(overrides: list[str], resume: str | None = None):
    _reset_accelerate()
    cfg = load_train_config(REPO / "configs" / "smoke.yaml", overrides)
    return Trainer(cfg).train(resume=resume)


def _losses(out: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {int(r["step"]): r["loss"] for r in records if r["type"] == "train" and "loss" in r}


def test_run_passes_all_stages_and_saves_everything(crops: Path, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _run(tiny_overrides(crops, cache, out, "logging.param_digest=true"))
    assert result.step == 6
    stages = [h["stage/stage"] for h in result.history]
    assert stages == [1, 1, 2, 2, 3, 3]
    assert [h["stage/css"] for h in result.history] == [0, 0, 0, 0, 1, 1]
    assert "cps_loss" in result.history[2] and "css_loss" in result.history[-1]
    assert "proto/drift" in result.history[0] and "lr" in result.history[0]
    assert all(math.isfinite(h["loss"]) for h in result.history)
    # final model: save_pretrained + card, loadable
    final = result.final_model
    assert final is not None and {"config.json", "model.safetensors", "README.md",
                                  "preprocessor_config.json"} <= {p.name for p in final.iterdir()}
    # written whole through the one model-folder writer: ordinary permissions (was mkdtemp's 0700), no staging left
    umask = os.umask(0)
    os.umask(umask)
    assert final.stat().st_mode & 0o777 == 0o777 & ~umask
    assert {p.name: p.stat().st_mode & 0o777 for p in final.iterdir()} == dict.fromkeys(
        [p.name for p in final.iterdir()], 0o666 & ~umask)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    processor = PoseBHImageProcessor.from_pretrained(final)
    assert processor.input_size == (48, 64) and processor.heatmap_size == {"height": 16, "width": 12}
    model = PoseBHForPoseEstimation.from_pretrained(final)
    assert model.config.dataset_names == ["coco_mini", "dlc_openfield"]
    # the model carries how its heads must be decoded: the mode its training targets were made with
    assert model.config.decoding == {"coco_mini": "udp", "dlc_openfield": "udp"}
    assert model.config.skeletons["dlc_openfield"]["keypoints"] == ["snout", "leftear", "rightear", "tailbase"]
    with torch.no_grad():
        heat = model(torch.zeros(1, 3, 64, 48), dataset_index=1).heatmaps["dlc_openfield"]
    assert heat.shape == (1, 4, 16, 12)
    # the cluster bank built at the stage switch is part of the saved model
    assert model.keypoint_prototypes.cluster_prototypes.abs().sum() > 0
    # checkpoints (atomic folders with the training state), trackers, metrics, evaluation
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step_3", "step_6"]
    state = json.loads((out / "checkpoints" / "step_6" / "training_state.json").read_text())
    assert state["step"] == 6 and state["cluster_built"] and state["stage"]["css"] == 1.0
    assert list((out / "logs").rglob("events.out.tfevents*"))
    assert result.evaluations and "val/pck" in result.evaluations[-1]
    assert (out / "param_digest" / "rank_0.txt").is_file()
    assert (out / "train_config.yaml").is_file()


def test_resume_continues_with_the_same_next_step_loss(crops: Path, cache: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    _run(tiny_overrides(crops, cache, full, "eval.at_end=false"))
    reference = _losses(full)
    part = tmp_path / "part"
    first = _run(tiny_overrides(crops, cache, part, "eval.at_end=false", "max_steps=3"))
    assert first.step == 3
    resumed = _run(tiny_overrides(crops, cache, part, "eval.at_end=false"), resume="latest")
    assert resumed.step == 6
    again = _losses(part)
    assert sorted(again) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):  # the first step after the checkpoint and the rest of the run (stage 2 -> 3)
        assert again[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-9), step


def test_nonfinite_steps_are_skipped_then_the_run_stops(crops: Path, cache: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import posebh_hf.training.trainer as trainer_module

    real = trainer_module.compute_losses
    calls = {"n": 0}

    def flaky(model, bank, batch, flags, ctx):  # NaN on the 2nd call, then always from the 4th on
        result = real(model, bank, batch, flags, ctx)
        calls["n"] += 1
        if calls["n"] == 2 or calls["n"] >= 4:
            return StepResult(result.loss * float("nan"), {**result.logs, "loss": float("nan")},
                              result.new_prototypes)
        return result

    monkeypatch.setattr(trainer_module, "compute_losses", flaky)
    _reset_accelerate()
    cfg = load_train_config(REPO / "configs" / "smoke.yaml",
                            tiny_overrides(crops, cache, tmp_path / "nan", "max_nonfinite_steps=2"))
    trainer = Trainer(cfg)
    with pytest.raises(NonFiniteLossError, match=r"2 consecutive steps had a non-finite loss"):
        trainer.train()
    assert trainer.state.nonfinite_total == 3 and trainer.state.optimizer_steps == 2
    params = {k: v for k, v in trainer.unwrapped.named_parameters()}
    assert all(torch.isfinite(p).all() for p in params.values())
    assert torch.isfinite(trainer.unwrapped.keypoint_prototypes.prototypes).all()


class _Planted:
    """A pickle that would run code when unpickled (the RNG file of a malicious checkpoint)."""

    def __reduce__(self):
        return (print, ("planted code ran",))


@pytest.mark.parametrize("damage", ["truncated_rng", "planted_rng", "missing_rng", "truncated_optimizer",
                                    "bad_state"])
def test_resume_refuses_a_checkpoint_it_cannot_fully_read(crops: Path, cache: Path, tmp_path: Path,
                                                          damage: str, capsys: pytest.CaptureFixture) -> None:
    import pickle

    from posebh_hf.training.config import ConfigError

    part = tmp_path / "part"
    _run(tiny_overrides(crops, cache, part, "eval.at_end=false", "max_steps=3"))
    ckpt = part / "checkpoints" / "step_3"
    rng, optimizer = ckpt / "random_states_0.pkl", ckpt / "optimizer.bin"
    if damage == "truncated_rng":
        rng.write_bytes(rng.read_bytes()[: rng.stat().st_size // 2])
    elif damage == "planted_rng":
        rng.write_bytes(pickle.dumps(_Planted()))
    elif damage == "missing_rng":
        rng.unlink()
    elif damage == "truncated_optimizer":
        optimizer.write_bytes(optimizer.read_bytes()[:100])
    else:
        state = json.loads((ckpt / "training_state.json").read_text())
        (ckpt / "training_state.json").write_text(json.dumps({**state, "step": "three"}))
    expected = {"truncated_rng": "random-generator state random_states_0.pkl cannot be read",
                "planted_rng": "random-generator state random_states_0.pkl cannot be read",
                "missing_rng": "random-generator state random_states_0.pkl is missing",
                "truncated_optimizer": "optimizer state optimizer.bin cannot be read",
                "bad_state": "field 'step' must be a non-negative integer, got 'three'"}[damage]
    with pytest.raises(ConfigError, match=re.escape(expected)):
        _run(tiny_overrides(crops, cache, part, "eval.at_end=false"), resume="latest")
    assert "planted code ran" not in capsys.readouterr().out
    if damage.endswith("_rng"):  # the explicit way through: resumed, with a warning that says what was lost
        resumed = _run(tiny_overrides(crops, cache, part, "eval.at_end=false", "checkpoint.allow_lost_rng=true"),
                       resume="latest")
        assert resumed.step == 6
        err = capsys.readouterr().err
        assert "resuming with freshly seeded generators" in err and "planted code ran" not in err


def test_flip_test_validation_runs_in_training_and_the_card_names_it(crops: Path, cache: Path,
                                                                     tmp_path: Path) -> None:
    """`eval.flip_test=true`: the end-of-run validation flips (coco_mini has flip pairs), and the final card's
    results say which protocol they come from."""
    out = tmp_path / "flip"
    result = _run(tiny_overrides(crops, cache, out, "mode=multihead", "schedule.epochs=1", "schedule.heads_thaw_epoch=0",
                                 "schedule.backbone_thaw_epoch=0", "eval.flip_test=true",
                                 "eval.max_samples=4", "checkpoint.every_steps=null"))
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r["type"] == "eval" and "val/coco_mini/pck" in r for r in evals)
    assert "val (GT-box crops, flip test)" in (result.final_model / "README.md").read_text()
