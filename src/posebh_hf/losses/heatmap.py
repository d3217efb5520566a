"""Heatmap MSE losses (spec §4.1, §4.2, §3 step 4).

Symbols: B batch, N samples, K keypoints, K_max padded target channels, K_tot prototype rows, H x W heatmap.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .layout import check_targets, keypoint_offsets, weights_2d

__all__ = ["joints_mse", "multi_head_loss", "prototype_heatmap_loss"]


def joints_mse(pred: Tensor, target: Tensor, target_weight: Tensor | None = None) -> Tensor:
    """JointsMSELoss with target weights: (1/K) sum_k mean_{n,pixels} (w[n,k] O - w[n,k] T)^2 (no 1/2 factor).

    Args:
        pred: `[N, K, H, W]` predicted heatmaps.
        target: `[N, K, H, W]` target heatmaps.
        target_weight: `[N, K, 1]` or `[N, K]` weights; None = all ones.

    Returns:
        fp32 scalar; 0 (still attached to `pred`) when N = 0.
    """
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"joints_mse: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be "
                         f"[N, K, H, W]")
    if pred.numel() == 0:
        return pred.float().sum() * 0.0
    pred, target = pred.float(), target.float()
    if target_weight is None:
        return (pred - target).pow(2).mean()
    weight = weights_2d(target_weight).float()
    if tuple(weight.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"joints_mse: target_weight {tuple(target_weight.shape)} does not match pred "
                         f"{tuple(pred.shape)}")
    weight = weight[:, :, None, None]
    # equal to the mean over N*K*H*W: every keypoint has the same N*H*W pixels
    return (weight * pred - weight * target).pow(2).mean()


def multi_head_loss(
    heatmaps: Sequence[Tensor | None],
    targets: Tensor,
    target_weights: Tensor,
    dataset_index: Tensor,
    *,
    weight: float = 1.0,
    routed: bool = False,
) -> tuple[Tensor, dict[str, float]]:
    """Sum over heads d of JointsMSE(O_d, T_d, W_d) with targets masked to the samples of dataset d (spec §3).

    As released, every head runs on the whole batch; samples of other datasets have zero target and zero weight,
    so they contribute 0 but count in the mean over B. With `routed=True` each head was run on its own n_d
    samples only (`model(..., route_heads=True)`); the mean over those is scaled by n_d / B, which gives the same
    value and gradient for a fraction of the head compute.

    Args:
        heatmaps: per dataset d, `[B, K_d, H, W]` head output, or `[n_d, K_d, H, W]` when `routed` (None = head not
            computed, skipped).
        targets: `[B, K_max, H, W]` zero-padded targets.
        target_weights: `[B, K_max, 1]` zero-padded weights.
        dataset_index: `[B]` long.
        weight: factor of each head's MSE (1.0).
        routed: `heatmaps[d]` holds only the rows of `dataset_index == d`, in batch order.

    Returns:
        (loss, logs) with logs `head_loss_{d}` per computed head and `head_loss`.
    """
    num_keypoints = [h.shape[1] if h is not None else 1 for h in heatmaps]
    check_targets(targets, target_weights, dataset_index, num_keypoints)
    weights = weights_2d(target_weights)
    total = targets.new_zeros((), dtype=targets.dtype).float()
    logs: dict[str, float] = {}
    for d, out in enumerate(heatmaps):
        if out is None:
            continue
        k = out.shape[1]
        if routed:
            own = dataset_index == d
            if out.shape[0] != int(own.sum()):
                raise ValueError(f"multi_head_loss: routed head {d} has {out.shape[0]} rows but dataset_index holds "
                                 f"{int(own.sum())} samples of dataset {d}")
            scale = out.shape[0] / max(targets.shape[0], 1)
            loss_d = weight * scale * joints_mse(out, targets[own, :k], weights[own, :k])
        else:
            mask = (dataset_index == d).to(targets.dtype)
            loss_d = weight * joints_mse(out, targets[:, :k] * mask[:, None, None, None],
                                         weights[:, :k] * mask[:, None])
        total = total + loss_d
        logs[f"head_loss_{d}"] = float(loss_d.detach())
    logs["head_loss"] = float(total.detach())
    return total, logs


def prototype_heatmap_loss(
    prototype_heatmaps: Tensor,
    targets: Tensor,
    target_weights: Tensor,
    dataset_index: Tensor,
    num_keypoints: Sequence[int],
    *,
    weight: float = 3.33e-6,
    sample_threshold: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """phm loss (spec §4.2): sum over datasets d of JointsMSE(PHM[d-samples, off_d:off_d+K_d], T_d, W_d).

    A dataset counts only when its samples have at least one foreground pixel (target > `sample_threshold`),
    i.e. exactly when the prototype losses of §4.3-4.5 run for it, as released. Means are over d's samples.

    Args:
        prototype_heatmaps: `[B, K_tot, H, W]` prototype heatmaps of every row, computed before any prototype
            update of this iteration (gradient into the embeddings).
        targets: `[B, K_max, H, W]` zero-padded GT heatmaps.
        target_weights: `[B, K_max, 1]` zero-padded weights.
        dataset_index: `[B]` long.
        num_keypoints: K_d per dataset (rows of the prototype bank in dataset order).
        weight: phm factor (3.33e-6).
        sample_threshold: foreground threshold of the pixel sampling (0.0 MDT, 0.2 transfer).

    Returns:
        (loss, logs) with logs `phm_loss_{d}` (unweighted MSE) per counted dataset and `phm_loss` (weighted).
    """
    check_targets(targets, target_weights, dataset_index, num_keypoints)
    offsets = keypoint_offsets(num_keypoints)
    if prototype_heatmaps.dim() != 4 or prototype_heatmaps.shape[1] < offsets[-1] + num_keypoints[-1]:
        raise ValueError(f"prototype_heatmaps must be [B, K_tot >= {offsets[-1] + num_keypoints[-1]}, H, W]; "
                         f"got {tuple(prototype_heatmaps.shape)}")
    weights = weights_2d(target_weights)
    total = prototype_heatmaps.new_zeros((), dtype=prototype_heatmaps.dtype).float()
    logs: dict[str, float] = {}
    for d, (off, k) in enumerate(zip(offsets, num_keypoints, strict=True)):
        mask = dataset_index == d
        target_d = targets[mask, :k]
        if target_d.numel() == 0 or not bool((target_d > sample_threshold).any()):
            continue
        mse = joints_mse(prototype_heatmaps[mask, off:off + k], target_d, weights[mask, :k])
        total = total + mse
        logs[f"phm_loss_{d}"] = float(mse.detach())
    total = weight * total
    logs["phm_loss"] = float(total.detach())
    return total, logs
