"""Selected-expert (grouped) MoE dispatch: same function, same parameters, same gradients as transformers' masked
MoE, fewer FLOPs; plus the SDPA / channels-last switches."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

from posebh_hf.conversion import vitpose_parity, vitpose_to_posebh_model
from posebh_hf.export import single_dataset_model
from posebh_hf.modeling import PoseBHConfig, PoseBHForPoseEstimation
from posebh_hf.modeling.fast_backbone import (
    GroupedExpertMLP,
    attention_implementation,
    clear_merged_weight_cache,
    disable_grouped_experts,
    enable_grouped_experts,
    expert_dispatch,
    expert_groups,
    heads_to_channels_last,
    set_attention_implementation,
    set_expert_dispatch,
)

SIZE = [64, 48]  # 4 x 3 tokens: fast, and the routing logic does not depend on the grid


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """O(1) random parameters everywhere (the default head init of 0.001 makes any difference look tiny)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = 0.1 if name.endswith("bias") else 0.3 / max(1, param[0].numel()) ** 0.25
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model


def tiny_model(seed: int = 0, **overrides) -> PoseBHForPoseEstimation:
    torch.manual_seed(seed)
    return randomize_(PoseBHForPoseEstimation(PoseBHConfig.tiny(image_size=SIZE, **overrides)), seed).eval()


def inputs(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


def assert_close(got: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> None:
    scale = max(1.0, expected.abs().max().item())
    diff = (got - expected).abs().max().item()
    assert diff <= tol * scale, f"max|diff| {diff:.3e} > {tol:g} x {scale:.2f}"


def explicit_moe_mlp(mlp: GroupedExpertMLP, hidden: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Independent reference: per sample, [fc2(h); experts[e](h)] with h = act(fc1(x)), written out by hand."""
    rows = []
    for sample, e in zip(hidden, indices.tolist(), strict=True):
        h = mlp.act(sample @ mlp.fc1.weight.T + mlp.fc1.bias)
        shared = h @ mlp.fc2.weight.T + mlp.fc2.bias
        expert = h @ mlp.experts[e].weight.T + mlp.experts[e].bias
        rows.append(torch.cat([shared, expert], dim=-1))
    return torch.stack(rows)


def test_grouped_mlp_matches_explicit_per_sample_reference():
    model = tiny_model()
    enable_grouped_experts(model)
    mlp = model.backbone.encoder.layer[0].mlp
    assert isinstance(mlp, GroupedExpertMLP)
    x = torch.randn(5, 12, 64, generator=torch.Generator().manual_seed(3))
    for index in ([3, 0, 3, 5, 0], [2, 2, 2, 2, 2], [0, 0, 1, 1, 4]):  # unsorted, one dataset, sorted runs
        indices = torch.tensor(index)
        with torch.no_grad():
            assert_close(mlp(x, indices), explicit_moe_mlp(mlp, x, indices))
            assert_close(mlp.masked(x, indices), explicit_moe_mlp(mlp, x, indices))


@pytest.mark.parametrize("index", [[3, 0, 3, 5, 0, 1], [4, 4, 4], [0, 0, 2, 2, 5]])
def test_grouped_model_equals_masked_model(index):
    model = tiny_model()
    x = inputs(len(index))
    with torch.no_grad():
        masked = model(x, index, heads="all", output_embeddings=True)
        assert enable_grouped_experts(model) == model.config.backbone_config.num_hidden_layers
        grouped = model(x, index, heads="all", output_embeddings=True)
    assert expert_dispatch(model) == "grouped"
    for name in model.config.dataset_names:
        assert_close(grouped.heatmaps[name], masked.heatmaps[name])
    assert_close(grouped.embeddings, masked.embeddings)
    # the expert actually matters here: another routing changes the output by far more than the tolerance
    other = [(i + 1) % 6 for i in index]
    with torch.no_grad():
        rerouted = model(x, other, heads=["coco"]).heatmaps["coco"]
    assert (rerouted - grouped.heatmaps["coco"]).abs().max() > 1e-3


def test_state_dict_and_parameters_are_shared_and_restored():
    model = tiny_model()
    before = model.state_dict()
    originals = [layer.mlp for layer in model.backbone.encoder.layer]
    enable_grouped_experts(model)
    assert enable_grouped_experts(model) == 2  # idempotent
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(after[k].data_ptr() == before[k].data_ptr() for k in before)
    model.load_state_dict(before, strict=True)
    assert disable_grouped_experts(model) == 2
    assert [layer.mlp for layer in model.backbone.encoder.layer] == originals
    assert expert_dispatch(model) == "masked"


def test_gradients_equal_masked_path():
    """Training keeps exact gradients, including exact zeros (not None) for experts absent from the batch."""
    index = [3, 0, 3, 1, 0]
    x = inputs(len(index))
    grads = {}
    for mode in ("masked", "grouped"):
        model = tiny_model().train()
        set_expert_dispatch(model, mode)
        out = model(x, index, heads="all", output_embeddings=True)
        weight = torch.Generator().manual_seed(5)
        loss = sum((h * torch.randn(h.shape, generator=weight)).sum() for h in out.heatmaps.values())
        loss = loss + out.embeddings.square().mean()
        loss.backward()
        grads[mode] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads["masked"].keys() == grads["grouped"].keys()
    for name, expected in grads["masked"].items():
        got = grads["grouped"][name]
        assert (got is None) == (expected is None), name
        if expected is not None:
            assert_close(got, expected, tol=1e-5)
    unused = "backbone.encoder.layer.0.mlp.experts.5.weight"
    assert grads["grouped"][unused] is not None and not grads["grouped"][unused].any()
    assert grads["grouped"]["backbone.encoder.layer.0.mlp.experts.3.weight"].abs().sum() > 0


def test_single_dataset_batch_costs_one_expert():
    """Grouped dispatch on one dataset costs the FLOPs of a plain ViT (merged network), masked costs all experts."""
    model = tiny_model()
    x = inputs(2)
    flops = {}
    for mode in ("masked", "grouped"):
        set_expert_dispatch(model, mode)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, 2, heads=["mpii"])
        flops[mode] = counter.get_total_flops()
    plain = single_dataset_model(model, "mpii")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        plain(x)
    cfg = model.config.backbone_config
    tokens = x.shape[0] * (SIZE[0] // 16) * (SIZE[1] // 16)
    per_expert = 2 * tokens * cfg.hidden_size * cfg.mlp_ratio * cfg.part_features * cfg.num_hidden_layers
    assert flops["grouped"] == counter.get_total_flops()
    assert flops["masked"] - flops["grouped"] == (cfg.num_experts - 1) * per_expert


def test_parity_against_transformers_with_grouped_dispatch(tmp_path):
    """The converter's parity check (mixed routing, every expert) passes with grouped dispatch too."""
    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(image_size=SIZE, patch_size=[16, 16], hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, num_experts=6, part_features=8, out_indices=[2])
    reference = randomize_(VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone,
                                                                  use_simple_decoder=False, num_labels=17)))
    reference.save_pretrained(tmp_path / "vitpose")
    model, _ = vitpose_to_posebh_model(tmp_path / "vitpose")
    enable_grouped_experts(model)
    diffs = vitpose_parity(tmp_path / "vitpose", model)
    assert len(diffs) == 6 and max(diffs.values()) <= 1e-5, diffs
    # the transformers model itself can be switched too
    x, index = inputs(4), torch.tensor([5, 1, 1, 0])
    with torch.no_grad():
        expected = reference(x, dataset_index=index).heatmaps
        assert enable_grouped_experts(reference) == 2
        assert_close(reference(x, dataset_index=index).heatmaps, expected)


def test_expert_groups():
    permutation, groups = expert_groups(torch.tensor([2, 2, 0, 0, 0]), 6)
    assert permutation is None and groups == [(2, 0, 2), (0, 2, 5)]
    permutation, groups = expert_groups(torch.tensor([1, 0, 1]), 6)
    assert permutation.tolist() == [1, 0, 2] and groups == [(0, 0, 1), (1, 1, 3)]
    assert expert_groups(torch.zeros(0, dtype=torch.long), 6) == (None, [])
    with pytest.raises(ValueError, match=r"\[6\] are out of range for 6 experts"):
        expert_groups(torch.tensor([0, 6]), 6)


def test_errors_and_plain_backbone():
    model = tiny_model()
    with pytest.raises(ValueError, match="expert_dispatch must be one of"):
        set_expert_dispatch(model, "fast")
    enable_grouped_experts(model)
    with pytest.raises(ValueError, match="dataset_index is required"):
        model.backbone.encoder.layer[0].mlp(torch.randn(1, 12, 64), None)
    plain = tiny_model(dataset_names=["coco"])
    assert enable_grouped_experts(plain) == 0 and expert_dispatch(plain) is None


def test_sdpa_is_the_default_and_matches_eager():
    model = tiny_model()
    assert attention_implementation(model) == "sdpa"
    x, index = inputs(3), [0, 3, 3]
    with torch.no_grad():
        sdpa = model(x, index, heads=["coco"]).heatmaps["coco"]
        set_attention_implementation(model, "eager")
        assert attention_implementation(model) == "eager"
        eager = model(x, index, heads=["coco"]).heatmaps["coco"]
    assert_close(sdpa, eager)
    with pytest.raises(ValueError, match="attention implementation must be one of"):
        set_attention_implementation(model, "flash")


def test_channels_last_heads_keep_values():
    model = tiny_model()
    x = inputs(2)
    with torch.no_grad():
        before = model(x, 1, heads=["aic"]).heatmaps["aic"]
        heads_to_channels_last(model.heads)
        assert model.heads[1].deconv1.weight.is_contiguous(memory_format=torch.channels_last)
        after = model(x, 1, heads=["aic"]).heatmaps["aic"]
    assert_close(after, before)


def test_merged_weight_cache_follows_weight_updates():
    """Inference caches the merged expert weights, but never serves stale ones after an update."""
    model, reference = tiny_model(), tiny_model()  # same weights; `reference` keeps the masked path
    enable_grouped_experts(model)
    mlp = model.backbone.encoder.layer[1].mlp
    x, index = inputs(2), [3, 3]

    def check() -> None:
        with torch.no_grad():
            assert_close(model(x, index, heads=["ap10k"]).heatmaps["ap10k"],
                         reference(x, index, heads=["ap10k"]).heatmaps["ap10k"])

    check()
    assert set(mlp._cache) == {3}
    cached_weight = mlp._cache[3][1]
    check()
    assert mlp._cache[3][1] is cached_weight  # reused, not rebuilt
    enable_grouped_experts(model)  # re-enabling with the same setting keeps the cache
    assert mlp._cache[3][1] is cached_weight
    with torch.no_grad():  # an optimiser-style in-place update of the expert, in both models
        for m in (model, reference):
            m.backbone.encoder.layer[1].mlp.experts[3].weight.add_(0.5)
    check()
    assert mlp._cache[3][1] is not cached_weight
    state = {k: v + 0.1 if ".mlp." in k else v for k, v in tiny_model(seed=1).state_dict().items()}
    model.load_state_dict(state)
    reference.load_state_dict(state)
    check()
    model.train()
    assert not mlp._cache
    model.eval()
    enable_grouped_experts(model, cache_merged_weights=False)
    check()
    assert not mlp._cache
    with torch.no_grad():  # `.data` writes bypass the version counter: the documented escape hatch
        mlp.experts[3].weight.data.mul_(2.0)
        reference.backbone.encoder.layer[1].mlp.experts[3].weight.mul_(2.0)
    check()
    enable_grouped_experts(model)  # cache on again; after `.data` surgery, clear it explicitly
    check()
    with torch.no_grad():
        mlp.experts[3].weight.data.mul_(0.5)
        reference.backbone.encoder.layer[1].mlp.experts[3].weight.mul_(0.5)
    clear_merged_weight_cache(model)
    check()
