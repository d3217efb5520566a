"""Starting a new skeleton's prototypes from a frozen embedding (ours, not in the released code; docs/deviations.md).

- `class_mean_sums` + `warm_start_prototypes`: every row starts at its keypoint's mean unit embedding (then the
  momentum rule refines it);
- `peak_pixels` + `fit_prototypes`: prototypes fitted by gradient so that each keypoint's prototype heatmap peaks
  at its ground-truth pixel (a spatial cross-entropy over the image's pixels): the most prototypes of this form can
  get out of a frozen embedding, since they are then chosen to tell the keypoint from the rest of the image.

Symbols: B batch, D embedding dim, K_max padded target channels, K_tot = sum_d K_d prototype rows, M prototypes per
row, H x W heatmap size.

Why: the momentum rule (spec §4.4) moves a keypoint's prototypes only with the pixels the bank already classifies as
that keypoint (the correctness mask). A new skeleton's prototypes start random; a keypoint whose pixels lie nearer
another keypoint's (already moved) prototype is never classified right, so its prototypes never move. Measured on
`dlc_reaching` (docs/mdt_mini.md section 3): after a whole transfer run the hand and tongue prototypes still had
|cos| < 0.12 to their keypoint's mean embedding. Starting every row at that mean (from the frozen embedding) gives
the rule something to refine. The momentum rule itself averages the pixels it already classifies right, never
against the rest of the image; on `dlc_reaching` fitted prototypes find the keypoints about as well as a new head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..ops import check_similarity_mode, prototype_similarity
from .layout import keypoint_offsets
from .sampling import sample_foreground_pixels

__all__ = ["class_mean_sums", "fit_prototypes", "peak_pixels", "warm_start_prototypes"]


@torch.no_grad()
def class_mean_sums(embeddings: Tensor, targets: Tensor, dataset_index: Tensor, num_keypoints: Sequence[int],
                    sample_threshold: float = 0.0) -> Tensor:
    """Per prototype row, the target-weighted sum of unit embeddings over its foreground pixels and the weight.

    Pixels are sampled as the prototype loss samples them (`sample_foreground_pixels`: target max > threshold,
    class = argmax channel). Sums (not means) so batches and processes add up.

    Args:
        embeddings: `[B, D, H, W]` raw embedding map.
        targets: `[B, K_max, H, W]` zero-padded GT heatmaps.
        dataset_index: `[B]` long.
        num_keypoints: K_d per dataset, in bank order.
        sample_threshold: foreground threshold.

    Returns:
        `[K_tot, D + 1]` fp32: columns :D the weighted sum of unit embeddings, column D the sum of weights.
    """
    dim = embeddings.shape[1]
    sums = embeddings.new_zeros((sum(num_keypoints), dim + 1), dtype=torch.float32)
    for d, (offset, k) in enumerate(zip(keypoint_offsets(num_keypoints), num_keypoints, strict=True)):
        mask = dataset_index == d
        if not bool(mask.any()):
            continue
        pixels = sample_foreground_pixels(embeddings[mask].float(), targets[mask, :k].float(), sample_threshold)
        if len(pixels) == 0:
            continue
        weight = pixels.confidences[:, None]
        unit = torch.nn.functional.normalize(pixels.embeddings, dim=1)
        sums.index_add_(0, pixels.classes + offset, torch.cat([weight * unit, weight], dim=1))
    return sums


@torch.no_grad()
def warm_start_prototypes(prototypes: Tensor, sums: Tensor, spread: float = 0.1) -> Tensor:
    """Move each row that has pixels in `sums` to its class mean; the M slots stay `spread` apart.

    Slot m becomes normalise(mean direction + spread * its current unit prototype): near the mean, but distinct, so
    the Sinkhorn assignment can still split a keypoint's pixels among its M prototypes. Rows without pixels keep
    their prototypes.

    Args:
        prototypes: `[K_tot, M, D]` bank (not modified).
        sums: `[K_tot, D + 1]` from `class_mean_sums` (summed over batches / processes).
        spread: weight of the current prototype in each slot (0 = every slot exactly at the mean).

    Returns:
        `[K_tot, M, D]` fp32 unit-norm prototypes.
    """
    if sums.shape != (prototypes.shape[0], prototypes.shape[2] + 1):
        raise ValueError(f"sums must be [K_tot, D + 1] = [{prototypes.shape[0]}, {prototypes.shape[2] + 1}] for a "
                         f"bank of shape {tuple(prototypes.shape)}; got {tuple(sums.shape)}")
    normalize = torch.nn.functional.normalize
    current = normalize(prototypes.float(), dim=-1)
    mean = normalize(sums[:, :-1].float(), dim=-1)[:, None]  # [K_tot, 1, D]
    moved = normalize(mean + spread * current, dim=-1)
    has_pixels = (sums[:, -1] > 0)[:, None, None]
    return torch.where(has_pixels, moved, current)


def peak_pixels(targets: Tensor) -> tuple[Tensor, Tensor]:
    """GT heatmaps `[N, K, H, W]` -> (flat index of each channel's maximum `[N, K]` long, visible `[N, K]` bool:
    the channel has a positive maximum)."""
    flat = targets.detach().flatten(2)
    peak, index = flat.max(dim=2)
    return index, peak > 0


@torch.enable_grad()
def fit_prototypes(embeddings: Tensor, peak_index: Tensor, visible: Tensor, start: Tensor, *,
                   similarity: str = "abs_cosine", steps: int = 300, lr: float = 0.05, logit_scale: float = 20.0
                   ) -> Tensor:
    """Prototypes `[K, M, D]` whose heatmaps peak at the keypoints: Adam on a spatial cross-entropy.

    For each sample n and visible keypoint k the logits over the H x W pixels are `logit_scale * max_m sim(e, p_km)`
    (sim = the model's similarity) and the target is the GT peak pixel. The embedding map is frozen (no gradient
    reaches it); only the prototypes move.

    Args:
        embeddings: `[N, D, H, W]` embedding map (raw or unit; normalised here).
        peak_index: `[N, K]` long flat pixel index of each keypoint (`peak_pixels`).
        visible: `[N, K]` bool: which (n, k) count.
        start: `[K, M, D]` starting prototypes (e.g. `warm_start_prototypes`).
        similarity: "abs_cosine" or "cosine".
        steps, lr: Adam steps and learning rate (full batch).
        logit_scale: similarities in [-1, 1] -> logits; larger fits the frames faster.

    Returns:
        `[K, M, D]` fp32 unit-norm prototypes (start unchanged when nothing is visible).
    """
    check_similarity_mode(similarity)
    num, dim, height, width = embeddings.shape
    if peak_index.shape != visible.shape or peak_index.shape != (num, start.shape[0]) or start.shape[2] != dim:
        raise ValueError(f"fit_prototypes: need embeddings [N, D, H, W], peak_index and visible [N, K], start "
                         f"[K, M, D]; got {tuple(embeddings.shape)}, {tuple(peak_index.shape)}, "
                         f"{tuple(visible.shape)}, {tuple(start.shape)}")
    normalize = torch.nn.functional.normalize
    if not bool(visible.any()):
        return normalize(start.float(), dim=-1)
    pixels = normalize(embeddings.detach().float(), dim=1).permute(0, 2, 3, 1).reshape(-1, dim)  # [N*H*W, D]
    params = torch.nn.Parameter(start.detach().float().clone())  # normalised in the similarity
    optimizer = torch.optim.Adam([params], lr=lr)
    for _ in range(steps):
        sim = prototype_similarity(pixels, params, similarity).amax(dim=2)  # [N*H*W, K]
        logits = logit_scale * sim.view(num, height * width, -1)  # [N, HW, K]
        loss = torch.nn.functional.cross_entropy(logits, peak_index, reduction="none")[visible].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return normalize(params.detach(), dim=-1)
