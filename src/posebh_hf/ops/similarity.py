"""Pixel-prototype similarity and prototype heatmaps (spec §2.5, paper Eq. 1).

Symbols: N pixels, B batch, D embedding dim, K prototype rows (keypoints or clusters), M prototypes per row,
H x W heatmap size.

Everything runs in fp32 with autocast disabled: the similarities feed Sinkhorn (exp(s / 0.05)) and losses whose
weights are ~1e-7, where fp16 rounding would dominate (spec §3, last paragraph).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "HEATMAP_CLAMP",
    "SIMILARITY_MODES",
    "SimilarityMode",
    "check_similarity_mode",
    "normalize_embeddings",
    "prototype_heatmaps",
    "prototype_logits",
    "prototype_similarity",
]

SimilarityMode = Literal["abs_cosine", "cosine"]
SIMILARITY_MODES: tuple[str, ...] = ("abs_cosine", "cosine")
# Prototype heatmaps are clamped like the released code so that they live in heatmap space (0, 1).
HEATMAP_CLAMP: tuple[float, float] = (1e-4, 1.0 - 1e-4)
_NORM_EPS = 1e-12  # F.normalize default, as in the released code


def check_similarity_mode(mode: str) -> None:
    """Raise a ValueError naming the accepted modes when `mode` is unknown."""
    if mode not in SIMILARITY_MODES:
        raise ValueError(f"unknown similarity {mode!r}; expected one of {SIMILARITY_MODES}")


def normalize_embeddings(x: Tensor, dim: int = -1) -> Tensor:
    """L2-normalise `x` along `dim` in fp32 (eps 1e-12)."""
    return F.normalize(x.float(), p=2.0, dim=dim, eps=_NORM_EPS)


def _rescale(sim: Tensor, mode: str) -> Tensor:
    # Q1: the released code uses |cos| (`sim_rescale='abs'`); the paper writes plain cosine.
    return sim.abs() if mode == "abs_cosine" else sim


def _check_prototypes(prototypes: Tensor, embed_dim: int, what: str) -> None:
    if prototypes.dim() != 3:
        raise ValueError(f"prototypes must have shape [K, M, D]; got {tuple(prototypes.shape)}")
    if prototypes.shape[-1] != embed_dim:
        raise ValueError(f"{what} has D={embed_dim} but prototypes have D={prototypes.shape[-1]} "
                         f"(prototypes shape {tuple(prototypes.shape)})")


def prototype_similarity(embeddings: Tensor, prototypes: Tensor, mode: str = "abs_cosine") -> Tensor:
    """Similarity of every pixel embedding to every prototype.

    Args:
        embeddings: `[N, D]` raw (un-normalised) pixel embeddings.
        prototypes: `[K, M, D]` prototypes (normalised here; the stored bank is not modified).
        mode: "abs_cosine" (|cos|, released default) or "cosine".

    Returns:
        `[N, K, M]` fp32 similarities; gradients flow into `embeddings` (and into `prototypes` if they require it).
    """
    check_similarity_mode(mode)
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must have shape [N, D]; got {tuple(embeddings.shape)}")
    _check_prototypes(prototypes, embeddings.shape[1], "embeddings")
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        e = normalize_embeddings(embeddings)
        p = normalize_embeddings(prototypes)
        sim = torch.einsum("nd,kmd->nkm", e, p)
    return _rescale(sim, mode)


def prototype_logits(embeddings: Tensor, prototypes: Tensor, mode: str = "abs_cosine") -> Tensor:
    """`[N, K * M]` similarities flattened so that column `k * M + m` is prototype (k, m) (spec App. B)."""
    sim = prototype_similarity(embeddings, prototypes, mode)
    return sim.reshape(sim.shape[0], -1)


def prototype_heatmaps(embeddings: Tensor, prototypes: Tensor, mode: str = "abs_cosine") -> Tensor:
    """Prototype heatmaps (paper Eq. 1): max over the M prototypes of each row, clamped to [1e-4, 1 - 1e-4].

    Args:
        embeddings: `[B, D, H, W]` raw embedding map.
        prototypes: `[K, M, D]` prototypes (keypoint bank or cluster bank).
        mode: "abs_cosine" or "cosine".

    Returns:
        `[B, K, H, W]` fp32 heatmaps; gradients flow into `embeddings`.
    """
    check_similarity_mode(mode)
    if embeddings.dim() != 4:
        raise ValueError(f"embeddings must have shape [B, D, H, W]; got {tuple(embeddings.shape)}")
    _check_prototypes(prototypes, embeddings.shape[1], "embeddings")
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        e = normalize_embeddings(embeddings, dim=1)
        p = normalize_embeddings(prototypes)
        num_rows, num_protos, _ = p.shape
        # one matmul over all K*M prototypes, then the max over M: [B, K*M, H, W] -> [B, K, H, W]
        sim = torch.einsum("bdhw,jd->bjhw", e, p.reshape(num_rows * num_protos, -1))
        sim = _rescale(sim, mode)
        heat = sim.unflatten(1, (num_rows, num_protos)).amax(dim=2)
        return heat.clamp(*HEATMAP_CLAMP)
