"""Transfer to a new skeleton (spec §8): frozen embedding head, new prototypes, heads fine-tuned, pack export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import shared_path
from safetensors.torch import load_file
from test_training_run import _reset_accelerate

from posebh_hf.configuration_posebh import PoseBHConfig
from posebh_hf.hub.attach import attach_prototype_pack, embedding_fingerprint
from posebh_hf.hub.pack import PrototypePack
from posebh_hf.modeling import PoseBHForPoseEstimation
from posebh_hf.training import Trainer, load_train_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A (random) tiny PoseBH model on two skeletons, saved like a trained base model."""
    torch.manual_seed(0)
    config = PoseBHConfig.tiny(dataset_names=["coco", "ap10k"], num_hidden_layers=1, image_size=[64, 48],
                               embedding_channels=16, embed_dim=16)
    folder = tmp_path_factory.mktemp("base") / "model"
    PoseBHForPoseEstimation(config).save_pretrained(folder)
    return folder


def _transfer_config(base_dir: Path, tmp_path: Path, *extra: str):
    crops = shared_path("mdt_mini", "crops") / "dlc_openfield"
    out = tmp_path / "transfer"
    overrides = [
        f"output_dir={out}", f"model.init={base_dir}", "transfer.source_dataset=ap10k",
        f"data.datasets.0.train={crops / 'dlc_openfield_train.json'}",
        f"data.datasets.0.val={crops / 'dlc_openfield_val.json'}", f"data.cache_dir={tmp_path / 'cache'}",
        "data.augment={input_size: [48, 64], heatmap_size: [12, 16], use_udp: false}",
        "schedule.epochs=2", "schedule.steps_per_epoch=2", "schedule.warmup_steps=1", "eval.max_samples=8",
        "checkpoint.every_steps=2", "checkpoint.keep=null", "logging.every_steps=1", "logging.trackers=[]", *extra,
    ]
    _reset_accelerate()
    return load_train_config(REPO / "configs" / "transfer_smoke.yaml", overrides), out


def test_transfer_learns_new_prototypes_with_a_frozen_embedding_head(base_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cfg, out = _transfer_config(base_dir, tmp_path)
    assert cfg.transfer.prototype_init == "class_mean"
    trainer = Trainer(cfg)
    assert trainer.schedule.flags(0).update_prototypes and not trainer.schedule.flags(1).update_prototypes
    result = trainer.train()
    assert "prototypes warm-started on 2 batch(es) of epoch 0: 4 of 4 rows had pixels" in capsys.readouterr().out
    history = result.history
    assert [h["stage/train_embedding"] for h in history] == [0, 0, 0, 0]
    assert [h["stage/update_prototypes"] for h in history] == [1, 1, 0, 0]
    assert [h["stage/train_backbone"] for h in history] == [0, 0, 1, 1]
    assert history[0]["proto/drift"] > 0 and history[1]["proto/drift"] > 0
    assert "proto_loss" in history[0] and "cps_loss" not in history[-1] and "css_loss" not in history[-1]

    base = PoseBHForPoseEstimation.from_pretrained(base_dir)
    final = PoseBHForPoseEstimation.from_pretrained(result.final_model)
    assert final.config.dataset_names == ["openfield"] and final.config.num_keypoints == [4]
    assert final.config.backbone_config.num_experts == 1
    # the embedding head (weights and BatchNorm statistics) is exactly the base model's
    assert embedding_fingerprint(final) == embedding_fingerprint(base)
    # prototypes: learned while unfrozen (epoch 0), untouched afterwards (epoch 1)
    at_2 = load_file(out / "checkpoints" / "step_2" / "model.safetensors")["keypoint_prototypes.prototypes"]
    torch.testing.assert_close(final.keypoint_prototypes.prototypes, at_2, rtol=0, atol=0)

    # the exported pack attaches to the base model (same embedding space, routed through ap10k's expert)
    pack = PrototypePack.load(result.pack)
    assert pack.name == "openfield" and pack.num_keypoints == 4 and pack.dataset_index == 1
    torch.testing.assert_close(pack.prototypes, at_2)
    rows = attach_prototype_pack(base, pack)
    torch.testing.assert_close(base.keypoint_prototypes.prototypes[rows], pack.prototypes)
    manifest = json.loads((result.pack / "prototype_config.json").read_text())
    assert manifest["learned"]["method"] == "posebh-transfer"


def test_fitted_transfer_prototypes_are_kept_and_exported(base_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`transfer.prototype_init=fit`: fitted before the first step, then never moved by the momentum rule; the pack
    holds exactly them."""
    cfg, out = _transfer_config(base_dir, tmp_path, "transfer.prototype_init=fit", "transfer.prototype_init_batches=1")
    result = Trainer(cfg).train()
    assert "prototypes fitted on 1 batch(es) of epoch 0" in capsys.readouterr().out
    assert [h["stage/update_prototypes"] for h in result.history] == [0, 0, 0, 0]
    assert not any("proto/drift" in h for h in result.history)
    at_0 = load_file(out / "checkpoints" / "step_2" / "model.safetensors")["keypoint_prototypes.prototypes"]
    final = PoseBHForPoseEstimation.from_pretrained(result.final_model).keypoint_prototypes.prototypes
    torch.testing.assert_close(final, at_0, rtol=0, atol=0)
    pack = PrototypePack.load(result.pack)
    torch.testing.assert_close(pack.prototypes, at_0)
    assert pack.learned["prototype_init"] == "fit" and "fitted by gradient" in pack.learned["description"]


def test_random_transfer_prototypes_start_as_released(base_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = _transfer_config(base_dir, tmp_path, "transfer.prototype_init=random")
    result = Trainer(cfg).train()
    printed = capsys.readouterr().out
    assert "warm-started" not in printed and "fitted" not in printed
    assert result.history[0]["proto/drift"] > 0  # the momentum rule alone moves them


def test_transfer_prototype_init_is_validated() -> None:
    from posebh_hf.training import ConfigError

    with pytest.raises(ConfigError, match="transfer.prototype_init must be one of"):
        load_train_config(REPO / "configs" / "transfer_smoke.yaml", ["transfer.prototype_init=kmeans"])
    with pytest.raises(ConfigError, match="transfer.prototype_init_batches must be >= 1"):
        load_train_config(REPO / "configs" / "transfer_smoke.yaml", ["transfer.prototype_init_batches=0"])
