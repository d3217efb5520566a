"""The `keypoint-detection` task for `transformers.pipeline` (layer 4; registered by `import posebh_hf`).

    import posebh_hf
    from transformers import pipeline

    pose = pipeline("keypoint-detection", model="path/or/org-name")
    result = pose("photo.jpg")                                   # a PoseResult
    results = pose(["a.jpg", pil_image, array], boxes=[[[10, 20, 100, 200]], None, None], skeletons=["coco"])

It is a thin transformers `Pipeline` around `PoseBHPipeline.predict` (one implementation): inputs are a path, a PIL
image, an RGB array, bytes, or a list of them; `boxes` (per image, [x, y, w, h] lists, or None for the whole image),
`skeletons`, `flip` and `box_scores` are passed through. A list goes through the model in real batches.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoModelForPoseEstimation, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .pipeline import PoseBHPipeline
from .processing_posebh import PoseBHImageProcessor

__all__ = ["TASK", "KeypointDetectionPipeline", "register_pipeline_task"]

TASK = "keypoint-detection"


class KeypointDetectionPipeline(Pipeline):
    """`pipeline("keypoint-detection", model=...)`: one `PoseResult` per image (a list for a list of images)."""

    _load_processor = False
    # loaded here, not by transformers: a model folder without preprocessor_config.json (a converted checkpoint)
    # gets the crop size of its backbone instead of a load error
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args: Any, batch_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        processor = self.image_processor
        if processor is None:
            try:
                processor = PoseBHImageProcessor.from_pretrained(self.model.config.name_or_path)
            except (OSError, ValueError):
                processor = None
        self.pose = PoseBHPipeline(self.model, processor, device=self.device, batch_size=int(batch_size or 32))

    def _sanitize_parameters(self, boxes: Any = None, skeletons: Any = None, flip: bool | None = None,
                             box_scores: Any = None, image_names: Any = None, **_: Any
                             ) -> tuple[dict, dict, dict]:
        forward = {k: v for k, v in {"boxes": boxes, "skeletons": skeletons, "flip": flip, "box_scores": box_scores,
                                     "image_names": image_names}.items() if v is not None}
        return {}, forward, {}

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        """One image -> a `PoseResult`; a list -> a list of them (crops of all images batched together)."""
        single = not isinstance(inputs, (list, tuple))
        _, forward, _ = self._sanitize_parameters(**kwargs)
        if single:  # per-image arguments of one image become one-item lists
            for key in ("boxes", "box_scores", "image_names"):
                if key in forward:
                    forward[key] = [forward[key]]
        results = self.pose.predict([inputs] if single else list(inputs), **forward)
        return results[0] if single else results

    # transformers' single-input protocol, for callers that drive the three steps themselves
    def preprocess(self, inputs: Any, **_: Any) -> dict[str, Any]:
        return {"inputs": inputs}

    def _forward(self, model_inputs: dict[str, Any], **forward: Any) -> dict[str, Any]:
        return {"result": self.pose.predict([model_inputs["inputs"]], **forward)[0]}

    def postprocess(self, model_outputs: dict[str, Any], **_: Any) -> Any:
        return model_outputs["result"]


def register_pipeline_task() -> None:
    """Make `transformers.pipeline("keypoint-detection", ...)` build a `KeypointDetectionPipeline` (idempotent)."""
    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is KeypointDetectionPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=KeypointDetectionPipeline,
                                        pt_model=AutoModelForPoseEstimation, type="image")


register_pipeline_task()  # importing this module is what `import posebh_hf` relies on
