"""Cross-dataset cluster loss ("CPS", spec §4.7, paper Sec. 3.2 last paragraph).

Symbols: B batch, D_s datasets, C clusters, M prototypes per cluster, D embedding dim, K_max padded target
channels, H x W heatmap size.

Every cluster c has a closest keypoint (built by `posebh_hf.ops.cluster_prototypes`, Q5 fixed there). A sample
of dataset d gets, in channel c, the GT heatmap of its local keypoint mapped to c (zero when c maps to no
keypoint of d). Deviation from the released code (Q6, fixed): cluster targets are built in *batch order*, so
each sample's cluster heatmap is compared with its own targets (the released code compared batch-ordered
predictions with dataset-grouped targets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from ..ops import AllReduce, prototype_heatmaps
from .heatmap import joints_mse
from .layout import check_targets, keypoint_offsets, weights_2d
from .prototypes import DEFAULT_CLUSTERING, ClusteringSettings, cluster_pixels, prototype_contrastive_loss
from .sampling import sample_foreground_pixels
from .weights import LossWeights

__all__ = ["cluster_keypoint_map", "cluster_loss", "cluster_targets"]


def cluster_keypoint_map(closest_keypoint: Tensor, num_keypoints: Sequence[int]) -> Tensor:
    """Local keypoint of every (dataset, cluster) pair.

    Args:
        closest_keypoint: `[C]` long global keypoint index of each cluster (`ClusterBank.closest_keypoint`).
        num_keypoints: K_d per dataset, in bank order.

    Returns:
        `[D_s, C]` long: closest_keypoint[c] - off_d where that lies in [0, K_d), else -1.
    """
    if closest_keypoint.dim() != 1:
        raise ValueError(f"closest_keypoint must have shape [C]; got {tuple(closest_keypoint.shape)}")
    offsets = torch.as_tensor(keypoint_offsets(num_keypoints), device=closest_keypoint.device)
    sizes = torch.as_tensor(list(num_keypoints), device=closest_keypoint.device)
    local = closest_keypoint.long()[None, :] - offsets[:, None]  # [D_s, C]
    inside = (local >= 0) & (local < sizes[:, None])
    return torch.where(inside, local, torch.full_like(local, -1))


def cluster_targets(
    targets: Tensor, target_weights: Tensor, dataset_index: Tensor, keypoint_map: Tensor
) -> tuple[Tensor, Tensor]:
    """Cluster-channel targets and weights, in batch order (Q6 fixed).

    Args:
        targets: `[B, K_max, H, W]` zero-padded GT heatmaps.
        target_weights: `[B, K_max, 1]` or `[B, K_max]`.
        dataset_index: `[B]` long.
        keypoint_map: `[D_s, C]` from `cluster_keypoint_map`.

    Returns:
        `[B, C, H, W]` targets and `[B, C, 1]` weights; channel c of sample b is the GT channel
        keypoint_map[d_b, c], or zero where that is -1. Clusters mapped to the same keypoint share a channel.
    """
    weights = weights_2d(target_weights)
    local = keypoint_map.to(targets.device)[dataset_index.long()]  # [B, C]
    mapped = local >= 0
    index = local.clamp(min=0)
    height, width = targets.shape[-2:]
    gathered = torch.gather(targets, 1, index[:, :, None, None].expand(-1, -1, height, width))
    cluster_heat = gathered * mapped[:, :, None, None].to(targets.dtype)
    cluster_weight = torch.gather(weights, 1, index) * mapped.to(weights.dtype)
    return cluster_heat, cluster_weight[..., None]


def cluster_loss(
    embeddings: Tensor,
    cluster_bank: Tensor,
    targets: Tensor,
    target_weights: Tensor,
    dataset_index: Tensor,
    keypoint_map: Tensor,
    *,
    weights: LossWeights | None = None,
    clustering: ClusteringSettings = DEFAULT_CLUSTERING,
    sample_threshold: float = 0.0,
    cluster_heatmaps: Tensor | None = None,
    all_reduce: AllReduce | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """cps_loss = cps * (proto * (ppc PPC + ppd PPD) + phm * JointsMSE(CH, TC, WC)) (spec §4.7 "CPS loss").

    The frozen cluster bank is never updated; its Sinkhorn targets are computed like a dataset with offset 0 and
    C classes. Gradients reach only the embeddings.

    Args:
        embeddings: `[B, D, H, W]` embedding map.
        cluster_bank: `[C, M, D]` cluster prototypes.
        targets, target_weights, dataset_index: the batch's padded GT and dataset ids.
        keypoint_map: `[D_s, C]` from `cluster_keypoint_map`.
        weights: `LossWeights` (cps, proto, ppc, ppd, phm).
        clustering: `ClusteringSettings` (the similarity and Sinkhorn parameters; the assignment is always
            "argmax" here, as released).
        sample_threshold: foreground threshold (0.0).
        cluster_heatmaps: `[B, C, H, W]` precomputed cluster heatmaps (computed from `embeddings` when None).
        all_reduce: optional sum-over-processes hook for Sinkhorn (call on every process).

    Returns:
        (loss, logs) with `cps_loss`, `cps_ppc`, `cps_ppd`, `cps_mse` (unweighted) and `cps_pixels`.
    """
    weights = weights or LossWeights()
    argmax = replace(clustering, assignment="argmax")  # CPS and CSS use the Sinkhorn hard index, as released
    num_datasets, num_clusters = keypoint_map.shape
    check_targets(targets, target_weights, dataset_index, [1] * num_datasets)
    if cluster_bank.dim() != 3 or cluster_bank.shape[0] != num_clusters:
        raise ValueError(f"cluster_bank must be [C={num_clusters}, M, D]; got {tuple(cluster_bank.shape)}")
    heat = prototype_heatmaps(embeddings, cluster_bank, clustering.similarity) if cluster_heatmaps is None else cluster_heatmaps
    cluster_heat, cluster_weight = cluster_targets(targets, target_weights, dataset_index, keypoint_map)
    pixels = sample_foreground_pixels(embeddings, cluster_heat, sample_threshold)
    logs = {"cps_pixels": float(len(pixels))}
    contrast = embeddings.new_zeros((), dtype=torch.float32)
    if len(pixels) or all_reduce is not None:
        result = cluster_pixels(cluster_bank, pixels.embeddings, pixels.classes, pixels.confidences, 0,
                                num_clusters, argmax, all_reduce=all_reduce)
        if len(pixels):
            contrast, proto_logs = prototype_contrastive_loss(result.logits, result.targets,
                                                              weights=weights)
            logs.update(cps_ppc=proto_logs["ppc"], cps_ppd=proto_logs["ppd"])
    mse = joints_mse(heat, cluster_heat, cluster_weight)
    loss = weights.cps * (contrast + weights.phm * mse)
    logs.update(cps_mse=float(mse.detach()), cps_loss=float(loss.detach()))
    return loss, logs
