"""Deployment exports (layer 4): a plain single-dataset network with its expert baked in, and its ONNX file."""

from __future__ import annotations

from .onnx import (
    DEFAULT_OPSET,
    EXPORTERS,
    ONNX_TOLERANCE,
    OnnxExportResult,
    export_module_onnx,
    export_onnx,
    onnx_max_abs_diff,
)
from .single_dataset import SingleDatasetPoseModel, merge_expert_state_dict, single_dataset_model

__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "ONNX_TOLERANCE",
    "OnnxExportResult",
    "SingleDatasetPoseModel",
    "export_module_onnx",
    "export_onnx",
    "merge_expert_state_dict",
    "onnx_max_abs_diff",
    "single_dataset_model",
]
