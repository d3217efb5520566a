"""losses.prototypes: clustering, momentum update, PPC/PPD, and the fixed index quirks Q2-Q4.

Layout used throughout: two datasets with K = [2, 3] keypoints (offsets 0 and 2), M = 2, D = 16, and
orthonormal prototypes P[k, m] = e_{k*M + m}, so every similarity is 0 or 1 unless a test says otherwise.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from posebh_hf.losses import (
    ClusteringSettings,
    LossWeights,
    cluster_pixels,
    prototype_contrastive_loss,
    prototype_loss,
    update_prototypes,
)
from posebh_hf.ops import sinkhorn_knopp

ARGMAX = ClusteringSettings(assignment="argmax")

NUM_KEYPOINTS, M, D = [2, 3], 2, 16
K_TOT = sum(NUM_KEYPOINTS)


def _protos() -> torch.Tensor:
    return torch.eye(D)[: K_TOT * M].reshape(K_TOT, M, D).clone()


def _released(protos, emb, classes, offset, num_keypoints):
    """The released `prototype_learning` index logic (Q2-Q4), as a reference to show what the fix changes."""
    e = F.normalize(emb, dim=-1)
    sim = (e @ protos.reshape(-1, D).T).abs()  # [n, K_tot * M]
    pred = sim.view(len(e), K_TOT, M).amax(dim=2).argmax(dim=1)
    mask = pred == classes  # Q2: global argmax vs local class
    logits = sim[:, [offset + t for t in range(num_keypoints * M)]]  # Q3: off_d + t
    targets = torch.full_like(classes, -1)
    for k in range(num_keypoints):
        sel = classes == k
        if sel.any():
            q = sinkhorn_knopp(sim.view(len(e), K_TOT, M)[sel, k])  # Q4: row k instead of off_d + k
            targets[sel] = q.argmax(dim=1) + M * k
    return mask, logits, targets


def _own_prototype_pixels(offset: int, num_keypoints: int):
    """One pixel per (class, slot) equal to its own prototype P[offset + c, m]."""
    classes = torch.arange(num_keypoints).repeat_interleave(M)
    slots = torch.arange(M).repeat(num_keypoints)
    return _protos()[offset + classes, slots], classes, slots


def test_ppc_ppd_at_their_minimum_when_embeddings_equal_prototypes_q3():
    emb, classes, slots = _own_prototype_pixels(offset=2, num_keypoints=3)
    emb.requires_grad_(True)
    result = cluster_pixels(_protos(), emb, classes, torch.ones(len(classes)), 2, 3)
    assert result.targets.tolist() == (classes * M + slots).tolist()
    loss, logs = prototype_contrastive_loss(result.logits, result.targets)
    num_classes = 3 * M  # logits one-hot at the target: the smallest CE reachable with logits in [0, 1]
    assert logs["ppd"] == pytest.approx(0.0, abs=1e-10)
    assert logs["ppc"] == pytest.approx(math.log(math.e + num_classes - 1) - 1, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(1.25e-5 * 0.01 * logs["ppc"], rel=1e-5)
    loss.backward()
    assert emb.grad is not None
    # released columns off_d + t point at other prototypes: PPD is far from 0 for the same pixels
    _, released_logits, _ = _released(_protos(), emb.detach(), classes, 2, 3)
    _, released_logs = prototype_contrastive_loss(released_logits, result.targets)
    assert released_logs["ppd"] > 0.5


def test_sinkhorn_uses_the_datasets_own_row_q4():
    protos = _protos()
    # COCO row 0 (local index 0 of dataset 0) holds dataset 1's keypoint-0 prototypes in swapped slots
    protos[0, 0], protos[0, 1] = protos[2, 1].clone(), protos[2, 0].clone()
    emb = protos[2].clone()  # two pixels of dataset 1, class 0: slot 0 and slot 1 of global row 2
    classes = torch.zeros(2, dtype=torch.long)
    result = cluster_pixels(protos, emb, classes, torch.ones(2), 2, 3)
    assert result.targets.tolist() == [0, 1]
    _, _, released_targets = _released(protos, emb, classes, 2, 3)
    assert released_targets.tolist() == [1, 0]


def test_correct_pixels_of_later_datasets_update_their_prototypes_q2():
    protos = _protos()
    extra = torch.eye(D)[15]  # a direction no prototype uses
    emb = F.normalize(torch.stack([protos[3, 0] + 0.3 * extra, protos[3, 1] + 0.3 * extra]), dim=-1)
    classes = torch.ones(2, dtype=torch.long)  # dataset 1, local class 1 = global row 3
    conf = torch.ones(2)
    released_mask, _, _ = _released(protos, emb, classes, 2, 3)
    assert not released_mask.any()  # released: global argmax 3 != local class 1 -> no update ever
    for scope in ("dataset", "all"):
        result = cluster_pixels(protos, emb, classes, conf, 2, 3,
                                    ClusteringSettings(correctness=scope, assignment="argmax"))
        assert result.correct.all()
        new = update_prototypes(protos, emb, classes, conf, 2, 3, gamma=0.9, clustering=result)
        for m in range(M):
            assert float(new[3, m] @ emb[m]) > float(protos[3, m] @ emb[m]) + 1e-3
        untouched = torch.ones(K_TOT, dtype=torch.bool)
        untouched[3] = False
        torch.testing.assert_close(new[untouched], protos[untouched])


def test_momentum_update_formula_unit_norm_and_squared_weights():
    protos = F.normalize(_protos() + 0.05, dim=-1)
    g = torch.Generator().manual_seed(0)
    # class 0 of dataset 0: two pixels near slot 0, two near slot 1, confidences 1.0 and 0.3
    base = torch.stack([protos[0, 0], protos[0, 0], protos[0, 1], protos[0, 1]])
    emb = F.normalize(base + 0.2 * torch.randn(4, D, generator=g), dim=-1)
    conf = torch.tensor([1.0, 0.3, 1.0, 0.3])
    classes = torch.zeros(4, dtype=torch.long)
    result = cluster_pixels(protos, emb, classes, conf, 0, 2, ClusteringSettings(assignment="argmax"))
    assert result.targets.tolist() == [0, 0, 1, 1] and result.correct.all()
    new = update_prototypes(protos, emb, classes, conf, 0, 2, gamma=0.8, clustering=result)
    torch.testing.assert_close(new.norm(dim=-1), torch.ones(K_TOT, M))
    for m, (i, j) in enumerate([(0, 1), (2, 3)]):
        f = conf[i] ** 2 * emb[i] + conf[j] ** 2 * emb[j]  # the weight enters twice (released)
        expected = F.normalize(0.8 * protos[0, m] + 0.2 * F.normalize(f, dim=0), dim=0)
        torch.testing.assert_close(new[0, m], expected)
        mean = F.normalize(emb[i] + emb[j], dim=0)
        assert float(new[0, m] @ mean) > float(protos[0, m] @ mean)
    torch.testing.assert_close(new[1:], protos[1:])


def test_zero_mass_slots_and_hard_cluster():
    protos = _protos()
    emb, classes, _ = _own_prototype_pixels(offset=0, num_keypoints=2)
    emb = F.normalize(emb + 0.1, dim=-1)
    zero = torch.zeros(len(classes))
    torch.testing.assert_close(update_prototypes(protos, emb, classes, zero, 0, 2, settings=ARGMAX), protos)
    moved = update_prototypes(protos, emb, classes, zero, 0, 2,
                              settings=ClusteringSettings(assignment="argmax", hard_cluster=True))
    assert not torch.allclose(moved[:2], protos[:2])  # hard mode ignores the confidences
    torch.testing.assert_close(moved[2:], protos[2:])


def test_contrastive_loss_ignores_minus_one_and_handles_empty():
    logits = torch.rand(5, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, -1, 3, 2, -1])
    loss, _ = prototype_contrastive_loss(logits, targets, weights=LossWeights(proto=1.0, ppc=1.0, ppd=1.0))
    valid = targets >= 0
    expected = F.cross_entropy(logits[valid], targets[valid]) + \
        (1 - logits[valid].gather(1, targets[valid, None])).pow(2).mean()
    torch.testing.assert_close(loss, expected)
    empty, logs = prototype_contrastive_loss(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert float(empty) == 0.0 and logs["ppc"] == 0.0


def test_prototype_loss_end_to_end():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(3, D, 4, 4, generator=g, requires_grad=True)
    targets = torch.zeros(3, 3, 4, 4)
    targets[0, 0, 1, 1], targets[0, 1, 2, 2], targets[1, 2, 0, 0], targets[1, 0, 3, 3] = 1.0, 0.5, 0.8, 0.6
    targets[1, 0, 3, 2] = 0.4
    dataset_index = torch.tensor([0, 1, 1])
    protos = _protos()
    loss, logs, frozen = prototype_loss(emb, targets, torch.ones(3, 3, 1), dataset_index, protos, NUM_KEYPOINTS,
                                        update=False)
    torch.testing.assert_close(frozen, protos)
    assert logs["proto_pixels_0"] == 2.0 and logs["proto_pixels_1"] == 3.0
    assert float(loss.detach()) == pytest.approx(logs["proto_loss"]) and logs["proto_loss"] > 0
    loss.backward()
    assert emb.grad is not None and float(emb.grad[2].abs().sum()) == 0.0  # sample 2 has no foreground
    _, _, updated = prototype_loss(emb.detach(), targets, torch.ones(3, 3, 1), torch.tensor([1, 1, 1]), protos,
                                   NUM_KEYPOINTS, clustering=ClusteringSettings(assignment="argmax", hard_cluster=True))
    torch.testing.assert_close(updated[:2], protos[:2])  # dataset 0 absent: its rows stay
    assert not torch.allclose(updated[2:], protos[2:])
    with pytest.raises(ValueError, match="assignment must be one of"):
        ClusteringSettings(assignment="x")
    with pytest.raises(ValueError, match="unknown similarity"):
        ClusteringSettings(similarity="dot")
