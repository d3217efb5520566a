"""Keypoint prototypes and prototype heatmaps (spec §2.5).

Symbols: B batch, D embedding dim, H x W embedding map, K prototype rows (keypoints of every prototype skeleton,
in `PoseBHConfig.prototype_skeleton_names` order), k rows of one skeleton, M prototypes per keypoint, C clusters.

Prototypes are persistent *buffers* (saved with the model, never optimised). The forward pass only reads them;
momentum updates and cross-process averaging belong to the training step, which writes new values back with
`set_rows` / `copy_`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from ..ops.similarity import HEATMAP_CLAMP as OPS_HEATMAP_CLAMP
from ..ops.similarity import prototype_heatmaps

__all__ = ["HEATMAP_CLAMP", "KeypointPrototypes", "init_unit_prototypes_", "prototype_heatmaps"]

# PHM values are clamped to [eps, 1 - eps] as in the official code (they are compared with Gaussian targets).
HEATMAP_CLAMP = OPS_HEATMAP_CLAMP[0]


@torch.no_grad()
def init_unit_prototypes_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """Truncated normal (std, cut at +-2) then L2 normalisation along D, in place.

    Uses `transformers.initialization`, so a tensor already loaded from a checkpoint is left untouched.
    """
    init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0, b=2.0)
    init.copy_(tensor, F.normalize(tensor.float(), dim=-1, eps=1e-12).to(tensor.dtype))
    return tensor



def _unit_rows(values: torch.Tensor) -> torch.Tensor:
    """[k, M, D] rows L2-normalised in float32. Rows that are already unit length (a pack exported from a model)
    keep their values bit for bit: normalising again moves them by an ulp, so a pack attached to a copy of its
    model would give heatmaps that differ in the last bit."""
    values = values.detach().float()
    norms = values.norm(dim=-1)
    if torch.allclose(norms, torch.ones_like(norms), rtol=0.0, atol=1e-6):
        return values.clone()
    return F.normalize(values, dim=-1)

class KeypointPrototypes(nn.Module):
    """The prototype bank `prototypes` [K, M, D] and optional cluster bank `cluster_prototypes` [C, M, D].

    Rows of one skeleton are a contiguous block (offsets in `PoseBHConfig.prototype_offsets`); new skeletons are
    appended with `append_rows`.
    """

    def __init__(self, num_rows: int, num_prototypes: int, embed_dim: int, num_clusters: int = 0,
                 similarity: str = "abs_cosine") -> None:
        super().__init__()
        self.similarity = similarity
        self.register_buffer("prototypes", torch.zeros(num_rows, num_prototypes, embed_dim), persistent=True)
        if num_clusters > 0:
            self.register_buffer("cluster_prototypes", torch.zeros(num_clusters, num_prototypes, embed_dim),
                                 persistent=True)
        else:
            self.cluster_prototypes: torch.Tensor | None = None

    @property
    def num_prototypes(self) -> int:
        return self.prototypes.shape[1]

    @property
    def embed_dim(self) -> int:
        return self.prototypes.shape[2]

    def heatmaps(self, embeddings: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """[B, D, H, W] -> [B, k, H, W] for prototype rows `rows` (all K when None)."""
        protos = self.prototypes if rows is None else self.prototypes[rows]
        return prototype_heatmaps(embeddings, protos, self.similarity)

    def cluster_heatmaps(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[B, D, H, W] -> [B, C, H, W] from the cluster bank."""
        if self.cluster_prototypes is None:
            raise ValueError("this model has no cluster prototypes (config.num_cluster_prototypes == 0)")
        return prototype_heatmaps(embeddings, self.cluster_prototypes, self.similarity)

    def _check_rows(self, rows: torch.Tensor, what: str) -> None:
        expected = (self.num_prototypes, self.embed_dim)
        if rows.ndim != 3 or tuple(rows.shape[1:]) != expected:
            raise ValueError(f"{what}: expected a tensor [k, {expected[0]}, {expected[1]}] (M, D of this model), got "
                             f"{tuple(rows.shape)}")

    @torch.no_grad()
    def append_rows(self, rows: torch.Tensor) -> slice:
        """Append k new rows [k, M, D] (stored L2-normalised) and return their slice of the bank."""
        self._check_rows(rows, "append_rows")
        start = self.prototypes.shape[0]
        rows = _unit_rows(rows).to(self.prototypes)
        self.prototypes = torch.cat([self.prototypes, rows], dim=0)
        return slice(start, start + rows.shape[0])

    @torch.no_grad()
    def set_rows(self, rows: slice, values: torch.Tensor) -> None:
        """Overwrite the rows `rows` with `values` [k, M, D] (stored L2-normalised)."""
        self._check_rows(values, "set_rows")
        n = len(range(*rows.indices(self.prototypes.shape[0])))
        if values.shape[0] != n:
            raise ValueError(f"set_rows: {values.shape[0]} rows given for a block of {n} rows")
        self.prototypes[rows] = _unit_rows(values).to(self.prototypes)

    @torch.no_grad()
    def remove_rows(self, rows: slice) -> None:
        """Drop the block `rows`; the blocks after it move up (their owners' offsets come from the config)."""
        bank = self.prototypes
        self.prototypes = torch.cat([bank[: rows.start], bank[rows.stop:]], dim=0)

    @torch.no_grad()
    def set_cluster_prototypes(self, bank: torch.Tensor) -> None:
        """Install (or replace) the cluster bank [C, M, D], e.g. after the CPS K-means at the stage switch."""
        self._check_rows(bank, "set_cluster_prototypes")
        bank = F.normalize(bank.detach().float(), dim=-1).to(self.prototypes)
        if self.cluster_prototypes is None:
            del self.cluster_prototypes
            self.register_buffer("cluster_prototypes", bank, persistent=True)
        else:
            self.cluster_prototypes = bank
