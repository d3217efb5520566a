"""The training step's maths: which terms run in which stage, where gradients go, the prototype update."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posebh_hf.codecs import encode_heatmaps
from posebh_hf.configuration_posebh import PoseBHConfig
from posebh_hf.losses import cluster_keypoint_map, multi_head_loss
from posebh_hf.modeling import PoseBHForPoseEstimation
from posebh_hf.training import (
    LossConfig,
    LossContext,
    PrototypeBankView,
    ScheduleConfig,
    StageSchedule,
    apply_stage,
    compute_losses,
)
from posebh_hf.training.prototype_sync import build_cluster_bank, prototype_stats

NAMES = ["coco", "ap10k"]
IMAGE = (64, 48)  # (H, W) -> heatmaps 16 x 12


def _model() -> PoseBHForPoseEstimation:
    torch.manual_seed(0)
    config = PoseBHConfig.tiny(dataset_names=NAMES, num_hidden_layers=1, image_size=list(IMAGE),
                               num_cluster_prototypes=8)
    return PoseBHForPoseEstimation(config)


def _batch(batch: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    k = 17
    kpts = rng.uniform([4, 4], [IMAGE[1] - 4, IMAGE[0] - 4], size=(batch, k, 2))
    vis = (rng.uniform(size=(batch, k)) > 0.2).astype(np.float32)
    target, weight = encode_heatmaps(kpts, vis, (IMAGE[1], IMAGE[0]), (IMAGE[1] // 4, IMAGE[0] // 4), 2.0, "udp")
    return {"pixel_values": torch.from_numpy(rng.normal(size=(batch, 3, *IMAGE)).astype(np.float32)),
            "target": torch.from_numpy(target), "target_weight": torch.from_numpy(weight),
            "dataset_index": torch.tensor([i % 2 for i in range(batch)])}


def _ctx(model: PoseBHForPoseEstimation, **losses) -> LossContext:
    return LossContext(list(model.config.num_keypoints), LossConfig(**losses), model.config.similarity)


def _grads(model: torch.nn.Module) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for name, p in model.named_parameters():
        part = name.split(".")[0]
        out[part] = out.get(part, False) or (p.grad is not None and bool(p.grad.abs().sum() > 0))
    return out


def test_stage1_trains_only_the_embedding_head_and_updates_prototypes() -> None:
    model = _model()
    flags = StageSchedule.from_config(ScheduleConfig(epochs=10)).flags(0)
    apply_stage(model, flags)
    bank = PrototypeBankView(model.keypoint_prototypes)
    before = bank.prototypes.clone()
    result = compute_losses(model, bank, _batch(), flags, _ctx(model))
    result.loss.backward()
    assert _grads(model) == {"backbone": False, "heads": False, "embedding_head": True}
    for key in ("phm_loss", "phm_loss_1", "proto_loss", "ppc_0", "ppd_1", "proto_pixels_0"):
        assert key in result.logs
    # frozen heads on a frozen backbone cannot change the gradient: they are not run in stage 1
    assert "head_loss" not in result.logs and "cps_loss" not in result.logs and "css_loss" not in result.logs
    total = result.logs["phm_loss"] + result.logs["proto_loss"]
    assert result.logs["loss"] == pytest.approx(total, rel=1e-5)
    new = result.new_prototypes
    assert new is not None and new.dtype == torch.float32
    assert torch.allclose(new.norm(dim=-1), torch.ones(new.shape[:2]), atol=1e-5)
    assert not torch.equal(new, before)  # momentum moved some rows
    assert torch.equal(bank.prototypes, before)  # the step does not write the buffer itself
    bank.write_rows(new, sum(model.config.num_keypoints))
    assert torch.equal(bank.prototypes, new)


def test_stage3_adds_cluster_and_css_terms_and_freezes_the_bank() -> None:
    model = _model()
    schedule = StageSchedule.from_config(ScheduleConfig(epochs=10))
    flags = schedule.flags(9)
    assert flags.cps and flags.css and not flags.update_prototypes
    apply_stage(model, flags)
    bank = PrototypeBankView(model.keypoint_prototypes)
    num_rows = sum(model.config.num_keypoints)
    clusters, closest = build_cluster_bank(bank.prototypes[:num_rows], 8, iters=20, beta=20.0, world_size=1,
                                           is_main=True)
    bank.write_clusters(clusters)
    ctx = _ctx(model, css_conf_thr=0.0, css_match_dist=100.0)  # accept every pseudo label: the path must run
    ctx.keypoint_map = cluster_keypoint_map(closest, ctx.num_keypoints)
    result = compute_losses(model, bank, _batch(), flags, ctx)
    assert result.new_prototypes is None
    assert "cps_loss" in result.logs and "css_loss" in result.logs and result.logs["css_accepted"] > 0
    total = sum(result.logs[k] for k in ("head_loss", "phm_loss", "proto_loss", "cps_loss", "css_loss"))
    assert result.logs["loss"] == pytest.approx(total, rel=1e-5)
    result.loss.backward()
    assert _grads(model) == {"backbone": True, "heads": True, "embedding_head": True}


def test_per_dataset_phm_equals_the_all_rows_phm() -> None:
    from posebh_hf.ops import prototype_heatmaps
    from posebh_hf.training.step import _phm_loss

    model = _model()
    ctx, batch = _ctx(model), _batch()
    emb = model(batch["pixel_values"], dataset_index=batch["dataset_index"], output_embeddings=True).embeddings
    protos = model.keypoint_prototypes.prototypes
    full = prototype_heatmaps(emb, protos, ctx.similarity)
    args = (batch["target"], batch["target_weight"], batch["dataset_index"], ctx)
    a, logs_a = _phm_loss(emb, protos, full, *args)
    b, logs_b = _phm_loss(emb, protos, None, *args)
    assert a.item() == pytest.approx(b.item(), rel=1e-6) and a.item() > 0
    assert logs_a.keys() == logs_b.keys()


def test_css_weight_zero_and_released_start_epoch() -> None:
    model = _model()
    flags = StageSchedule.from_config(ScheduleConfig(epochs=10, css_start_epoch=5)).flags(5)
    assert flags.css
    result = compute_losses(model, PrototypeBankView(model.keypoint_prototypes), _batch(), flags,
                            _ctx(model, css=0.0))
    assert "css_loss" not in result.logs


def test_multihead_baseline_has_only_head_losses() -> None:
    model = _model()
    flags = StageSchedule.from_config(ScheduleConfig(epochs=10), "multihead").flags(0)
    apply_stage(model, flags)
    ctx = LossContext(list(model.config.num_keypoints), LossConfig(), use_prototypes=False)
    batch = _batch()
    result = compute_losses(model, None, batch, flags, ctx)
    assert set(result.logs) == {"head_loss", "head_loss_0", "head_loss_1", "loss"}
    out = model(batch["pixel_values"], dataset_index=batch["dataset_index"], heads="all", route_heads=True)
    expected, _ = multi_head_loss(list(out.heatmaps.values()), batch["target"], batch["target_weight"],
                                  batch["dataset_index"], routed=True)
    assert result.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    result.loss.backward()
    assert _grads(model)["embedding_head"] is False


def test_routed_heads_give_the_released_loss_and_gradient() -> None:
    """Heads run only on their own samples: same loss and head gradients as every head on the whole batch.

    BatchNorm in train mode normalises over the samples a head sees, so the comparison uses running statistics.
    """
    batch = _batch()
    grads, losses = [], []
    for routed in (False, True):
        model = _model().eval()
        out = model(batch["pixel_values"], dataset_index=batch["dataset_index"], heads="all", route_heads=routed)
        n_rows = [hm.shape[0] for hm in out.heatmaps.values()]
        counts = torch.bincount(batch["dataset_index"], minlength=len(n_rows)).tolist()
        assert n_rows == (counts if routed else [len(batch["dataset_index"])] * len(n_rows))
        loss, _ = multi_head_loss(list(out.heatmaps.values()), batch["target"], batch["target_weight"],
                                  batch["dataset_index"], routed=routed)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.heads.parameters()]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-6) and losses[0] > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-9)


def test_routed_loss_refuses_rows_that_do_not_match_the_index() -> None:
    batch = _batch()
    heatmaps = [torch.zeros(1, k, 8, 6) for k in (3, 4)]
    with pytest.raises(ValueError, match="routed head 0 has 1 rows"):
        multi_head_loss(heatmaps, batch["target"], batch["target_weight"], batch["dataset_index"], routed=True)


def test_prototype_stats_are_sane() -> None:
    model = _model()
    protos = model.keypoint_prototypes.prototypes
    stats = prototype_stats(protos, protos)
    assert stats["proto/norm"] == pytest.approx(1.0, abs=1e-5)
    assert stats["proto/drift"] == pytest.approx(0.0, abs=1e-6)
    assert -1.0 <= stats["proto/intra_cos"] <= 1.0 and stats["proto/inter_cos_max"] <= 1.0
