"""Pure tensor maths of the PoseBH method (layer 1): similarity, Sinkhorn-Knopp, soft spherical K-means."""

from __future__ import annotations

from .kmeans import (
    ClusterBank,
    SoftKMeansResult,
    closest_keypoints,
    cluster_prototypes,
    soft_spherical_kmeans,
)
from .similarity import (
    HEATMAP_CLAMP,
    SIMILARITY_MODES,
    SimilarityMode,
    check_similarity_mode,
    normalize_embeddings,
    prototype_heatmaps,
    prototype_logits,
    prototype_similarity,
)
from .sinkhorn import AllReduce, gumbel_hard_assign, sinkhorn_knopp

__all__ = [
    "HEATMAP_CLAMP",
    "SIMILARITY_MODES",
    "AllReduce",
    "ClusterBank",
    "SimilarityMode",
    "SoftKMeansResult",
    "check_similarity_mode",
    "closest_keypoints",
    "cluster_prototypes",
    "gumbel_hard_assign",
    "normalize_embeddings",
    "prototype_heatmaps",
    "prototype_logits",
    "prototype_similarity",
    "sinkhorn_knopp",
    "soft_spherical_kmeans",
]
