"""Per-dataset online clustering, momentum update and PPC / PPD (spec §4.3-4.5, paper Eqs. 2-6).

Symbols: B batch, n sampled pixels of one dataset d, K_d its keypoints, off_d its first prototype row,
K_tot prototype rows, M prototypes per keypoint, D embedding dim.

Deviations from the released code (all fixed here, each shown by a test in tests/test_losses_prototypes.py):
- Q2: the correctness mask compares the pixel's class with the predicted class *within its own dataset*
  (`correctness="dataset"`, default) or with the global argmax over all rows against the global row off_d + c
  (`correctness="all"`); the released code compared the local class with the global argmax.
- Q3: PPC / PPD logits are the columns off_d*M .. (off_d + K_d)*M - 1 (released: off_d .. off_d + K_d*M - 1).
- Q4: Sinkhorn of class c uses the similarities to row off_d + c (released: row c).
The update writes row off_d + c (correct in the released code too). The Gumbel assignment is kept as released
(`assignment="gumbel"`); `"argmax"` uses the Sinkhorn hard index instead (deterministic).

Distributed training: pass `all_reduce` (sum over processes). Sinkhorn then equipartitions over the global
batch and the momentum statistics (sum_i a_im u_i^2 e_i and sum_i a_im u_i) are summed over processes, so every
process computes the same new prototypes as one process on the concatenated batch (no averaging afterwards).
Every process must then call these functions for every dataset, also with zero local pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops import (
    SIMILARITY_MODES,
    AllReduce,
    gumbel_hard_assign,
    normalize_embeddings,
    prototype_similarity,
    sinkhorn_knopp,
)
from .layout import check_targets, keypoint_offsets, weights_2d
from .sampling import sample_foreground_pixels
from .weights import LossWeights

__all__ = [
    "ASSIGNMENTS",
    "CORRECTNESS_SCOPES",
    "DEFAULT_CLUSTERING",
    "ClusteringSettings",
    "PixelClustering",
    "cluster_pixels",
    "prototype_contrastive_loss",
    "prototype_loss",
    "update_prototypes",
]

ASSIGNMENTS: tuple[str, ...] = ("gumbel", "argmax")
CORRECTNESS_SCOPES: tuple[str, ...] = ("dataset", "all")
IGNORE_INDEX = -1


@dataclass(frozen=True)
class ClusteringSettings:
    """How sampled pixels are clustered into prototypes (spec §4.4): one checked, frozen object that the PPC/PPD,
    CPS and CSS terms share, instead of loose keyword arguments passed through three layers.

    Attributes:
        similarity: "abs_cosine" or "cosine" (the model's).
        assignment: "gumbel" (released) or "argmax" (the Sinkhorn hard index; deterministic). CPS and CSS always
            use "argmax" (as released).
        hard_cluster: momentum update weights u_i = 1[correct] (transfer configs) instead of w_i * 1[correct] (MDT).
        correctness: "dataset" (argmax over the dataset's rows) or "all" (argmax over all rows == off_d + c).
        sinkhorn_epsilon, sinkhorn_iters, gumbel_tau: 0.05, 3, 0.5.
    """

    similarity: str = "abs_cosine"
    assignment: Literal["gumbel", "argmax"] = "gumbel"
    hard_cluster: bool = False
    correctness: Literal["dataset", "all"] = "dataset"
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iters: int = 3
    gumbel_tau: float = 0.5

    def __post_init__(self) -> None:
        if self.assignment not in ASSIGNMENTS or self.correctness not in CORRECTNESS_SCOPES:
            raise ValueError(f"assignment must be one of {ASSIGNMENTS} and correctness one of {CORRECTNESS_SCOPES}; "
                             f"got {self.assignment!r}, {self.correctness!r}")
        if self.similarity not in SIMILARITY_MODES:
            raise ValueError(f"unknown similarity {self.similarity!r}; expected one of {SIMILARITY_MODES}")


DEFAULT_CLUSTERING = ClusteringSettings()


@dataclass(frozen=True)
class PixelClustering:
    """Result of `cluster_pixels` for the n pixels of one dataset.

    Attributes:
        logits: `[n, K_d * M]` similarities to the dataset's prototypes, column k*M + m (gradient to embeddings).
        targets: `[n]` long PPC / PPD target c*M + m* (m* = Sinkhorn hard index).
        assignment: `[n, M]` one-hot slot used by the momentum update (Gumbel sample or m*).
        update_weights: `[n]` u_i: confidence masked by correctness (soft) or the correctness itself (hard).
        correct: `[n]` bool, the pixel's nearest prototype class is its own class.
        features: `[n, D]` normalised embeddings, detached (the update's inputs).
    """

    logits: Tensor
    targets: Tensor
    assignment: Tensor
    update_weights: Tensor
    correct: Tensor
    features: Tensor


def _check_pixels(prototypes: Tensor, embeddings: Tensor, classes: Tensor, confidences: Tensor,
                  offset: int, num_keypoints: int) -> None:
    if prototypes.dim() != 3:
        raise ValueError(f"prototypes must have shape [K_tot, M, D]; got {tuple(prototypes.shape)}")
    if not (0 <= offset and num_keypoints >= 1 and offset + num_keypoints <= prototypes.shape[0]):
        raise ValueError(f"rows [{offset}, {offset + num_keypoints}) do not fit a bank of "
                         f"{prototypes.shape[0]} rows")
    n = embeddings.shape[0]
    if embeddings.dim() != 2 or classes.shape != (n,) or confidences.shape != (n,):
        raise ValueError(f"need embeddings [n, D], classes [n], confidences [n]; got {tuple(embeddings.shape)}, "
                         f"{tuple(classes.shape)}, {tuple(confidences.shape)}")
    if n and (int(classes.min()) < 0 or int(classes.max()) >= num_keypoints):
        raise ValueError(f"classes must be local keypoint indices in [0, {num_keypoints}); got "
                         f"[{int(classes.min())}, {int(classes.max())}]")


def cluster_pixels(
    prototypes: Tensor,
    embeddings: Tensor,
    classes: Tensor,
    confidences: Tensor,
    offset: int,
    num_keypoints: int,
    settings: ClusteringSettings = DEFAULT_CLUSTERING,
    *,
    generator: torch.Generator | None = None,
    all_reduce: AllReduce | None = None,
) -> PixelClustering:
    """Online clustering of one dataset's sampled pixels into the M prototypes of their class (spec §4.4).

    Args:
        prototypes: `[K_tot, M, D]` current bank (normalised here; not modified).
        embeddings: `[n, D]` raw pixel embeddings (gradient flows through `logits`).
        classes: `[n]` long local keypoint index c_i in [0, K_d).
        confidences: `[n]` GT heatmap value w_i at the pixel.
        offset: off_d, the dataset's first prototype row.
        num_keypoints: K_d.
        settings: `ClusteringSettings` (similarity, assignment, correctness, Sinkhorn and Gumbel parameters).
        generator: RNG of the Gumbel noise.
        all_reduce: optional sum-over-processes hook for Sinkhorn (see `posebh_hf.ops.sinkhorn`).

    Returns:
        `PixelClustering`.
    """
    _check_pixels(prototypes, embeddings, classes, confidences, offset, num_keypoints)
    s = settings
    rows = prototypes[offset:offset + num_keypoints]
    sim = prototype_similarity(embeddings, rows, s.similarity)  # [n, K_d, M]
    n, _, num_protos = sim.shape
    logits = sim.reshape(n, num_keypoints * num_protos)  # Q3 fixed: columns (off_d + k)*M + m of the bank
    classes = classes.long()
    with torch.no_grad():
        detached = sim.detach()
        if s.correctness == "dataset":
            correct = detached.amax(dim=2).argmax(dim=1) == classes
        else:
            every = prototype_similarity(embeddings.detach(), prototypes, s.similarity)
            correct = every.amax(dim=2).argmax(dim=1) == classes + offset  # Q2 fixed: global row off_d + c
        update_weights = correct.float() if s.hard_cluster else confidences.float() * correct
        own = detached[torch.arange(n, device=sim.device), classes]  # [n, M], Q4 fixed: row off_d + c
        q = sinkhorn_knopp(own, classes, num_keypoints, epsilon=s.sinkhorn_epsilon, num_iters=s.sinkhorn_iters,
                           all_reduce=all_reduce)
        hard_index = q.argmax(dim=1)
        targets = classes * num_protos + hard_index
        if s.assignment == "gumbel":
            onehot = gumbel_hard_assign(q, s.gumbel_tau, generator)
        else:
            onehot = F.one_hot(hard_index, num_protos).float()
    return PixelClustering(logits, targets, onehot, update_weights, correct,
                           normalize_embeddings(embeddings.detach()))


@torch.no_grad()
def update_prototypes(
    prototypes: Tensor,
    embeddings: Tensor,
    classes: Tensor,
    confidences: Tensor,
    offset: int,
    num_keypoints: int,
    *,
    gamma: float = 0.999,
    clustering: PixelClustering | None = None,
    settings: ClusteringSettings = DEFAULT_CLUSTERING,
    all_reduce: AllReduce | None = None,
) -> Tensor:
    """Momentum update of dataset d's prototype rows (paper Eqs. 3-4, spec §4.4); returns a new bank.

    For class c and slot m: f = sum_i a_im u_i (u_i e_i) (the weight enters twice, as released) and
    n = sum_i a_im u_i over the class-c pixels; where n > 0, p[off_d + c, m] <- gamma p + (1 - gamma) f / ||f||.
    Finally every row is L2-normalised. The training step writes the result into the model's buffer under
    no_grad (e.g. `model.prototypes.copy_(new)`).

    Args:
        prototypes: `[K_tot, M, D]` current bank (not modified).
        embeddings, classes, confidences, offset, num_keypoints: as in `cluster_pixels`.
        gamma: momentum (0.999).
        clustering: the `cluster_pixels` result for the same pixels and bank (recomputed when None, with
            `settings`).
        settings: `ClusteringSettings` of that recomputation.
        all_reduce: optional sum-over-processes hook; sums f and n (one collective), and is passed to Sinkhorn
            when the clustering is recomputed.

    Returns:
        `[K_tot, M, D]` fp32 unit-norm prototypes.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1]; got {gamma}")
    if clustering is None:
        clustering = cluster_pixels(prototypes, embeddings.detach(), classes, confidences, offset, num_keypoints,
                                    settings, all_reduce=all_reduce)
    protos = normalize_embeddings(prototypes).clone()
    _, num_protos, dim = protos.shape
    weight = clustering.update_weights[:, None]
    assigned = clustering.assignment * weight  # [n, M] a_im u_i
    weighted = clustering.features * weight  # [n, D] u_i e_i
    sums = protos.new_zeros((num_keypoints * num_protos, dim + 1))
    for m in range(num_protos):
        slot = assigned[:, m:m + 1]
        sums.index_add_(0, classes.long() * num_protos + m, torch.cat([slot * weighted, slot], dim=1))
    if all_reduce is not None:
        sums = all_reduce(sums)
    sums = sums.view(num_keypoints, num_protos, dim + 1)
    feature, mass = sums[..., :dim], sums[..., dim]
    rows = protos[offset:offset + num_keypoints]
    moved = gamma * rows + (1.0 - gamma) * normalize_embeddings(feature)
    protos[offset:offset + num_keypoints] = torch.where((mass > 0)[..., None], moved, rows)
    return normalize_embeddings(protos)


def prototype_contrastive_loss(
    logits: Tensor, targets: Tensor, *, weights: LossWeights | None = None
) -> tuple[Tensor, dict[str, float]]:
    """weights.proto * (weights.ppc * PPC + weights.ppd * PPD) (spec §4.5, paper Eqs. 5-6).

    PPC = cross-entropy(logits, targets) (unit class weights, ignore index -1, no temperature);
    PPD = mean_i (1 - logits[i, targets_i])^2.

    Args:
        logits: `[n, C]` similarities (C = K_d * M).
        targets: `[n]` long in [0, C) or -1 (ignored).
        weights: `LossWeights` (defaults: 1.25e-5 * (0.01 PPC + 0.001 PPD)).

    Returns:
        (loss, logs) with logs `ppc`, `ppd` (unweighted) and `proto_loss`; 0 when no pixel is valid.
    """
    weights = weights or LossWeights()
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"need logits [n, C] and targets [n]; got {tuple(logits.shape)}, {tuple(targets.shape)}")
    logits = logits.float()
    valid = targets != IGNORE_INDEX
    if not bool(valid.any()):
        zero = logits.sum() * 0.0
        return zero, {"ppc": 0.0, "ppd": 0.0, "proto_loss": 0.0}
    targets = targets.long()
    ppc = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
    picked = logits[valid].gather(1, targets[valid, None])[:, 0]
    ppd = (1.0 - picked).pow(2).mean()
    loss = weights.proto * (weights.ppc * ppc + weights.ppd * ppd)
    return loss, {"ppc": float(ppc.detach()), "ppd": float(ppd.detach()), "proto_loss": float(loss.detach())}


def prototype_loss(
    embeddings: Tensor,
    targets: Tensor,
    target_weights: Tensor,
    dataset_index: Tensor,
    prototypes: Tensor,
    num_keypoints: Sequence[int],
    *,
    weights: LossWeights | None = None,
    update: bool = True,
    gamma: float = 0.999,
    sample_threshold: float = 0.0,
    all_reduce: AllReduce | None = None,
    clustering: ClusteringSettings = DEFAULT_CLUSTERING,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float], Tensor]:
    """PPC + PPD of every dataset and the sequential momentum updates of one iteration (spec §4.3-4.5).

    For d = 0, 1, ...: sample d's foreground pixels from its GT heatmaps, cluster them against the bank *as
    updated by datasets < d*, add the PPC / PPD value, then (if `update`) update d's rows. Datasets with no
    local pixels are skipped unless `all_reduce` is given (then every dataset is processed so that all
    processes make the same collective calls).

    Args:
        embeddings: `[B, D, H, W]` embedding map.
        targets: `[B, K_max, H, W]` zero-padded GT heatmaps.
        target_weights: `[B, K_max, 1]` (unused by the losses; checked for shape).
        dataset_index: `[B]` long.
        prototypes: `[K_tot, M, D]` bank at the start of the iteration (not modified).
        num_keypoints: K_d per dataset, in bank order.
        weights: `LossWeights`.
        update: apply the momentum updates (False once the bank is frozen).
        gamma: momentum (0.999).
        sample_threshold: foreground threshold (0.0 MDT, 0.2 transfer).
        all_reduce: optional sum-over-processes hook.
        clustering: `ClusteringSettings` for `cluster_pixels`.
        generator: RNG of the Gumbel noise.

    Returns:
        (loss, logs, new_prototypes): the summed PPC/PPD term, logs (`proto_loss`, per dataset `ppc_{d}`,
        `ppd_{d}`, `proto_pixels_{d}`, `proto_correct_{d}`), and the `[K_tot, M, D]` bank after the updates
        (equal to the normalised input when `update` is False).
    """
    check_targets(targets, weights_2d(target_weights)[..., None], dataset_index, num_keypoints)
    weights = weights or LossWeights()
    current = normalize_embeddings(prototypes.detach())
    total = embeddings.new_zeros((), dtype=torch.float32)
    logs: dict[str, float] = {}
    for d, (off, k) in enumerate(zip(keypoint_offsets(num_keypoints), num_keypoints, strict=True)):
        mask = dataset_index == d
        if all_reduce is None and not bool(mask.any()):
            continue
        pixels = sample_foreground_pixels(embeddings[mask], targets[mask, :k], sample_threshold)
        if all_reduce is None and len(pixels) == 0:
            continue
        result = cluster_pixels(current, pixels.embeddings, pixels.classes, pixels.confidences, off, k,
                                clustering, generator=generator, all_reduce=all_reduce)
        if len(pixels):
            loss_d, logs_d = prototype_contrastive_loss(result.logits, result.targets, weights=weights)
            total = total + loss_d
            logs.update({f"ppc_{d}": logs_d["ppc"], f"ppd_{d}": logs_d["ppd"],
                         f"proto_pixels_{d}": float(len(pixels)),
                         f"proto_correct_{d}": float(result.correct.float().mean())})
        if update:
            current = update_prototypes(current, pixels.embeddings, pixels.classes, pixels.confidences, off, k,
                                        gamma=gamma, clustering=result, all_reduce=all_reduce)
    logs["proto_loss"] = float(total.detach())
    return total, logs, current
