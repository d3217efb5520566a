"""posebh_hf: PoseBH multi-skeleton pose estimation in the Hugging Face ecosystem.

Importing the package registers `posebh` with transformers' AutoConfig, AutoModel, AutoModelForPoseEstimation and
AutoImageProcessor.
"""

from __future__ import annotations

from transformers import AutoImageProcessor  # noqa: E402

from .configuration_posebh import PoseBHConfig  # noqa: E402
from .model_evaluation import evaluate_model  # noqa: E402
from .modeling import PoseBHForPoseEstimation, PoseBHOutput, register_auto_classes  # noqa: E402
from .pipeline import PoseBHPipeline, results_to_json  # noqa: E402
from .pipeline_task import KeypointDetectionPipeline, register_pipeline_task  # noqa: E402
from .pose_results import KeypointSet, PoseInstance, PoseResult  # noqa: E402
from .processing_posebh import PoseBHImageProcessor  # noqa: E402
from .skeletons import Skeleton, SkeletonError, get_skeleton, list_skeletons  # noqa: E402
from .version import __version__  # noqa: E402

AutoImageProcessor.register(PoseBHConfig, slow_image_processor_class=PoseBHImageProcessor, exist_ok=True)
register_pipeline_task()  # transformers.pipeline("keypoint-detection", model=...)

__all__ = [
    "KeypointDetectionPipeline",
    "KeypointSet",
    "PoseBHConfig",
    "PoseBHForPoseEstimation",
    "PoseBHImageProcessor",
    "PoseBHOutput",
    "PoseBHPipeline",
    "PoseInstance",
    "PoseResult",
    "Skeleton",
    "SkeletonError",
    "__version__",
    "evaluate_model",
    "get_skeleton",
    "list_skeletons",
    "register_auto_classes",
    "register_pipeline_task",
    "results_to_json",
]
