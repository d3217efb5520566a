"""Cross-type self-supervision ("CSS", spec §4.8, paper Sec. 3.3, Eqs. 7-8).

Symbols: B batch, N samples not of dataset d, K = K_d keypoints of skeleton d, off_d its first prototype row,
H x W heatmap size, M prototypes per keypoint, D embedding dim.

For each skeleton d with a heatmap head, the samples of the *other* datasets get pseudo labels where the
multi-head heatmap (MH, head d) and the prototype heatmap (PH, rows of d) agree: both maxima > 0.25 and integer
peaks within 2.1 px. The pseudo keypoint fuses both heads' decoded (argmax + DARK) coordinates weighted by their
confidences; its target heatmap comes from the codec's torch UDP encode (sigma 2, stride 1) with weight
min(c_MH, c_PH). Deviations from the released code (fixed, see tests/test_losses_css.py):
- Q8: the distance is sqrt((x_MH - x_PH)^2 + (y_MH - y_PH)^2) (released: (x_PH - y_PH) in the second term).
- Q9: pseudo = a * xy_MH + b * xy_PH (released: a * xy_MH + b * c_PH, the PH confidence for both coordinates).
- A pseudo keypoint whose Gaussian falls outside the map (possible only after a degenerate DARK step) gets
  weight 0 instead of training the heads toward an empty map.
The prototype bank is frozen while CSS runs (both schedules), so CSS never updates prototypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..codecs import decode_heatmaps_torch, encode_heatmaps_torch, get_max_preds_torch
from ..ops import AllReduce
from .heatmap import joints_mse
from .layout import keypoint_offsets
from .prototypes import DEFAULT_CLUSTERING, ClusteringSettings, cluster_pixels, prototype_contrastive_loss
from .sampling import sample_foreground_pixels
from .weights import LossWeights

__all__ = ["PseudoLabels", "css_loss", "css_pseudo_labels"]


@dataclass(frozen=True)
class PseudoLabels:
    """CSS pseudo labels of N samples x K keypoints (no gradient).

    Attributes:
        heatmaps: `[N, K, H, W]` UDP Gaussian targets (zero where not accepted).
        weights: `[N, K]` min(c_MH, c_PH) where accepted, else 0.
        keypoints: `[N, K, 2]` fused (x, y) in heatmap pixels (NaN where not accepted).
        accepted: `[N, K]` bool, passed both filters.
        confident: `[N, K]` bool, passed the confidence filter.
    """

    heatmaps: Tensor
    weights: Tensor
    keypoints: Tensor
    accepted: Tensor
    confident: Tensor


@torch.no_grad()
def css_pseudo_labels(
    head_heatmaps: Tensor,
    proto_heatmaps: Tensor,
    *,
    conf_thr: float = 0.25,
    match_dist: float = 2.1,
    decode_kernel: int = 11,
    sigma: float = 2.0,
) -> PseudoLabels:
    """Agreement-based pseudo labels from the multi-head and prototype heatmaps (spec §4.8 steps 1-7).

    Args:
        head_heatmaps: `[N, K, H, W]` MH, head d's output on samples of other datasets.
        proto_heatmaps: `[N, K, H, W]` PH, prototype heatmaps of d's rows on the same samples.
        conf_thr: both maxima must exceed it (0.25).
        match_dist: max Euclidean distance between the integer peaks, heatmap pixels (2.1).
        decode_kernel: DARK blur kernel (11).
        sigma: pseudo-target Gaussian sigma (2).

    Returns:
        `PseudoLabels`.
    """
    if head_heatmaps.shape != proto_heatmaps.shape or head_heatmaps.dim() != 4:
        raise ValueError(f"css_pseudo_labels: MH {tuple(head_heatmaps.shape)} and PH "
                         f"{tuple(proto_heatmaps.shape)} must both be [N, K, H, W]")
    mh, ph = head_heatmaps.detach().float(), proto_heatmaps.detach().float()
    num, k, height, width = mh.shape
    peak_mh, max_mh = get_max_preds_torch(mh)  # [N, K, 2] integer peaks, [N, K] maxima
    peak_ph, max_ph = get_max_preds_torch(ph)
    confident = (max_mh > conf_thr) & (max_ph > conf_thr)
    distance = (peak_mh - peak_ph).pow(2).sum(dim=-1).sqrt()  # Q8 fixed: both coordinates of MH vs PH
    accepted = confident & (distance <= match_dist)

    heat = mh.new_zeros((num, k, height, width))
    weight = mh.new_zeros((num, k))
    fused = torch.full((num, k, 2), float("nan"), device=mh.device)
    if bool(accepted.any()):
        xy_mh, c_mh = decode_heatmaps_torch(mh[accepted][None], mode="udp", kernel=decode_kernel)
        xy_ph, c_ph = decode_heatmaps_torch(ph[accepted][None], mode="udp", kernel=decode_kernel)
        total = (c_mh + c_ph).clamp(min=1e-4)
        pseudo = (c_mh / total)[..., None] * xy_mh + (c_ph / total)[..., None] * xy_ph  # Q9 fixed: PH coords
        target, inside = encode_heatmaps_torch(pseudo, torch.ones_like(c_mh), heatmap_size=(width, height),
                                               sigma=sigma, mode="udp")
        heat[accepted] = target[0]
        weight[accepted] = (torch.minimum(c_mh, c_ph) * (inside > 0))[0]
        fused[accepted] = pseudo[0]
    return PseudoLabels(heat, weight, fused, accepted, confident)


def css_loss(
    embeddings: Tensor,
    head_heatmaps: Sequence[Tensor | None],
    prototype_heatmaps: Tensor,
    dataset_index: Tensor,
    prototypes: Tensor,
    num_keypoints: Sequence[int],
    *,
    weights: LossWeights | None = None,
    clustering: ClusteringSettings = DEFAULT_CLUSTERING,
    decode_kernel: int = 11,
    sigma: float = 2.0,
    all_reduce: AllReduce | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """css_loss = css * sum_d (MSE(MH, CT, CW) + phm * MSE(PH, CT, CW) + PPC/PPD of the pseudo pixels).

    Only samples whose dataset is not d are pseudo-labelled for skeleton d; samples without any accepted
    keypoint are dropped. Pseudo targets carry no gradient; MH trains head d (and the backbone when trainable),
    PH and the PPC/PPD term train the embeddings.

    Args:
        embeddings: `[B, D, H, W]` embedding map.
        head_heatmaps: per dataset d, `[B, K_d, H, W]` head output on the whole batch (None = skip d).
        prototype_heatmaps: `[B, K_tot, H, W]` prototype heatmaps (computed before this iteration's updates).
        dataset_index: `[B]` long.
        prototypes: `[K_tot, M, D]` the (frozen) keypoint bank.
        num_keypoints: K_d per dataset, in bank order.
        weights: `LossWeights` (css, phm, proto, ppc, ppd, css_conf_thr, css_match_dist).
        clustering: `ClusteringSettings` (the similarity and Sinkhorn parameters; the assignment is always
            "argmax" here, as released).
        decode_kernel, sigma: 11, 2.
        all_reduce: optional sum-over-processes hook for Sinkhorn (then call on every process).

    Returns:
        (loss, logs): `css_loss` plus acceptance statistics: per skeleton `css_candidates_{d}`,
        `css_confident_{d}`, `css_accepted_{d}`, `css_instances_{d}`, `css_mean_weight_{d}`, and the totals
        `css_candidates`, `css_accepted`, `css_accept_rate`.
    """
    weights = weights or LossWeights()
    argmax = replace(clustering, assignment="argmax")  # CPS and CSS use the Sinkhorn hard index, as released
    offsets = keypoint_offsets(num_keypoints)
    if len(head_heatmaps) != len(num_keypoints):
        raise ValueError(f"need one head output (or None) per dataset: {len(num_keypoints)}; "
                         f"got {len(head_heatmaps)}")
    total = embeddings.new_zeros((), dtype=torch.float32)
    logs: dict[str, float] = {}
    candidates = accepted_total = 0
    for d, (off, k, head) in enumerate(zip(offsets, num_keypoints, head_heatmaps, strict=True)):
        if head is None:
            continue
        if head.shape[1] != k:
            raise ValueError(f"head {d} outputs {head.shape[1]} channels; dataset {d} has {k} keypoints")
        others = dataset_index != d
        if all_reduce is None and not bool(others.any()):
            continue
        mh, ph = head[others], prototype_heatmaps[others][:, off:off + k]
        labels = css_pseudo_labels(mh, ph, conf_thr=weights.css_conf_thr, match_dist=weights.css_match_dist,
                                   decode_kernel=decode_kernel, sigma=sigma)
        kept = labels.accepted.any(dim=1)
        n_acc = int(labels.accepted.sum())
        candidates += labels.accepted.numel()
        accepted_total += n_acc
        logs.update({f"css_candidates_{d}": float(labels.accepted.numel()),
                     f"css_confident_{d}": float(labels.confident.sum()),
                     f"css_accepted_{d}": float(n_acc), f"css_instances_{d}": float(kept.sum()),
                     f"css_mean_weight_{d}": float(labels.weights.sum() / max(n_acc, 1))})
        if all_reduce is None and n_acc == 0:
            continue
        target, weight = labels.heatmaps[kept], labels.weights[kept]
        loss_d = joints_mse(mh[kept], target, weight) + weights.phm * joints_mse(ph[kept], target, weight)
        pixels = sample_foreground_pixels(embeddings[others][kept], target * weight[:, :, None, None])
        if len(pixels) or all_reduce is not None:
            result = cluster_pixels(prototypes, pixels.embeddings, pixels.classes, pixels.confidences, off, k,
                                    argmax, all_reduce=all_reduce)
            if len(pixels):
                loss_d = loss_d + prototype_contrastive_loss(result.logits, result.targets,
                                                             weights=weights)[0]
        total = total + loss_d
    loss = weights.css * total
    logs.update(css_loss=float(loss.detach()), css_candidates=float(candidates),
                css_accepted=float(accepted_total), css_accept_rate=accepted_total / max(candidates, 1))
    return loss, logs
