"""Sinkhorn-Knopp equipartition (spec §4.4 step 3) and the Gumbel hard assignment, with a cross-process hook.

Symbols: n pixels (on this process), M prototypes per class, G groups (classes) clustered independently.

Distributed design (the `all_reduce` hook)
------------------------------------------
Every operation of the algorithm is either elementwise per pixel, a sum over the pixel's own M entries (the
pixel marginal), or a sum over *pixels* (per group: the total mass, the pixel count, and the M prototype
marginals). Each pixel lives on exactly one process, so only the sums over pixels need to cross processes.
With `all_reduce` given, these and only these are summed over processes:

1. once per call, a `[G, 2]` tensor holding each group's total mass sum(exp(s / eps)) and its pixel count n_g;
2. once per iteration, the `[G, M]` prototype marginals (row sums of Q over the group's pixels).

The pixel marginals stay local. Then every process computes, for its own pixels, exactly the values a single
process would compute on the concatenation of all processes' pixels (up to the floating-point order of the
sums), i.e. the equipartition "each prototype receives 1/M of the group's mass" holds over the *global* batch
(SwAV-style distributed Sinkhorn). A call makes `1 + num_iters` collective calls whatever G is, and every process
must make the same calls: call it on every process, with an empty `[0, M]` input where a process has no pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["AllReduce", "gumbel_hard_assign", "sinkhorn_knopp"]

AllReduce = Callable[[Tensor], Tensor]
"""Returns the elementwise sum of its argument over all processes (may reduce in place and return it), e.g.
`lambda t: accelerator.reduce(t, "sum")` or `lambda t: (torch.distributed.all_reduce(t), t)[1]`."""


def _reduce(x: Tensor, all_reduce: AllReduce | None) -> Tensor:
    return x if all_reduce is None else all_reduce(x)


def _group_sum(values: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """Sum rows of `values` ([n, ...]) per group -> [G, ...]."""
    out = values.new_zeros((num_groups, *values.shape[1:]))
    return out.index_add_(0, groups, values)


@torch.no_grad()
def sinkhorn_knopp(
    scores: Tensor,
    groups: Tensor | None = None,
    num_groups: int | None = None,
    *,
    epsilon: float = 0.05,
    num_iters: int = 3,
    all_reduce: AllReduce | None = None,
) -> Tensor:
    """Soft equipartitioned assignment of pixels to M prototypes, independently per group.

    The released algorithm (ProtoSeg / SwAV) on Q = exp(scores / epsilon) of each group, seen as [M, n_g]:
    normalise to total mass 1; `num_iters` times: each prototype row to mass 1/M, then each pixel column to mass
    1/n_g; finally scale by n_g so that each pixel's row of the returned `[n, M]` sums to 1.

    Args:
        scores: `[n, M]` similarities of each pixel to its own class's M prototypes (any float dtype; fp32 math).
        groups: `[n]` long group (class) index of each pixel in [0, num_groups); None = one group.
        num_groups: G; required with `groups` (must be the same on every process).
        epsilon: entropic temperature (0.05).
        num_iters: Sinkhorn iterations (3).
        all_reduce: optional sum-over-processes hook (module docstring); None = single process.

    Returns:
        `[n, M]` fp32 soft assignment, rows summing to 1, no gradient.
    """
    if scores.dim() != 2:
        raise ValueError(f"sinkhorn_knopp: scores must have shape [n, M]; got {tuple(scores.shape)}")
    if epsilon <= 0 or num_iters < 1:
        raise ValueError(f"sinkhorn_knopp: need epsilon > 0 and num_iters >= 1; got {epsilon}, {num_iters}")
    n, num_protos = scores.shape
    if groups is None:
        groups = torch.zeros(n, dtype=torch.long, device=scores.device)
        num_groups = 1
    elif num_groups is None:
        raise ValueError("sinkhorn_knopp: num_groups is required when groups is given")
    if groups.shape != (n,):
        raise ValueError(f"sinkhorn_knopp: groups must have shape [{n}]; got {tuple(groups.shape)}")
    groups = groups.long()
    if n and (int(groups.min()) < 0 or int(groups.max()) >= num_groups):
        raise ValueError(f"sinkhorn_knopp: group indices must lie in [0, {num_groups}); "
                         f"got [{int(groups.min())}, {int(groups.max())}]")

    with torch.autocast(device_type=scores.device.type, enabled=False):
        q = torch.exp(scores.float() / epsilon)  # [n, M]
        if n and not bool(torch.isfinite(q).all() and (q > 0).all()):
            raise ValueError(f"sinkhorn_knopp: exp(scores / {epsilon}) leaves the fp32 range (scores in "
                             f"[{float(scores.min()):.3g}, {float(scores.max()):.3g}]); scores must be "
                             f"similarities of magnitude <= ~4")
        # (1) per-group total mass and pixel count, one collective for both
        stats = torch.stack([_group_sum(q.sum(dim=1), groups, num_groups),
                             _group_sum(torch.ones_like(q[:, 0]), groups, num_groups)], dim=1)
        stats = _reduce(stats, all_reduce)
        total, count = stats[:, 0], stats[:, 1]
        q = q / total[groups, None]
        for _ in range(num_iters):
            # (2) prototype marginals over the group's pixels on all processes
            row = _reduce(_group_sum(q, groups, num_groups), all_reduce)  # [G, M]
            q = q / row[groups] / num_protos
            # pixel marginals: local
            q = q / q.sum(dim=1, keepdim=True) / count[groups, None]
        return q * count[groups, None]


@torch.no_grad()
def gumbel_hard_assign(q: Tensor, tau: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """One-hot sample of `F.gumbel_softmax(q, tau, hard=True)` (values only; no gradient is needed).

    The released code feeds the Sinkhorn *probabilities* q as logits, so the sample is one-hot(argmax(q + g)),
    g ~ Gumbel(0, 1) i.i.d.; tau does not change the argmax. Kept because the released code does it (spec §4.4).

    Args:
        q: `[n, M]` assignment probabilities.
        tau: Gumbel-softmax temperature (argmax-invariant; accepted for documentation / config parity).
        generator: optional RNG for reproducibility.

    Returns:
        `[n, M]` fp32 one-hot rows.
    """
    if tau <= 0:
        raise ValueError(f"gumbel_hard_assign: tau must be > 0; got {tau}")
    # Gumbel(0, 1) = -log(Exp(1))
    noise = -torch.empty_like(q, dtype=torch.float32).exponential_(generator=generator).log()
    index = torch.argmax((q.float() + noise) / tau, dim=1)
    return torch.nn.functional.one_hot(index, q.shape[1]).float()
