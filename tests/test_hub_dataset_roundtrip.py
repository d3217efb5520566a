"""Hub round trip of a pose dataset through the local Hub test double (tests/hub_server.py), in one test:
`posebh data build --push-to-hub` -> `load_pose_dataset(hub id)` -> a tiny training run with the dataset given by its
Hub id -> `evaluate_model` on the Hub copy. Plus: one clear line when a Hub dataset carries no posebh metadata."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from hub_server import FakeHub, hub_fixtures

from posebh_hf.cli import main as posebh
from posebh_hf.data import load_pose_dataset

_fake_hub, _hub_env = hub_fixtures()  # the `fake_hub` and `hub_env` fixtures

REPO = Path(__file__).resolve().parents[1]
NAME = "dlc_openfield"


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_push_load_train_and_evaluate_by_hub_id(fake_hub: FakeHub, hub_env: dict[str, str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from posebh_hf.model_evaluation import evaluate_model
    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.training import Trainer, load_train_config

    crops = shared_path("mdt_mini", "crops", NAME)
    repo_id = "lab/openfield-pose"
    # 1. build + push both splits (the second push keeps the first split and lists both in the card)
    for split, stem in (("train", "train"), ("validation", "val")):
        code = posebh(["data", "build", "--format", "coco-custom", "--annotations", str(crops / f"{NAME}_{stem}.json"),
                       "--images", str(crops), "--out", str(tmp_path / stem), "--split", split, "--no-progress",
                       "--push-to-hub", repo_id])
        assert code == 0, capsys.readouterr().err
    files = fake_hub.files(repo_id, repo_type="dataset")
    assert {"README.md", "posebh.json", "data/train-00000-of-00001.parquet",
            "data/validation-00000-of-00001.parquet"} <= set(files)
    card = files["README.md"].decode()
    assert "path: data/train-*.parquet" in card and "path: data/validation-*.parquet" in card
    assert "https://github.com/)" not in card and "load_pose_dataset(\"lab/openfield-pose\"" in card

    # 2. load by Hub id: same rows and skeleton as the local build, images decodable, description restored
    local, local_skeleton = load_pose_dataset(tmp_path / "train")
    remote, skeleton = load_pose_dataset(repo_id, split="train")
    assert skeleton == local_skeleton and skeleton.allows_flip == bool(skeleton.flip_pairs)
    assert remote.num_rows == local.num_rows and list(remote["image_id"]) == list(local["image_id"])
    assert remote.features["objects"] == local.features["objects"]
    from posebh_hf.data.features import skeleton_from_info
    from posebh_hf.data.image_io import decode_image

    assert skeleton_from_info(remote.info) == skeleton
    raw = remote.cast_column("image", type(remote.features["image"])(decode=False))[0]["image"]
    assert decode_image(raw).shape[:2] == (remote[0]["height"], remote[0]["width"])
    val, _ = load_pose_dataset(repo_id, split="validation")
    with pytest.raises(ValueError, match=r"has no split 'test' \(it has train, validation\)"):
        load_pose_dataset(repo_id, split="test")

    # 3. a tiny training run with the dataset given by its Hub id (train + validation splits)
    out = tmp_path / "run"
    overrides = [
        f"output_dir={out}", f"data.cache_dir={tmp_path / 'cache'}", "data.datasets=[]",
        f"data.datasets.0={{name: {NAME}, train: {repo_id}, val: {repo_id}, ratio: 1.0}}",
        "data.batch_size=4", "data.augment={input_size: [48, 64], heatmap_size: [12, 16]}",
        "model.variant=tiny", "model.num_cluster_prototypes=2", "mixed_precision=no",
        "model.config_overrides={image_size: [64, 48], num_hidden_layers: 1, embedding_channels: 16, embed_dim: 16}",
        "schedule.epochs=1", "schedule.steps_per_epoch=2", "schedule.warmup_steps=1", "schedule.heads_thaw_epoch=0",
        "schedule.backbone_thaw_epoch=0", "schedule.cps_start_epoch=never", "schedule.css_start_epoch=never",
        "eval.every_epochs=null", "eval.max_samples=8", "checkpoint.every_steps=null", "logging.every_steps=1",
    ]
    _reset_accelerate()
    result = Trainer(load_train_config(REPO / "configs" / "smoke.yaml", overrides)).train()
    assert result.step == 2 and all(math.isfinite(h["loss"]) for h in result.history)
    assert result.evaluations and math.isfinite(result.evaluations[-1][f"val/{NAME}/pck"])
    model = PoseBHForPoseEstimation.from_pretrained(result.final_model)
    assert model.config.skeletons[NAME]["keypoints"] == list(skeleton.keypoint_names)

    # 4. evaluate the trained model on the Hub copy of the validation split
    metrics = evaluate_model(model, val, "pck", skeleton=model.config.get_skeleton(NAME), progress=False)
    assert 0.0 <= metrics["PCK"] <= 1.0 and np.isfinite(metrics["EPE"])


def test_hub_dataset_without_posebh_metadata_is_one_clear_line(fake_hub: FakeHub, hub_env: dict[str, str],
                                                               tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import HfApi

    from posebh_hf.training.launch import main as train_main

    crops = shared_path("mdt_mini", "crops", NAME)
    assert posebh(["data", "build", "--format", "coco-custom", "--annotations", str(crops / f"{NAME}_val.json"),
                   "--images", str(crops), "--out", str(tmp_path / "val"), "--no-progress"]) == 0
    from posebh_hf.data.push import export_parquet

    upload = tmp_path / "bare"
    export_parquet(load_pose_dataset(tmp_path / "val")[0], upload, "train")  # parquet only: no posebh.json, no card
    api = HfApi()
    api.create_repo("lab/bare", repo_type="dataset")
    api.upload_folder(folder_path=upload, repo_id="lab/bare", repo_type="dataset")
    with pytest.raises(ValueError, match="Hub dataset lab/bare has no posebh metadata"):
        load_pose_dataset("lab/bare")
    with pytest.raises(ValueError, match="does not exist"):
        load_pose_dataset("lab/nothing-here")
    capsys.readouterr()
    code = train_main(["--config", str(REPO / "configs" / "smoke.yaml"), f"output_dir={tmp_path / 'run'}",
                       f"data.cache_dir={tmp_path / 'cache'}", "data.datasets=[]",
                       "data.datasets.0={name: bare, train: lab/bare}", "model.variant=tiny", "mixed_precision=no"])
    # download progress bars aside ("Fetching 1 files: ..."), the problem is one line
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Fetching" not in line]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: data.datasets['bare'].train: Hub dataset lab/bare has no posebh metadata")
    # the same for a local folder saved by plain `datasets.save_to_disk` (no posebh metadata)
    import datasets

    datasets.Dataset.from_dict({"x": [1]}).save_to_disk(str(tmp_path / "plain"))
    capsys.readouterr()  # drop save_to_disk's progress bar
    code = train_main(["--config", str(REPO / "configs" / "smoke.yaml"), f"output_dir={tmp_path / 'run2'}",
                       f"data.cache_dir={tmp_path / 'cache'}", "data.datasets=[]",
                       f"data.datasets.0={{name: plain, train: {tmp_path / 'plain'}}}", "model.variant=tiny",
                       "mixed_precision=no"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "dataset info has no posebh metadata" in err[0], err
