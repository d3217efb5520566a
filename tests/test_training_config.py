"""Training config: YAML + dotted overrides, strict keys with suggestions, the paper recipe's values."""

from __future__ import annotations

from pathlib import Path

import pytest

from posebh_hf.training import ConfigError, TrainConfig, load_train_config
from posebh_hf.training.config_io import apply_overrides, parse_override

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_paper_recipe() -> None:
    cfg = load_train_config(None)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("adamw", 1e-3, 0.1)
    assert (cfg.optimizer.layer_decay, cfg.optimizer.grad_clip) == (0.75, 1.0)
    assert (cfg.schedule.epochs, cfg.schedule.warmup_steps, cfg.schedule.warmup_ratio) == (100, 500, 0.001)
    w = cfg.losses
    assert (w.head, w.proto, w.ppc, w.ppd, w.phm, w.cps, w.css) == (1.0, 1.25e-5, 0.01, 0.001, 3.33e-6, 1e-2, 1e-3)
    assert (w.css_conf_thr, w.css_match_dist, w.momentum) == (0.25, 2.1, 0.999)


def test_paper_config_file_matches_spec() -> None:
    cfg = load_train_config(CONFIGS / "posebh_vitb.yaml")
    assert cfg.dataset_names == ["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"]
    assert cfg.schedule.lr_decay_epochs == [50, 90] and cfg.schedule.backbone_thaw_epoch == 90
    assert cfg.schedule.css_start_epoch == 90 and cfg.mixed_precision == "fp16"
    assert cfg.data.batch_size == 128 and cfg.model.num_cluster_prototypes == 96
    vith = load_train_config(CONFIGS / "posebh_vith.yaml")
    assert vith.optimizer.layer_decay == 0.8 and vith.model.variant == "huge"


@pytest.mark.parametrize("name", ["smoke", "transfer_smoke", "transfer_interhand", "transfer_pw3d"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_train_config(CONFIGS / f"{name}.yaml")
    assert cfg.mode in ("posebh", "transfer")


def test_dotted_overrides_replace_yaml_values(tmp_path: Path) -> None:
    path = _write(tmp_path, "output_dir: /a\nschedule: {epochs: 10}\ndata:\n  datasets:\n"
                            "    - {name: x, train: a.json, ratio: 1.0}\n    - {name: y, train: b.json, ratio: 1.0}\n")
    cfg = load_train_config(path, ["output_dir=/x", "schedule.epochs=3", "optimizer.lr=1e-4",
                                   "data.datasets.1.ratio=2", "schedule.css_start_epoch=50",
                                   "schedule.backbone_thaw_epoch=never", "logging.trackers=[]"])
    assert cfg.output_dir == "/x" and cfg.schedule.epochs == 3
    assert cfg.optimizer.lr == pytest.approx(1e-4)  # "1e-4" is a YAML string: coerced to float
    assert [d.ratio for d in cfg.data.datasets] == [1.0, 2.0]
    assert cfg.schedule.css_start_epoch == 50 and cfg.schedule.backbone_thaw_epoch == "never"
    assert cfg.logging.trackers == []


def test_unknown_keys_fail_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'schedule.epoch'.*did you mean 'epochs'"):
        load_train_config(None, ["schedule.epoch=3"])
    path = _write(tmp_path, "optimiser: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optimiser'.*'optimizer'"):
        load_train_config(path)
    path = _write(tmp_path, "losses: {pcc: 0.1}\n")
    with pytest.raises(ConfigError, match=r"'losses.pcc'.*'ppc'"):
        load_train_config(path)


@pytest.mark.parametrize(("override", "message"), [
    ("schedule.epochs=abc", "schedule.epochs: expected an integer"),
    ("optimizer.lr=-1", r"optimizer.lr must be a finite number > 0, got -1.0"),
    ("mode=foo", "mode must be one of"),
    ("schedule.css_start_epoch=later", "css_start_epoch must be an epoch number, null or 'never'"),
    ("schedule", "must look like key.sub=value"),
    ("data.datasets.3.ratio=1", "needs a list index"),
    ("data.datasets.1.nmae=x", "unknown config key 'data.datasets.1.nmae'"),
])
def test_bad_values_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    path = _write(tmp_path, "data:\n  datasets:\n    - {name: x, train: a.json}\n")
    with pytest.raises(ConfigError, match=message):
        load_train_config(path, [override])


def test_config_round_trips_through_dict() -> None:
    cfg = load_train_config(CONFIGS / "smoke.yaml")
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(_write(tmp_path, "a: [1, 2\n"))


def test_parse_override_values_are_yaml() -> None:
    assert parse_override("a.b=null") == (["a", "b"], None)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    data: dict = {}
    apply_overrides(data, ["x.y.z=1"])  # schema-less: creates the nesting
    assert data == {"x": {"y": {"z": 1}}}


def test_transfer_needs_exactly_one_dataset() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        load_train_config(None, ["mode=transfer"])


def test_fsdp_accelerate_config_is_valid() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / "fsdp_vith.yaml"))
    assert str(config.distributed_type).endswith("FSDP")
    assert config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "VitPoseBackboneLayer"
