"""ops.sinkhorn: marginals, the released algorithm, groups, and the Gumbel assignment."""

from __future__ import annotations

import pytest
import torch

from posebh_hf.ops import gumbel_hard_assign, sinkhorn_knopp


def _released_sinkhorn(out: torch.Tensor, iters: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """The released ProtoSeg loop, transcribed on the [M, n] layout (reference for one group)."""
    q = torch.exp(out.double() / epsilon).t()
    m, n = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= m
        q /= q.sum(dim=0, keepdim=True)
        q /= n
    return (q * n).t()


def test_rows_sum_to_one_and_matches_released_loop():
    scores = torch.rand(40, 3, generator=torch.Generator().manual_seed(0))
    q = sinkhorn_knopp(scores)
    assert q.shape == (40, 3) and q.dtype == torch.float32
    torch.testing.assert_close(q.sum(dim=1), torch.ones(40))
    torch.testing.assert_close(q.double(), _released_sinkhorn(scores), atol=1e-6, rtol=1e-5)


def test_column_masses_converge_to_n_over_m():
    # skewed scores: every pixel prefers prototype 0, equipartition must still give each prototype n/M
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(60, 3, generator=g) * 0.2 + torch.tensor([0.3, 0.0, 0.0])
    q = sinkhorn_knopp(scores, num_iters=200)
    torch.testing.assert_close(q.sum(dim=0), torch.full((3,), 20.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(60))
    q3 = sinkhorn_knopp(scores)  # 3 iterations: far from the uniform input preference already
    assert float(q3.sum(dim=0)[0]) < float(torch.softmax(scores / 0.05, dim=1).sum(dim=0)[0])


def test_groups_equal_separate_calls_and_empty_input():
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(30, 3, generator=g)
    groups = torch.randint(0, 4, (30,), generator=g)
    groups[0] = 3
    q = sinkhorn_knopp(scores, groups, 5)  # group 4 has no pixel
    for k in range(4):
        sel = groups == k
        torch.testing.assert_close(q[sel], sinkhorn_knopp(scores[sel]))
    assert sinkhorn_knopp(torch.empty(0, 3), torch.empty(0, dtype=torch.long), 2).shape == (0, 3)


def test_identity_hook_is_a_no_op_and_is_called_per_iteration():
    scores = torch.rand(10, 2)
    calls = []

    def hook(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return t

    torch.testing.assert_close(sinkhorn_knopp(scores, all_reduce=hook, num_iters=3), sinkhorn_knopp(scores))
    assert calls == [(1, 2), (1, 2), (1, 2), (1, 2)]  # [G, 2] stats once, then [G, M] per iteration


def test_doubling_the_data_through_the_hook_is_the_same_as_concatenating():
    # a fake 2-process world where the other process holds an identical shard: sums double
    scores = torch.rand(12, 3, generator=torch.Generator().manual_seed(3))
    q_hook = sinkhorn_knopp(scores, all_reduce=lambda t: 2 * t)
    q_cat = sinkhorn_knopp(torch.cat([scores, scores]))
    torch.testing.assert_close(q_hook, q_cat[:12])


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="num_groups is required"):
        sinkhorn_knopp(torch.rand(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"group indices must lie in \[0, 2\)"):
        sinkhorn_knopp(torch.rand(4, 2), torch.full((4,), 2), 2)
    with pytest.raises(ValueError, match="fp32 range"):
        sinkhorn_knopp(torch.full((3, 2), 10.0))


def test_gumbel_assignment_is_one_hot_reproducible_and_noisy():
    q = torch.tensor([[0.9, 0.05, 0.05]]).repeat(3000, 1)
    a = gumbel_hard_assign(q, generator=torch.Generator().manual_seed(0))
    b = gumbel_hard_assign(q, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(a.sum(dim=1), torch.ones(3000))
    share = a.mean(dim=0)
    # argmax(q + Gumbel) with q in [0, 1] is close to uniform (spec §4.4): slot 0 wins far less than 90 %
    assert 0.40 < float(share[0]) < 0.60 and float(share[1]) > 0.15
