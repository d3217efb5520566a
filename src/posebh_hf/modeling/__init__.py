"""PoseBH model (layer 2): backbone wrapper, heads, embedding head, prototypes, outputs.

Importing this package registers the model with the transformers Auto classes (`register_auto_classes`, which
is idempotent and may be called again).
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForPoseEstimation

from ..configuration_posebh import PoseBHConfig
from .backbone import backbone_feature_map, build_backbone, token_grid
from .embedding import EmbeddingHead, ResidualNeck
from .heads import DeconvUpsampler, HeatmapHead, SimpleHeatmapHead
from .model_folder import ModelFolderError, check_model_folder, load_model_folder, save_model_folder
from .modeling_posebh import DatasetIndex, PoseBHForPoseEstimation, PoseBHPreTrainedModel
from .outputs import PoseBHOutput
from .prototypes import HEATMAP_CLAMP, KeypointPrototypes, init_unit_prototypes_, prototype_heatmaps

__all__ = [
    "HEATMAP_CLAMP",
    "DatasetIndex",
    "DeconvUpsampler",
    "EmbeddingHead",
    "HeatmapHead",
    "KeypointPrototypes",
    "ModelFolderError",
    "PoseBHConfig",
    "PoseBHForPoseEstimation",
    "PoseBHOutput",
    "PoseBHPreTrainedModel",
    "ResidualNeck",
    "SimpleHeatmapHead",
    "backbone_feature_map",
    "build_backbone",
    "check_model_folder",
    "init_unit_prototypes_",
    "load_model_folder",
    "prototype_heatmaps",
    "register_auto_classes",
    "save_model_folder",
    "token_grid",
]


def register_auto_classes() -> None:
    """Register `posebh` with AutoConfig, AutoModel and AutoModelForPoseEstimation (safe to call repeatedly)."""
    AutoConfig.register(PoseBHConfig.model_type, PoseBHConfig, exist_ok=True)
    AutoModel.register(PoseBHConfig, PoseBHForPoseEstimation, exist_ok=True)
    AutoModelForPoseEstimation.register(PoseBHConfig, PoseBHForPoseEstimation, exist_ok=True)


register_auto_classes()
