"""Initialisation from a saved model: experts / heads / prototypes by dataset name, MoE -> plain merge."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from posebh_hf.configuration_posebh import PoseBHConfig
from posebh_hf.modeling import PoseBHForPoseEstimation
from posebh_hf.skeletons import Skeleton, get_skeleton
from posebh_hf.training import ConfigError, build_model, load_train_config

IMAGE = [64, 48]


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco", "ap10k"], num_hidden_layers=1,
                                                      image_size=IMAGE))
    with torch.no_grad():  # make every BatchNorm non-trivial so that copies are visible
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
    folder = tmp_path_factory.mktemp("src") / "model"
    model.save_pretrained(folder)
    return folder


def _cfg(source: Path, mode: str, names: list[str], extra: list[str] = ()) -> object:
    datasets = [f"data.datasets.{i}={{name: {n}, train: x.json}}" for i, n in enumerate(names)]
    overrides = [f"mode={mode}", f"model.init={source}", "data.datasets=[]", *datasets, *extra]
    return load_train_config(None, overrides)


def _features(model: PoseBHForPoseEstimation, x: torch.Tensor, index: int) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.backbone_features(x, dataset_index=index)


def test_transfer_merges_the_source_expert_into_a_plain_backbone(source_dir: Path) -> None:
    source = PoseBHForPoseEstimation.from_pretrained(source_dir)
    hand = Skeleton.from_dict({"name": "paw", "keypoints": ["a", "b", "c"], "skeleton": [[1, 2]]})
    cfg = _cfg(source_dir, "transfer", ["paw"], ["transfer.source_dataset=ap10k"])
    model, text = build_model(cfg, {"paw": hand})
    assert model.config.backbone_config.num_experts == 1 and model.config.dataset_names == ["paw"]
    assert "initialised from" in text
    x = torch.randn(2, 3, *IMAGE)
    # plain fc2 = [fc2 ; experts[ap10k]]: identical features to the MoE routed through ap10k's expert
    torch.testing.assert_close(_features(model, x, 0), _features(source, x, 1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_features(source, x, 0), _features(source, x, 1))
    # head deconvs (and BN statistics) from ap10k's head; the final conv (3 != 17 keypoints) stays fresh
    torch.testing.assert_close(model.heads[0].deconv1.weight, source.heads[1].deconv1.weight)
    torch.testing.assert_close(model.heads[0].batchnorm1.running_mean, source.heads[1].batchnorm1.running_mean)
    assert model.heads[0].conv.weight.shape[0] == 3
    # the embedding head is copied (the pack must match the base model's); the prototypes are new
    for (name, a), (_, b) in zip(model.embedding_head.state_dict().items(),
                                 source.embedding_head.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert model.keypoint_prototypes.prototypes.shape[0] == 3


def test_posebh_init_maps_experts_heads_and_prototypes_by_name(source_dir: Path) -> None:
    source = PoseBHForPoseEstimation.from_pretrained(source_dir)
    cfg = _cfg(source_dir, "posebh", ["ap10k", "coco"], ["model.num_cluster_prototypes=4"])
    model, _ = build_model(cfg, {"ap10k": get_skeleton("ap10k"), "coco": get_skeleton("coco")})
    assert model.config.dataset_names == ["ap10k", "coco"]
    x = torch.randn(2, 3, *IMAGE)
    torch.testing.assert_close(_features(model, x, 0), _features(source, x, 1))
    torch.testing.assert_close(_features(model, x, 1), _features(source, x, 0))
    torch.testing.assert_close(model.heads[0].conv.weight, source.heads[1].conv.weight)
    src_rows, tgt_rows = source.prototype_rows("coco"), model.prototype_rows("coco")
    torch.testing.assert_close(model.keypoint_prototypes.prototypes[tgt_rows],
                               source.keypoint_prototypes.prototypes[src_rows])


def test_unknown_dataset_falls_back_and_bad_init_is_a_config_error(source_dir: Path, tmp_path: Path) -> None:
    bee = Skeleton.from_dict({"name": "bee", "keypoints": ["h", "t"], "skeleton": [[1, 2]]})
    cfg = _cfg(source_dir, "posebh", ["coco", "bee"], ["model.init_map={bee: ap10k}"])
    model, _ = build_model(cfg, {"coco": get_skeleton("coco"), "bee": bee})
    source = PoseBHForPoseEstimation.from_pretrained(source_dir)
    torch.testing.assert_close(model.heads[1].deconv2.weight, source.heads[1].deconv2.weight)
    with pytest.raises(ConfigError, match="model.init"):
        build_model(_cfg(tmp_path / "missing", "posebh", ["coco"]), {"coco": get_skeleton("coco")})


def test_grouped_experts_option_keeps_keys_and_function(source_dir: Path) -> None:
    names = ["coco", "ap10k"]
    skeletons = {n: get_skeleton(n) for n in names}
    plain, _ = build_model(_cfg(source_dir, "posebh", names), skeletons)
    grouped, _ = build_model(_cfg(source_dir, "posebh", names, ["model.grouped_experts=true"]), skeletons)
    assert plain.state_dict().keys() == grouped.state_dict().keys()
    x = torch.randn(3, 3, *IMAGE)
    index = torch.tensor([0, 1, 1])
    plain.eval(), grouped.eval()
    with torch.no_grad():
        torch.testing.assert_close(grouped.backbone_features(x, index), plain.backbone_features(x, index),
                                   rtol=1e-4, atol=1e-5)


def test_activation_checkpointing_option(source_dir: Path) -> None:
    names = ["coco", "ap10k"]
    model, _ = build_model(_cfg(source_dir, "posebh", names, ["model.activation_checkpointing=true"]),
                           {n: get_skeleton(n) for n in names})
    flags = [getattr(m, "gradient_checkpointing", False) for m in model.backbone.encoder.layer]
    assert flags and all(flags)
    model.train()
    out = model(torch.randn(2, 3, *IMAGE), dataset_index=[0, 1], heads="all")
    sum(h.mean() for h in out.heatmaps.values()).backward()
    assert model.backbone.encoder.layer[0].mlp.fc1.weight.grad is not None
