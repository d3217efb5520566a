"""posebh_hf: PoseBH multi-skeleton pose estimation in the Hugging Face ecosystem.

Importing the package registers `posebh` with transformers' AutoConfig, AutoModel, AutoModelForPoseEstimation and
AutoImageProcessor, and the `keypoint-detection` pipeline task.

The `posebh` command imports the package lazily (its entry point, `posebh_cli`, sets POSEBH_HF_LAZY=1, which this
module consumes): `posebh --help` and argument errors then answer without importing torch or transformers, and the
verbs import what they use (importing `posebh_hf.modeling`, `posebh_hf.processing_posebh` or
`posebh_hf.pipeline_task` registers its part with transformers by itself).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from .version import __version__ as __version__

# public name -> the module that defines it
_EXPORTS = {
    "KeypointDetectionPipeline": "posebh_hf.pipeline_task",
    "KeypointSet": "posebh_hf.pose_results",
    "PoseBHConfig": "posebh_hf.configuration_posebh",
    "PoseBHForPoseEstimation": "posebh_hf.modeling",
    "PoseBHImageProcessor": "posebh_hf.processing_posebh",
    "PoseBHOutput": "posebh_hf.modeling",
    "PoseBHPipeline": "posebh_hf.pipeline",
    "PoseInstance": "posebh_hf.pose_results",
    "PoseResult": "posebh_hf.pose_results",
    "Skeleton": "posebh_hf.skeletons",
    "SkeletonError": "posebh_hf.skeletons",
    "evaluate_model": "posebh_hf.model_evaluation",
    "get_skeleton": "posebh_hf.skeletons",
    "list_skeletons": "posebh_hf.skeletons",
    "register_auto_classes": "posebh_hf.modeling",
    "register_pipeline_task": "posebh_hf.pipeline_task",
    "results_to_json": "posebh_hf.pipeline",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if os.environ.pop("POSEBH_HF_LAZY", None) != "1":
    # `import posebh_hf` then `AutoModel.from_pretrained(...)` / `pipeline("keypoint-detection", ...)` must work
    for _module in ("posebh_hf.modeling", "posebh_hf.processing_posebh", "posebh_hf.pipeline_task"):
        importlib.import_module(_module)
    for _name in _EXPORTS:
        globals()[_name] = getattr(importlib.import_module(_EXPORTS[_name]), _name)
