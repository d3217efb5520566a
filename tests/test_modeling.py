"""PoseBHForPoseEstimation: output contract, routing, prototype heatmaps, init, save/load and Auto classes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForPoseEstimation

import posebh_hf  # noqa: F401  (registers the Auto classes)
from posebh_hf.configuration_posebh import PoseBHConfig
from posebh_hf.modeling import PoseBHForPoseEstimation, PoseBHOutput, prototype_heatmaps
from posebh_hf.skeletons import get_skeleton

torch.set_grad_enabled(True)


def _randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics so eval-mode heads are not identities on the running stats."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))


def _randomise_convs(model: torch.nn.Module, seed: int = 0) -> None:
    """Head/embedding convs at ~unit gain (the official 0.001 init makes every output nearly zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and not name.startswith("backbone"):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / fan_in**0.5)


@pytest.fixture(scope="module")
def model() -> PoseBHForPoseEstimation:
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny()).eval()
    _randomise_batchnorm(model)
    _randomise_convs(model)
    return model


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(1))


def _unit_norm(protos: torch.Tensor) -> bool:
    return bool(torch.isfinite(protos).all()) and torch.allclose(protos.norm(dim=-1), torch.ones(()), atol=1e-5)


# ----------------------------------------------------------------------------------------------- output contract
@torch.no_grad()
def test_default_heads_are_the_datasets_in_the_batch(model, pixels) -> None:
    out = model(pixels, dataset_index=torch.tensor([3, 0]))
    assert isinstance(out, PoseBHOutput)
    assert list(out.heatmaps) == ["coco", "ap10k"]  # dataset order, not batch order
    assert out.heatmaps["coco"].shape == (2, 17, 64, 48)
    assert out.embeddings is None and out.prototype_heatmaps is None
    assert list(out.keys()) == ["heatmaps"]


@torch.no_grad()
def test_all_heads_embeddings_and_prototype_heatmaps(model, pixels) -> None:
    out = model(pixels, 5, heads="all", output_embeddings=True, output_prototype_heatmaps=True)
    k = dict(zip(model.config.dataset_names, model.config.num_keypoints, strict=True))
    assert {name: hm.shape[1] for name, hm in out.heatmaps.items()} == k
    assert out.embeddings.shape == (2, 64, 64, 48)
    assert {name: hm.shape for name, hm in out.prototype_heatmaps.items()} == {
        name: (2, n, 64, 48) for name, n in k.items()}
    for hm in out.prototype_heatmaps.values():
        assert hm.dtype == torch.float32 and hm.min() >= 1e-4 and hm.max() <= 1 - 1e-4


@torch.no_grad()
def test_dataset_index_forms_are_equivalent(model, pixels) -> None:
    reference = model(pixels, torch.tensor([2, 2]), heads=["mpii"]).heatmaps["mpii"]
    for form in (2, "mpii", [2, 2], ["mpii", "mpii"], torch.tensor(2), torch.tensor([2, 2], dtype=torch.int32)):
        got = model(pixels, form, heads=["mpii"]).heatmaps["mpii"]
        torch.testing.assert_close(got, reference, rtol=0, atol=0)
    assert list(model(pixels, 2, heads=[0, "aic"]).heatmaps) == ["coco", "aic"]


@torch.no_grad()
def test_mixed_batch_routes_each_sample_through_its_expert(model, pixels) -> None:
    mixed = model(pixels, [0, 5], heads=["coco"]).heatmaps["coco"]
    first = model(pixels[:1], 0, heads=["coco"]).heatmaps["coco"]
    second = model(pixels[1:], 5, heads=["coco"]).heatmaps["coco"]
    assert mixed.abs().max() > 0.1  # outputs are not trivially small
    torch.testing.assert_close(mixed, torch.cat([first, second]), rtol=1e-5, atol=1e-5)
    other_expert = model(pixels[1:], 0, heads=["coco"]).heatmaps["coco"]
    assert (other_expert - second).abs().max() > 1e-3  # the expert actually changes the output


@pytest.mark.parametrize(
    ("index", "heads", "message"),
    [
        (6, None, r"values must lie in \[0, 6\)"),
        (-1, None, r"values must lie in \[0, 6\)"),
        ([0, 1, 2], None, r"shape \(2,\)"),
        (torch.zeros(2), None, "must hold integers"),
        (None, None, "dataset_index is required"),
        ("nope", None, "unknown dataset 'nope'"),
        (0, ["nope"], "unknown head 'nope'"),
        (0, [9], "head index 9 is out of range"),
    ],
)
def test_bad_dataset_index_or_heads_raise(model, pixels, index, heads, message) -> None:
    with pytest.raises(ValueError, match=message):
        model(pixels, index, heads=heads)


def test_single_dataset_model_needs_no_dataset_index() -> None:
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["interhand"])).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 192))
    assert list(out.heatmaps) == ["interhand"] and out.heatmaps["interhand"].shape == (1, 21, 64, 48)
    assert model.backbone.config.num_experts == 1


def test_simple_head_type_shapes() -> None:
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco"], head_type="simple")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 192), 0)
    assert out.heatmaps["coco"].shape == (1, 17, 64, 48)
    assert "heads.0.conv.weight" in model.state_dict() and model.heads[0].conv.kernel_size == (3, 3)


@torch.no_grad()
def test_hidden_states_pass_through(model, pixels) -> None:
    out = model(pixels, 0, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.backbone_config.num_hidden_layers + 1


# ----------------------------------------------------------------------------------------------- prototypes
def _reference_prototype_heatmaps(emb: torch.Tensor, protos: torch.Tensor, absolute: bool) -> torch.Tensor:
    """Spec §2.5 written out per prototype slot: normalise, (|)cos(|), max over M, clamp."""
    e = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)  # [B, D, H, W]
    p = protos / protos.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [k, M, D]
    best = None
    for m in range(p.shape[1]):
        s = (e.unsqueeze(1) * p[:, m, :, None, None].unsqueeze(0)).sum(dim=2)  # [B, k, H, W]
        s = s.abs() if absolute else s
        best = s if best is None else torch.maximum(best, s)
    return best.clamp(1e-4, 1 - 1e-4)


@pytest.mark.parametrize("similarity", ["abs_cosine", "cosine"])
def test_prototype_heatmaps_match_reference(similarity) -> None:
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(2, 8, 5, 4, generator=gen) * 3
    protos = torch.randn(6, 3, 8, generator=gen)
    got = prototype_heatmaps(emb, protos, similarity)
    expected = _reference_prototype_heatmaps(emb, protos, absolute=similarity == "abs_cosine")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    exact = prototype_heatmaps(protos[2, 1].reshape(1, 8, 1, 1), protos, similarity)
    assert exact[0, 2, 0, 0] == pytest.approx(1 - 1e-4)  # a pixel equal to a prototype -> clamp ceiling
    if similarity == "abs_cosine":  # the sign of the embedding does not matter under |cos|
        torch.testing.assert_close(prototype_heatmaps(-emb, protos, similarity), got)


def test_prototype_heatmaps_are_fp32_under_autocast() -> None:
    emb = torch.randn(1, 8, 3, 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = prototype_heatmaps(emb, torch.randn(4, 3, 8))
    assert out.dtype == torch.float32


@torch.no_grad()
def test_model_prototype_rows_and_helper(model, pixels) -> None:
    assert model.prototype_rows("aic") == slice(17, 31)
    assert model.prototype_rows("coco_wholebody") == slice(81, 214)
    out = model(pixels, 1, heads=["aic"], output_embeddings=True, output_prototype_heatmaps=True)
    expected = _reference_prototype_heatmaps(out.embeddings, model.keypoint_prototypes.prototypes[17:31], True)
    torch.testing.assert_close(out.prototype_heatmaps["aic"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.prototype_heatmaps(out.embeddings, "aic"), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no prototypes for 'x'"):
        model.prototype_heatmaps(out.embeddings, "x")
    assert model.skeleton("aic").keypoint_names == get_skeleton("aic").keypoint_names


def test_forward_does_not_touch_prototypes_and_gradients_flow(pixels) -> None:
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco", "mpii"])).train()
    before = model.keypoint_prototypes.prototypes.clone()
    out = model(pixels, [0, 1], heads="all", output_prototype_heatmaps=True)
    loss = sum(h.square().mean() for h in out.heatmaps.values()) + out.prototype_heatmaps["mpii"].mean()
    loss.backward()
    assert torch.equal(model.keypoint_prototypes.prototypes, before)
    assert not model.keypoint_prototypes.prototypes.requires_grad
    assert "keypoint_prototypes.prototypes" not in dict(model.named_parameters())
    for name in ("backbone.embeddings.position_embeddings", "heads.1.conv.weight", "embedding_head.out_conv.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------------------------- init / save / load
def test_fresh_model_init() -> None:
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(num_cluster_prototypes=4))
    protos = model.keypoint_prototypes.prototypes
    assert protos.shape == (214, 3, 64) and _unit_norm(protos)
    assert protos.std() > 0.1  # random directions, not a constant
    assert _unit_norm(model.keypoint_prototypes.cluster_prototypes)
    assert model.heads[0].deconv1.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert model.embedding_head.neck.conv1.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert torch.all(model.embedding_head.neck.conv1.bias == 0)
    assert torch.all(model.heads[5].batchnorm2.weight == 1)
    assert model.backbone.encoder.layer[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_save_load_round_trip_with_auto_classes(tmp_path, model, pixels) -> None:
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert tensors["keypoint_prototypes.prototypes"].shape == (214, 3, 64)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "posebh"
    assert isinstance(AutoConfig.from_pretrained(tmp_path), PoseBHConfig)
    for auto in (AutoModel, AutoModelForPoseEstimation, PoseBHForPoseEstimation):
        loaded = auto.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, PoseBHForPoseEstimation)
        assert torch.equal(loaded.keypoint_prototypes.prototypes, model.keypoint_prototypes.prototypes)
        with torch.no_grad():
            a = model(pixels, [1, 4], output_prototype_heatmaps=True)
            b = loaded(pixels, [1, 4], output_prototype_heatmaps=True)
        for name in ("aic", "apt36k"):
            torch.testing.assert_close(b.heatmaps[name], a.heatmaps[name], rtol=0, atol=0)
            torch.testing.assert_close(b.prototype_heatmaps[name], a.prototype_heatmaps[name], rtol=0, atol=0)


def test_checkpoint_without_prototypes_gets_fresh_unit_prototypes(tmp_path, model) -> None:
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    tensors = load_file(str(weights))
    del tensors["keypoint_prototypes.prototypes"]
    save_file(tensors, str(weights), metadata={"format": "pt"})
    loaded = AutoModel.from_pretrained(tmp_path)
    protos = loaded.keypoint_prototypes.prototypes
    assert _unit_norm(protos) and protos.std() > 0.1
    assert not torch.equal(protos, model.keypoint_prototypes.prototypes)
    assert torch.equal(loaded.heads[2].conv.weight, model.heads[2].conv.weight)  # everything else is loaded


def test_attached_prototype_skeleton_round_trips(tmp_path) -> None:
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco", "mpii"])).eval()
    hand = get_skeleton("interhand")
    rows = model.add_prototype_skeleton(hand)
    assert rows == slice(33, 54) and model.config.extra_prototype_skeletons == ["interhand"]
    assert _unit_norm(model.keypoint_prototypes.prototypes)
    with pytest.raises(ValueError, match="already has prototypes"):
        model.add_prototype_skeleton(hand)
    with pytest.raises(ValueError, match=r"must have shape \(24, 3, 64\)"):
        model.add_prototype_skeleton(get_skeleton("smpl24"), torch.randn(3, 3, 64))
    new = torch.randn(21, 3, 64)
    model.set_skeleton_prototypes("interhand", new)
    torch.testing.assert_close(model.keypoint_prototypes.prototypes[33:], F.normalize(new, dim=-1))
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.prototype_skeleton_names == ["coco", "mpii", "interhand"]
    assert torch.equal(loaded.keypoint_prototypes.prototypes, model.keypoint_prototypes.prototypes)
    with torch.no_grad():
        out = loaded(torch.randn(1, 3, 256, 192), 0, output_prototype_heatmaps=True,
                     prototype_skeletons=["interhand"])
    assert list(out.heatmaps) == ["coco"] and out.prototype_heatmaps["interhand"].shape == (1, 21, 64, 48)
    assert loaded.skeleton("interhand").keypoint_names == hand.keypoint_names


def test_cluster_bank_can_be_installed_and_saved(tmp_path) -> None:
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco"])).eval()
    assert model.keypoint_prototypes.cluster_prototypes is None
    model.set_cluster_prototypes(torch.randn(5, 3, 64))
    assert model.config.num_cluster_prototypes == 5
    assert _unit_norm(model.keypoint_prototypes.cluster_prototypes)
    heat = model.keypoint_prototypes.cluster_heatmaps(torch.randn(1, 64, 4, 4))
    assert heat.shape == (1, 5, 4, 4)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.keypoint_prototypes.cluster_prototypes, model.keypoint_prototypes.cluster_prototypes)
