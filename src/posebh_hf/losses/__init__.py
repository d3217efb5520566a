"""PoseBH losses (layer 3): functions returning `(loss, logs)`; prototype updates return new tensors.

One training iteration (spec App. C; the training step owns the order, the buffers and the reduce hook):
1. `multi_head_loss` on every head's output; `prototype_heatmaps` (ops) of the bank -> `prototype_heatmap_loss`.
2. `prototype_loss` (sampling, clustering, PPC/PPD, sequential momentum updates) -> write the returned bank into
   the model's prototype buffer under no_grad (skip the write while the bank is frozen).
3. From the cluster stage: `cluster_loss` with the frozen cluster bank; `css_loss` on the other datasets' samples.
"""

from __future__ import annotations

from .cluster import cluster_keypoint_map, cluster_loss, cluster_targets
from .css import PseudoLabels, css_loss, css_pseudo_labels
from .heatmap import joints_mse, multi_head_loss, prototype_heatmap_loss
from .layout import keypoint_offsets
from .prototype_start import class_mean_sums, fit_prototypes, peak_pixels, warm_start_prototypes
from .prototypes import (
    ASSIGNMENTS,
    CORRECTNESS_SCOPES,
    DEFAULT_CLUSTERING,
    ClusteringSettings,
    PixelClustering,
    cluster_pixels,
    prototype_contrastive_loss,
    prototype_loss,
    update_prototypes,
)
from .sampling import SampledPixels, sample_foreground_pixels
from .weights import LossWeights

__all__ = [
    "ASSIGNMENTS",
    "CORRECTNESS_SCOPES",
    "DEFAULT_CLUSTERING",
    "ClusteringSettings",
    "LossWeights",
    "PixelClustering",
    "PseudoLabels",
    "SampledPixels",
    "class_mean_sums",
    "cluster_keypoint_map",
    "cluster_loss",
    "cluster_pixels",
    "cluster_targets",
    "css_loss",
    "css_pseudo_labels",
    "fit_prototypes",
    "joints_mse",
    "keypoint_offsets",
    "multi_head_loss",
    "peak_pixels",
    "prototype_contrastive_loss",
    "prototype_heatmap_loss",
    "prototype_loss",
    "sample_foreground_pixels",
    "update_prototypes",
    "warm_start_prototypes",
]
