"""Layer-wise lr decay and weight-decay groups (spec §5.3, mmcv LayerDecayOptimizerConstructor)."""

from __future__ import annotations

import pytest
import torch

from posebh_hf.configuration_posebh import PoseBHConfig
from posebh_hf.modeling import PoseBHForPoseEstimation
from posebh_hf.training import OptimizerConfig, build_optimizer, layer_id, no_weight_decay, param_groups


@pytest.fixture(scope="module")
def model() -> PoseBHForPoseEstimation:
    return PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco", "ap10k"], num_hidden_layers=2))


def test_layer_ids_follow_the_official_rule() -> None:
    # ViT-B: L = 12 + 2 = 14; embeddings 0, block i -> i + 1, the rest L - 1 = 13
    assert layer_id("backbone.embeddings.position_embeddings", 12) == 0
    assert layer_id("backbone.embeddings.patch_embeddings.projection.weight", 12) == 0
    assert layer_id("backbone.encoder.layer.0.attention.attention.query.weight", 12) == 1
    assert layer_id("backbone.encoder.layer.11.mlp.experts.5.weight", 12) == 12
    for name in ("backbone.layernorm.weight", "heads.3.conv.weight", "embedding_head.out_conv.bias"):
        assert layer_id(name, 12) == 13


def test_vit_b_scales() -> None:
    params = [(n, torch.nn.Parameter(torch.zeros(2, 2))) for n in
              ("backbone.embeddings.patch_embeddings.projection.weight", "backbone.encoder.layer.0.mlp.fc1.weight",
               "backbone.encoder.layer.11.mlp.fc1.weight", "heads.0.conv.weight")]
    groups = param_groups(params, num_layers=12, lr=1e-3, weight_decay=0.1, layer_decay=0.75)
    scales = {g["param_names"][0]: g["lr_scale"] for g in groups}
    assert scales["heads.0.conv.weight"] == 1.0
    assert scales["backbone.encoder.layer.11.mlp.fc1.weight"] == pytest.approx(0.75)
    assert scales["backbone.encoder.layer.0.mlp.fc1.weight"] == pytest.approx(0.75 ** 12)  # 0.0317
    assert scales["backbone.embeddings.patch_embeddings.projection.weight"] == pytest.approx(0.75 ** 13)
    h = param_groups(params[:1], num_layers=32, lr=1e-3, weight_decay=0.1, layer_decay=0.8)
    assert h[0]["lr_scale"] == pytest.approx(0.8 ** 33)  # 6.3e-4


def test_no_decay_rules() -> None:
    assert no_weight_decay("heads.0.conv.bias", torch.zeros(3, 3))
    assert no_weight_decay("backbone.layernorm.weight", torch.zeros(3))
    assert no_weight_decay("backbone.embeddings.position_embeddings", torch.zeros(1, 3, 4))
    assert not no_weight_decay("heads.0.conv.weight", torch.zeros(3, 3, 1, 1))


def test_every_parameter_in_exactly_one_group(model) -> None:
    groups = param_groups(model.named_parameters(), num_layers=2, lr=1e-3, weight_decay=0.1, layer_decay=0.75)
    names = [n for g in groups for n in g["param_names"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    for g in groups:
        decay = g["weight_decay"] > 0
        assert all(no_weight_decay(n, p) != decay for n, p in zip(g["param_names"], g["params"], strict=True))
    # the prototype banks are buffers: never optimised
    assert not any("prototypes" in n for n in names)


def test_build_optimizer_adamw_and_adam(model) -> None:
    opt = build_optimizer(model, OptimizerConfig(), num_layers=2)
    assert isinstance(opt, torch.optim.AdamW)
    top = [g for g in opt.param_groups if g["lr_scale"] == 1.0]
    assert top and all(g["base_lr"] == 1e-3 for g in opt.param_groups)
    adam = build_optimizer(model, OptimizerConfig(name="adam", layer_decay=None, weight_decay=0.0), num_layers=2)
    assert isinstance(adam, torch.optim.Adam) and {g["lr_scale"] for g in adam.param_groups} == {1.0}
    assert {g["weight_decay"] for g in adam.param_groups} == {0.0}


def test_frozen_parameters_are_neither_stepped_nor_decayed(model) -> None:
    opt = build_optimizer(model, OptimizerConfig(lr=0.1), num_layers=2)
    frozen = model.backbone.encoder.layer[0].mlp.fc1.weight
    before = frozen.detach().clone()
    frozen.requires_grad_(False)
    out = model(torch.randn(2, 3, 256, 192), dataset_index=[0, 1], heads="all")
    sum(h.mean() for h in out.heatmaps.values()).backward()
    opt.step()
    assert torch.equal(frozen, before)  # no gradient: AdamW skips it entirely (no weight decay either)
    frozen.requires_grad_(True)
