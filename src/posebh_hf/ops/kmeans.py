"""Soft K-means on the unit sphere and the cross-dataset cluster bank (spec §4.7, "CPS").

Symbols: J keypoint rows, M prototypes per row, D embedding dim, N = J * M flattened prototypes, C clusters.
A flattened prototype row r = k * M + m belongs to global keypoint k = r // M (spec App. B).

Deviation from the released code (Q5, fixed here): the released code sorts the distances along the *cluster*
axis and then uses cluster indices as prototype-row indices, so its bank is copies of prototype rows 0..C-1.
Here each cluster's members are the M prototypes nearest to its centre (argsort along the prototype axis), as
the code comment and the paper intend; the closest keypoint of a cluster is the keypoint of its nearest member.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ClusterBank", "SoftKMeansResult", "closest_keypoints", "cluster_prototypes", "soft_spherical_kmeans"]

DEFAULT_NUM_CLUSTERS = 96  # paper and `cp_size` of the released config
DEFAULT_ITERS = 500
DEFAULT_BETA = 20.0


@dataclass(frozen=True)
class SoftKMeansResult:
    """Result of `soft_spherical_kmeans`.

    Attributes:
        centers: `[C, D]` cluster centres (weighted means; not re-normalised, cosine is scale-free).
        assignment: `[N, C]` soft assignment softmax(-beta * distance) from the final centres.
        distance: `[N, C]` cosine distance (1 - cos) / 2 in [0, 1] to the final centres.
    """

    centers: Tensor
    assignment: Tensor
    distance: Tensor


@dataclass(frozen=True)
class ClusterBank:
    """Cross-dataset cluster prototypes.

    Attributes:
        prototypes: `[C, M, D]` unit-norm cluster prototypes (copies of the member prototypes).
        members: `[C, M]` long flattened prototype rows (k * M + m) of each cluster, nearest first.
        closest_keypoint: `[C]` long global keypoint index of each cluster's nearest member.
        centers: `[C, D]` the K-means centres.
    """

    prototypes: Tensor
    members: Tensor
    closest_keypoint: Tensor
    centers: Tensor


def _cosine_distance(points: Tensor, centers: Tensor) -> Tensor:
    # F.cosine_similarity semantics of the released hook (eps 1e-8), written as a matmul: [N, C]
    sim = F.normalize(points, dim=1, eps=1e-8) @ F.normalize(centers, dim=1, eps=1e-8).T
    return (1.0 - sim) * 0.5


@torch.no_grad()
def soft_spherical_kmeans(
    points: Tensor, initial_centers: Tensor, *, iters: int = DEFAULT_ITERS, beta: float = DEFAULT_BETA
) -> SoftKMeansResult:
    """Soft K-means with cosine distance (1 - cos) / 2 and assignment softmax(-beta * distance).

    Args:
        points: `[N, D]` points (any norm; fp32 math).
        initial_centers: `[C, D]` starting centres.
        iters: update iterations (500).
        beta: softmax sharpness (20).

    Returns:
        `SoftKMeansResult` computed from the final centres.
    """
    if points.dim() != 2 or initial_centers.dim() != 2 or points.shape[1] != initial_centers.shape[1]:
        raise ValueError(f"soft_spherical_kmeans: need points [N, D] and centres [C, D]; got "
                         f"{tuple(points.shape)} and {tuple(initial_centers.shape)}")
    x = points.float()
    centers = initial_centers.float()
    for _ in range(iters):
        assign = torch.softmax(-beta * _cosine_distance(x, centers), dim=1)  # [N, C]
        centers = (assign.T @ x) / assign.sum(dim=0)[:, None]
    distance = _cosine_distance(x, centers)
    return SoftKMeansResult(centers, torch.softmax(-beta * distance, dim=1), distance)


@torch.no_grad()
def cluster_prototypes(
    prototypes: Tensor,
    num_clusters: int = DEFAULT_NUM_CLUSTERS,
    *,
    iters: int = DEFAULT_ITERS,
    beta: float = DEFAULT_BETA,
) -> ClusterBank:
    """Build the cluster bank from the keypoint prototypes (spec §4.7 steps 1-2d, Q5 fixed).

    Initial centres are the first prototype of keypoints 0..C-1 (flattened rows 0, M, 2M, ...), as released.

    Args:
        prototypes: `[J, M, D]` keypoint prototypes (normalised here).
        num_clusters: C (96), at most J.
        iters, beta: soft K-means settings (500, 20).

    Returns:
        `ClusterBank` with `[C, M, D]` prototypes.
    """
    if prototypes.dim() != 3:
        raise ValueError(f"cluster_prototypes: prototypes must have shape [J, M, D]; got {tuple(prototypes.shape)}")
    num_rows, num_protos, dim = prototypes.shape
    if not 1 <= num_clusters <= num_rows:
        raise ValueError(f"cluster_prototypes: num_clusters must be in [1, J={num_rows}] (initial centres are "
                         f"the first prototype of keypoints 0..C-1); got {num_clusters}")
    flat = F.normalize(prototypes.float(), dim=-1).reshape(num_rows * num_protos, dim)
    init = flat[torch.arange(num_clusters, device=flat.device) * num_protos]
    result = soft_spherical_kmeans(flat, init, iters=iters, beta=beta)
    # Q5 fixed: for each cluster, the M prototype rows nearest to its centre (sort along the prototype axis)
    members = torch.argsort(result.distance, dim=0, stable=True)[:num_protos].T.contiguous()  # [C, M]
    bank = flat[members]  # [C, M, D]
    return ClusterBank(bank, members, members[:, 0] // num_protos, result.centers)


@torch.no_grad()
def closest_keypoints(cluster_bank: Tensor, prototypes: Tensor) -> Tensor:
    """Recover each cluster's closest keypoint from a stored bank (e.g. after resuming from a checkpoint).

    The bank's first prototype of cluster c is a copy of its nearest member, so the keypoint is the row of the
    keypoint prototype most similar to it.

    Args:
        cluster_bank: `[C, M, D]` cluster prototypes.
        prototypes: `[J, M, D]` keypoint prototypes the bank was built from.

    Returns:
        `[C]` long global keypoint indices.
    """
    if cluster_bank.dim() != 3 or prototypes.dim() != 3 or cluster_bank.shape[-1] != prototypes.shape[-1]:
        raise ValueError(f"closest_keypoints: need [C, M, D] and [J, M, D]; got {tuple(cluster_bank.shape)} "
                         f"and {tuple(prototypes.shape)}")
    flat = F.normalize(prototypes.float(), dim=-1).flatten(0, 1)
    first = F.normalize(cluster_bank[:, 0].float(), dim=-1)
    return torch.argmax(first @ flat.T, dim=1) // prototypes.shape[1]
