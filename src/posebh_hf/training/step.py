"""One PoseBH training iteration's maths: forward -> every loss term -> the new prototype bank (spec §3, §4, App. C).

Symbols: B batch, K_d keypoints of dataset d, K_max padded target channels, K_tot = sum_d K_d prototype rows,
M prototypes per keypoint, D embedding dim, C clusters, H x W heatmap size.

`compute_losses` is pure with respect to the model's buffers: it returns the updated bank instead of writing it,
so the loop writes it only after a successful (finite) optimizer step, under no_grad, in fp32, and after the
cross-process averaging (spec §4.6). The Sinkhorn / momentum statistics are summed over processes through the
`all_reduce` hook, so every process computes the update of the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..losses import (
    ClusteringSettings,
    LossWeights,
    cluster_loss,
    css_loss,
    multi_head_loss,
    prototype_heatmap_loss,
    prototype_loss,
)
from ..ops import AllReduce, prototype_heatmaps
from .config import LossConfig
from .schedule import StageFlags

__all__ = ["LossContext", "StepResult", "compute_losses", "loss_weights"]


def loss_weights(config: LossConfig) -> LossWeights:
    """The losses package's `LossWeights` from the training config."""
    return config.weights()


@dataclass
class LossContext:
    """What the losses need besides the batch.

    Attributes:
        num_keypoints: K_d per dataset (= heads, = prototype blocks, in `dataset_index` order).
        config: the loss section of the training config.
        similarity: "abs_cosine" or "cosine" (the model's).
        use_prototypes: False in the multihead baseline (no embedding head, prototypes, CPS or CSS).
        keypoint_map: `[D_s, C]` local keypoint of each cluster per dataset, once the cluster bank is built.
        all_reduce: sum over processes (None on one process).
    """

    num_keypoints: list[int]
    config: LossConfig
    similarity: str = "abs_cosine"
    use_prototypes: bool = True
    keypoint_map: Tensor | None = None
    all_reduce: AllReduce | None = None
    weights: LossWeights = field(init=False)
    clustering: ClusteringSettings = field(init=False)

    def __post_init__(self) -> None:
        self.weights = loss_weights(self.config)
        c = self.config
        self.clustering = ClusteringSettings(similarity=self.similarity, hard_cluster=c.hard_cluster,
                                              sinkhorn_epsilon=c.sinkhorn_epsilon, sinkhorn_iters=c.sinkhorn_iters,
                                              gumbel_tau=c.gumbel_tau)

    @property
    def num_rows(self) -> int:
        return sum(self.num_keypoints)


@dataclass
class StepResult:
    """Loss of one micro-batch and what to do after the optimizer step.

    Attributes:
        loss: fp32 scalar with gradient (the sum of every term).
        logs: every logged term (floats, this process).
        new_prototypes: `[K_tot, M, D]` fp32 bank after the momentum updates, or None when frozen / unused.
    """

    loss: Tensor
    logs: dict[str, float]
    new_prototypes: Tensor | None = None


def compute_losses(model: nn.Module, bank: PrototypeBankView | None, batch: Mapping[str, Tensor], flags: StageFlags,
                   ctx: LossContext) -> StepResult:
    """Forward the (possibly DDP-wrapped) model and compute every loss term of this stage.

    Work that cannot change the gradient is skipped: while the heads and the backbone are frozen and CSS is off
    (stage 1) the heads are not run (their loss is constant, so it is not logged either), and the prototype
    heatmaps are computed per dataset, for that dataset's samples and rows only, until CSS needs every row on
    every sample (spec §4.2 and §4.8 define the same values either way).

    Args:
        model: the model to call (wrapped for distributed training, or not).
        bank: read access to the prototype buffers (None in the multihead baseline).
        batch: collated batch: `pixel_values` [B, 3, H_in, W_in], `target` [B, K_max, H, W],
            `target_weight` [B, K_max], `dataset_index` [B].
        flags: the stage flags of the current epoch.
        ctx: `LossContext`.

    Returns:
        `StepResult`.
    """
    pixel_values, targets = batch["pixel_values"], batch["target"].float()
    weights_t, index = batch["target_weight"].float(), batch["dataset_index"].long()
    use_protos = ctx.use_prototypes and bank is not None
    css = use_protos and flags.css and ctx.weights.css > 0
    run_heads = not use_protos or flags.train_heads or flags.train_backbone or css
    # Only CSS reads heads on other datasets' samples; otherwise each head runs on its own samples (same loss).
    out = model(pixel_values, dataset_index=index, heads="all" if run_heads else [], output_embeddings=use_protos,
                route_heads=not css)
    heatmaps = [hm.float() for hm in out.heatmaps.values()]  # dataset order
    logs: dict[str, float] = {}
    total = pixel_values.new_zeros((), dtype=torch.float32)
    if heatmaps:
        total, logs = multi_head_loss(heatmaps, targets, weights_t, index, weight=ctx.weights.head, routed=not css)
    new_bank = None
    if use_protos:
        assert bank is not None
        embeddings = out.embeddings
        protos = bank.prototypes[:ctx.num_rows].detach()
        # PHM from the bank as it is before this iteration's updates (spec §4.2)
        phm_all = prototype_heatmaps(embeddings, protos, ctx.similarity) if css else None  # [B, K_tot, H, W]
        phm, phm_logs = _phm_loss(embeddings, protos, phm_all, targets, weights_t, index, ctx)
        proto, proto_logs, updated = prototype_loss(
            embeddings, targets, weights_t, index, protos, ctx.num_keypoints, weights=ctx.weights,
            update=flags.update_prototypes, gamma=ctx.config.momentum,
            sample_threshold=ctx.config.sample_threshold, all_reduce=ctx.all_reduce, clustering=ctx.clustering)
        total = total + phm + proto
        logs.update(phm_logs)
        logs.update(proto_logs)
        if flags.update_prototypes:
            new_bank = updated
        if flags.cps and ctx.keypoint_map is not None and ctx.weights.cps > 0 and bank.cluster_prototypes is not None:
            cps, cps_logs = cluster_loss(embeddings, bank.cluster_prototypes.detach(), targets, weights_t, index,
                                         ctx.keypoint_map, weights=ctx.weights,
                                         sample_threshold=ctx.config.sample_threshold, all_reduce=ctx.all_reduce,
                                         clustering=ctx.clustering)
            total = total + cps
            logs.update(cps_logs)
        if css:
            css_value, css_logs = css_loss(embeddings, heatmaps, phm_all, index, protos, ctx.num_keypoints,
                                           weights=ctx.weights, all_reduce=ctx.all_reduce, clustering=ctx.clustering)
            total = total + css_value
            logs.update(css_logs)
    logs["loss"] = float(total.detach())
    return StepResult(total, logs, new_bank)


def _phm_loss(embeddings: Tensor, protos: Tensor, phm_all: Tensor | None, targets: Tensor, weights: Tensor,
              index: Tensor, ctx: LossContext) -> tuple[Tensor, dict[str, float]]:
    """phm loss (spec §4.2) from `phm_all` [B, K_tot, H, W], or per dataset from its own samples and rows."""
    if phm_all is not None:
        return prototype_heatmap_loss(phm_all, targets, weights, index, ctx.num_keypoints, weight=ctx.weights.phm,
                                      sample_threshold=ctx.config.sample_threshold)
    total = embeddings.new_zeros((), dtype=torch.float32)
    logs: dict[str, float] = {}
    offset = 0
    for d, k in enumerate(ctx.num_keypoints):
        mask = index == d
        if bool(mask.any()):
            heat = prototype_heatmaps(embeddings[mask], protos[offset:offset + k], ctx.similarity)  # [n_d, K_d, H, W]
            zeros = torch.zeros(int(mask.sum()), dtype=torch.long, device=index.device)
            loss_d, logs_d = prototype_heatmap_loss(heat, targets[mask], weights[mask], zeros, [k],
                                                    weight=ctx.weights.phm,
                                                    sample_threshold=ctx.config.sample_threshold)
            total = total + loss_d
            if "phm_loss_0" in logs_d:
                logs[f"phm_loss_{d}"] = logs_d["phm_loss_0"]
        offset += k
    logs["phm_loss"] = float(total.detach())
    return total, logs


class PrototypeBankView:
    """Read/write access to the model's prototype buffers (fp32 writes under no_grad, in place).

    In-place copies keep the buffer objects that DDP / FSDP wrappers refer to.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module  # the model's `keypoint_prototypes`

    @property
    def prototypes(self) -> Tensor:
        return self.module.prototypes

    @property
    def cluster_prototypes(self) -> Tensor | None:
        return getattr(self.module, "cluster_prototypes", None)

    @torch.no_grad()
    def write_rows(self, new: Tensor, num_rows: int) -> None:
        """Write the first `num_rows` rows (the datasets' blocks; attached pack rows stay untouched)."""
        self.module.prototypes[:num_rows].copy_(new.to(self.module.prototypes))

    @torch.no_grad()
    def write_clusters(self, bank: Tensor) -> None:
        if self.cluster_prototypes is None or self.cluster_prototypes.shape != bank.shape:
            raise ValueError(f"the model's cluster bank has shape "
                             f"{None if self.cluster_prototypes is None else tuple(self.cluster_prototypes.shape)}, "
                             f"cannot store {tuple(bank.shape)} (set model.num_cluster_prototypes)")
        self.module.cluster_prototypes.copy_(bank.to(self.module.cluster_prototypes))
