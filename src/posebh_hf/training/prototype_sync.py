"""Cross-process pieces of prototype learning (spec §4.6, §4.7) and the prototype statistics that get logged.

Symbols: K prototype rows, M prototypes per row, D embedding dim, C clusters.

- `make_all_reduce`: the sum-over-processes hook handed to Sinkhorn and the momentum statistics, so every process
  computes the update of the global batch.
- `average_across_processes`: the released all-reduce average of the prototypes after each step; with the
  hook above the banks already agree up to float summation order, and the average makes them bit-identical.
- `build_cluster_bank`: soft K-means over the bank on the main process, broadcast to the others.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ..ops import AllReduce, cluster_prototypes

__all__ = ["average_across_processes", "broadcast_", "build_cluster_bank", "make_all_reduce", "prototype_stats"]


def _distributed(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


def make_all_reduce(world_size: int) -> AllReduce | None:
    """`t -> sum of t over processes` (a new tensor), or None on a single process."""
    if not _distributed(world_size):
        return None

    def all_reduce(tensor: Tensor) -> Tensor:
        out = tensor.detach().contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    return all_reduce


@torch.no_grad()
def average_across_processes(tensor: Tensor, world_size: int) -> Tensor:
    """Mean of `tensor` over processes (fp32); identity on one process."""
    if not _distributed(world_size):
        return tensor
    out = tensor.detach().float().contiguous().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size


@torch.no_grad()
def broadcast_(tensor: Tensor, world_size: int, src: int = 0) -> Tensor:
    """Broadcast `tensor` in place from process `src` (no-op on one process)."""
    if _distributed(world_size):
        dist.broadcast(tensor, src=src)
    return tensor


@torch.no_grad()
def build_cluster_bank(prototypes: Tensor, num_clusters: int, *, iters: int, beta: float, world_size: int,
                       is_main: bool) -> tuple[Tensor, Tensor]:
    """Cluster bank `[C, M, D]` and closest keypoints `[C]` (spec §4.7, Q5 fixed in `ops.cluster_prototypes`).

    Computed on the main process and broadcast, so every process holds the same bank whatever the numerics.
    """
    _, num_protos, dim = prototypes.shape
    bank = prototypes.new_zeros((num_clusters, num_protos, dim), dtype=torch.float32)
    closest = torch.zeros(num_clusters, dtype=torch.long, device=prototypes.device)
    if is_main or not _distributed(world_size):
        result = cluster_prototypes(prototypes.float(), num_clusters, iters=iters, beta=beta)
        bank.copy_(result.prototypes)
        closest.copy_(result.closest_keypoint)
    broadcast_(bank, world_size)
    broadcast_(closest, world_size)
    return bank, closest


@torch.no_grad()
def prototype_stats(before: Tensor, after: Tensor | None = None) -> dict[str, float]:
    """Cheap health statistics of a bank `[K, M, D]` (and its change `before -> after`).

    - ``proto/intra_cos``: mean cosine between the M prototypes of the same keypoint (1 = collapsed slots);
    - ``proto/inter_cos_max``: mean over rows of the highest cosine to a prototype of another row;
    - ``proto/norm``: mean L2 norm (1 for a healthy, normalised bank);
    - ``proto/drift``: mean 1 - cos(before, after) of this step's update.
    """
    p = F.normalize(before.float(), dim=-1)
    k, m, _ = p.shape
    stats = {"proto/norm": float(before.float().norm(dim=-1).mean())}
    if m > 1:
        gram = torch.einsum("kmd,knd->kmn", p, p)
        off = ~torch.eye(m, dtype=torch.bool, device=p.device)
        stats["proto/intra_cos"] = float(gram[:, off].mean())
    if k > 1:
        flat = p.reshape(k * m, -1)
        sim = flat @ flat.T  # [K*M, K*M]
        row = torch.arange(k, device=p.device).repeat_interleave(m)
        sim = sim.masked_fill(row[:, None] == row[None, :], -2.0)
        stats["proto/inter_cos_max"] = float(sim.amax(dim=1).mean())
    if after is not None:
        stats["proto/drift"] = float((1.0 - (p * F.normalize(after.float(), dim=-1)).sum(-1)).mean())
    return stats
