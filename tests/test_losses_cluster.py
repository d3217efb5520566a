"""losses.cluster: keypoint map, batch-order cluster targets (Q6 fixed) and the CPS loss formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from posebh_hf.losses import LossWeights, cluster_keypoint_map, cluster_loss, cluster_targets, joints_mse
from posebh_hf.ops import prototype_heatmaps


def test_keypoint_map_assigns_clusters_to_local_keypoints():
    closest = torch.tensor([0, 3, 17, 5, 40])
    kmap = cluster_keypoint_map(closest, [17, 14, 16])
    assert kmap.tolist() == [[0, 3, -1, 5, -1], [-1, -1, 0, -1, -1], [-1, -1, -1, -1, 9]]


def _batch():
    g = torch.Generator().manual_seed(0)
    targets = torch.zeros(4, 2, 6, 5)
    for b in range(4):
        for k in range(2):
            targets[b, k, torch.randint(0, 6, (3,), generator=g), torch.randint(0, 5, (3,), generator=g)] = \
                torch.rand(3, generator=g) + 0.1
    weights = torch.tensor([[1.0, 0.5], [1.0, 1.0], [0.0, 1.0], [1.0, 0.7]])[..., None]
    dataset_index = torch.tensor([1, 0, 1, 0])  # not sorted by dataset
    kmap = cluster_keypoint_map(torch.tensor([0, 3, 1]), [2, 2])  # d0: [0, -1, 1]; d1: [-1, 1, -1]
    return targets, weights, dataset_index, kmap


def test_cluster_targets_are_in_batch_order_q6():
    targets, weights, dataset_index, kmap = _batch()
    heat, w = cluster_targets(targets, weights, dataset_index, kmap)
    assert heat.shape == (4, 3, 6, 5) and w.shape == (4, 3, 1)
    for b in range(4):
        for c in range(3):
            local = int(kmap[dataset_index[b], c])
            expect = targets[b, local] if local >= 0 else torch.zeros(6, 5)
            torch.testing.assert_close(heat[b, c], expect)
            assert float(w[b, c]) == (float(weights[b, local]) if local >= 0 else 0.0)


def test_cluster_loss_pairs_each_sample_with_its_own_targets_q6():
    targets, weights, dataset_index, kmap = _batch()
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(4, 8, 6, 5, generator=g, requires_grad=True)
    bank = F.normalize(torch.randn(3, 2, 8, generator=g), dim=-1)
    lw = LossWeights()
    loss, logs = cluster_loss(emb, bank, targets, weights, dataset_index, kmap, weights=lw)
    heat = prototype_heatmaps(emb.detach(), bank)
    own, own_w = cluster_targets(targets, weights, dataset_index, kmap)
    assert logs["cps_mse"] == pytest.approx(float(joints_mse(heat, own, own_w)), rel=1e-6)
    # released: batch-ordered predictions against dataset-grouped targets (samples 1, 3 then 0, 2)
    grouped = torch.tensor([1, 3, 0, 2])
    released = float(joints_mse(heat, own[grouped], own_w[grouped]))
    assert abs(released - logs["cps_mse"]) > 1e-3
    contrast = lw.proto * (lw.ppc * logs["cps_ppc"] + lw.ppd * logs["cps_ppd"])
    assert float(loss.detach()) == pytest.approx(lw.cps * (contrast + lw.phm * logs["cps_mse"]), rel=1e-5)
    assert logs["cps_pixels"] == float(((own.amax(dim=1)) > 0).sum())
    loss.backward()
    assert emb.grad is not None and bool(emb.grad.abs().sum() > 0)
