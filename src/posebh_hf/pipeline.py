"""`PoseBHPipeline` (layer 4): image (+ boxes, or the whole image) -> keypoints for the chosen skeletons.

The flip test lives here: the crop is mirrored, run through the model, the heatmaps are flipped back with the
skeleton's flip pairs by the codec, and averaged with the unflipped ones (with the 1-px shift for skeletons decoded
the "default" way, spec 6.2). ``flip=True`` means "where the skeleton allows it" (`Skeleton.allows_flip`): a skeleton
without flip pairs (a mirror rig such as mirror_mouse) or with ``"flip_test": false`` is never flipped. Skeletons
routed through different experts need separate forward passes; skeletons sharing an expert and a crop mode share one.

Reported keypoint scores are clipped to [0, 1]; heatmaps (and `PoseBHOutput.heatmaps`) keep their raw values.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .images import MAX_IMAGE_PIXELS, ImageReadError
from .images import load_image as read_image
from .pose_results import KeypointSet, PoseInstance, PoseResult
from .processing_posebh import PoseBHImageProcessor, to_rgb_array, validate_boxes
from .skeletons import Skeleton

__all__ = ["MAX_IMAGE_PIXELS", "ImageReadError", "PoseBHPipeline", "PoseResult", "load_image", "results_to_json"]


def load_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 [H, W, 3] with EXIF orientation applied and 16-bit data scaled
    (:func:`posebh_hf.images.load_image`); unreadable, non-image and oversized files get a clear error."""
    return read_image(path, max_pixels=max_pixels)


class PoseBHPipeline:
    """Top-down inference for every skeleton a PoseBH model serves (heatmap heads and attached prototype packs)."""

    def __init__(self, model: Any, image_processor: PoseBHImageProcessor | None = None,
                 device: str | torch.device | None = None, batch_size: int = 32,
                 expert_dispatch: str = "grouped") -> None:
        """`expert_dispatch`: "grouped" (default) runs only each crop's expert in the backbone's MoE MLPs, with
        the same weights and outputs as transformers' "masked" computation of every expert (docs/benchmarks.md).
        Like `.eval()` and the device move, the switch is made on `model` in place; state-dict keys do not change."""
        from .modeling.fast_backbone import set_expert_dispatch  # noqa: PLC0415 - heavy import only with a model

        self.model = model.eval()
        set_expert_dispatch(self.model, expert_dispatch)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        config = model.config
        decoding = dict(config.decoding or {})
        # Without a saved processor, crop at the backbone's input size (models need not be 256x192).
        height, width = config.backbone_config.image_size
        if image_processor is None:
            image_processor = PoseBHImageProcessor(size={"height": int(height), "width": int(width)})
        elif decoding:
            image_processor = copy.deepcopy(image_processor)
        # The model's decoding table (`PoseBHConfig.decoding`: written by conversion and training) decides how
        # each skeleton is cropped, decoded and flipped back; a saved processor's own table only fills the gaps
        # (folders written before the config carried it).
        image_processor.decoding = {**image_processor.decoding, **decoding}
        self.image_processor = image_processor
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path, revision: str | None = None, *, check_folder: bool = True,
                        **kwargs: Any) -> PoseBHPipeline:
        """Model (+ its image processor when saved) from a folder or Hub repo. `check_folder=False` skips the folder
        check for callers that already ran `check_model_folder` on it (it builds the model on the meta device)."""
        from .modeling import PoseBHForPoseEstimation, check_model_folder  # noqa: PLC0415 - heavy import

        if check_folder and Path(path_or_repo).expanduser().is_dir():  # a broken folder: one line naming the file
            check_model_folder(path_or_repo)
        model = PoseBHForPoseEstimation.from_pretrained(str(path_or_repo), revision=revision)
        try:
            processor = PoseBHImageProcessor.from_pretrained(str(path_or_repo), revision=revision)
        except (OSError, ValueError):
            processor = None
        return cls(model, processor, **kwargs)

    # ------------------------------------------------------------------------------------------------ skeletons
    @property
    def skeleton_names(self) -> list[str]:
        """Every skeleton the model serves: its heatmap heads, then attached prototype-only skeletons."""
        config = self.model.config
        extra = list(getattr(config, "extra_prototype_skeletons", None) or [])
        return list(config.dataset_names) + [n for n in extra if n not in config.dataset_names]

    def skeleton(self, name: str) -> Skeleton:
        return self.model.config.get_skeleton(name)

    def routing_index(self, name: str) -> int:
        """The expert (dataset_index) a skeleton is routed through."""
        return int(self.model.config.dataset_index_of(name))

    # ------------------------------------------------------------------------------------------------ inference
    @torch.inference_mode()
    def _heatmaps(self, pixel_values: torch.Tensor, names: list[str], dataset_index: int,
                  flip: bool) -> dict[str, torch.Tensor]:
        """Heatmaps for the given skeletons: {name: [N, K, h, w]} (fp32, CPU), averaged with the flipped-back heatmaps
        of the mirrored crops for the skeletons whose flip test applies (`flip` and `Skeleton.allows_flip`)."""
        flip_names = [n for n in names if flip and self.skeleton(n).allows_flip]
        out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        for start in range(0, pixel_values.shape[0], self.batch_size):
            batch = pixel_values[start:start + self.batch_size].to(self.device)
            index = torch.full((batch.shape[0],), dataset_index, dtype=torch.long, device=self.device)
            plain = self.model(batch, dataset_index=index, heads=names).heatmaps
            flipped = (self.model(batch.flip(-1), dataset_index=index, heads=flip_names).heatmaps
                       if flip_names else {})
            for name in names:
                heat = plain[name].float()
                if name in flipped:
                    codec = self.image_processor.codec_for(name, (heat.shape[-1], heat.shape[-2]))
                    back = codec.flip_back_torch(flipped[name].float(), self.skeleton(name).flip_indices)
                    heat = (heat + back) * 0.5
                out[name].append(heat.cpu())
        return {n: torch.cat(v) for n, v in out.items()}

    def flip_applies(self, name: str, flip: bool = True) -> bool:
        """Whether a call with `flip` runs the flip test for skeleton `name` (its `allows_flip` policy)."""
        return bool(flip) and self.skeleton(name).allows_flip

    def __call__(self, image: Image.Image | np.ndarray | str | Path | bytes,
                 boxes: Sequence[Sequence[float]] | None = None, skeletons: Sequence[str] | None = None,
                 flip: bool = True, clip_scores: bool = True) -> list[dict[str, dict[str, np.ndarray]]]:
        """Keypoints per box (the whole image when `boxes` is None) and skeleton.

        Args:
            image: an RGB array or PIL image (used as given: 16-bit data is scaled to 8 bits, no EXIF rotation), or a
                path / encoded bytes, read with :func:`posebh_hf.images.load_image` (EXIF orientation applied).
            boxes: [x, y, w, h] boxes in image pixels.
            skeletons: skeleton names (default: every heatmap head).
            flip: flip test where the skeleton allows it (`Skeleton.allows_flip`); False never flips.
            clip_scores: clip the keypoint scores to [0, 1]. A score is the heatmap's (refined) maximum, which can
                exceed 1 slightly; `evaluate_model` passes False to rescore with the raw values as mmpose does.

        Returns a list, one item per box, of `{skeleton_name: {"keypoints": [K, 2] image px, "scores": [K]}}`.
        (`predict` takes several images and returns `PoseResult` objects.)
        """
        array = self._as_array(image)
        box_array = self._boxes_for(array, boxes)
        names = self._skeletons(skeletons)
        return self._run([array], [box_array], names, flip, clip_scores)[0]

    def predict(self, images: Any, boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
                skeletons: Sequence[str] | None = None, flip: bool = True,
                box_scores: Sequence[Sequence[float] | None] | None = None,
                image_names: Sequence[str] | None = None) -> list[PoseResult]:
        """One `PoseResult` per image; every crop of every image goes through the model in batches of
        `batch_size`.

        Args:
            images: one image or a list: paths, PIL images, RGB arrays or encoded bytes.
            boxes: per image, its [x, y, w, h] boxes, or None for the whole image (default: whole images).
            skeletons: skeleton names (default: the model's `skeletons_to_draw`).
            flip: flip test where the skeleton allows it.
            box_scores: per image, the detector's score of each box (kept in the result), or None.
            image_names: how each image is named in the results (default: its path, else "image_<i>").
        """
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if boxes is not None and len(boxes) != len(items):
            raise ValueError(f"got {len(items)} images but boxes for {len(boxes)}; pass one list (or None) per image")
        arrays = [self._as_array(item) for item in items]
        box_arrays = [self._boxes_for(a, None if boxes is None else boxes[i]) for i, a in enumerate(arrays)]
        names = self._skeletons(skeletons or self.model.config.skeletons_to_draw)
        per_image = self._run(arrays, box_arrays, names, flip, clip_scores=True)
        results = []
        for i, (array, box_array, per_box) in enumerate(zip(arrays, box_arrays, per_image, strict=True)):
            scores = None if box_scores is None else box_scores[i]
            name = (image_names[i] if image_names is not None else
                    str(items[i]) if isinstance(items[i], (str, Path)) else f"image_{i}")
            instances = [PoseInstance(
                box=tuple(float(v) for v in box), box_score=None if scores is None else float(scores[j]),
                skeletons={n: KeypointSet(self.skeleton(n), pred[n]["keypoints"], pred[n]["scores"])
                           for n in names})
                for j, (box, pred) in enumerate(zip(box_array, per_box, strict=True))]
            results.append(PoseResult(name, int(array.shape[1]), int(array.shape[0]), instances, names, array))
        return results

    # ------------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _as_array(image: Any) -> np.ndarray:
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8):
            image = read_image(image)  # a path/bytes (EXIF applied), or a PIL image / non-uint8 array (16-bit scaled)
        return to_rgb_array(image)

    @staticmethod
    def _boxes_for(array: np.ndarray, boxes: Sequence[Sequence[float]] | None) -> np.ndarray:
        height, width = array.shape[:2]
        return (np.array([[0.0, 0.0, width, height]], np.float32) if boxes is None
                else validate_boxes(boxes, width, height))

    def _skeletons(self, skeletons: Sequence[str] | None) -> list[str]:
        names = list(skeletons) if skeletons else list(self.model.config.dataset_names)
        unknown = [n for n in names if n not in self.skeleton_names]
        if unknown:
            raise ValueError(f"unknown skeleton(s) {unknown}; this model serves {self.skeleton_names}")
        return names

    def _run(self, arrays: list[np.ndarray], box_arrays: list[np.ndarray], names: list[str], flip: bool,
             clip_scores: bool) -> list[list[dict[str, dict[str, np.ndarray]]]]:
        """Per image, per box, per skeleton: keypoints [K, 2] and scores [K]. The crops of all images are cut
        once per crop mode and run through each expert group in batches of `batch_size`; the heatmaps become
        keypoints in `PoseBHImageProcessor.post_process_pose_estimation` (the skeleton's codec, see `codec_for`)."""
        results: list[list[dict[str, dict[str, np.ndarray]]]] = [[{} for _ in b] for b in box_arrays]
        if sum(len(b) for b in box_arrays) == 0:
            return results
        groups: dict[tuple[str, int], list[str]] = {}
        for name in names:
            key = (self.image_processor.decoding_for(name), self.routing_index(name))
            groups.setdefault(key, []).append(name)
        crops_by_mode: dict[str, torch.Tensor] = {}
        for (mode, index), group in groups.items():
            if mode not in crops_by_mode:
                crops_by_mode[mode] = self.image_processor(arrays, box_arrays, udp=mode == "udp")["pixel_values"]
            heatmaps = self._heatmaps(crops_by_mode[mode], group, index, flip)
            for name in group:
                per_image = self.image_processor.post_process_pose_estimation(heatmaps, box_arrays, name)
                for i, instances in enumerate(per_image):
                    for j, instance in enumerate(instances):
                        scores = np.clip(instance["scores"], 0.0, 1.0) if clip_scores else instance["scores"]
                        results[i][j][name] = {"keypoints": instance["keypoints"], "scores": scores}
        return results


def results_to_json(results: Sequence[dict[str, dict[str, np.ndarray]]], boxes: Sequence[Sequence[float]] | None,
                    skeletons: Sequence[str], pipe: PoseBHPipeline, image_name: str, width: int,
                    height: int) -> dict[str, Any]:
    """The `posebh predict` schema for the per-box dicts of `PoseBHPipeline.__call__`: per image, per instance, per
    skeleton, named keypoints with x, y, score (`PoseResult.to_dict`, the one writer of the schema).

    Scores are clipped to [0, 1] here too (for results made with ``clip_scores=False``)."""
    box_list = [[0.0, 0.0, float(width), float(height)]] if boxes is None else [list(map(float, b)) for b in boxes]
    instances = [PoseInstance(box=tuple(box), box_score=None,
                              skeletons={n: KeypointSet(pipe.skeleton(n), pred[n]["keypoints"], pred[n]["scores"])
                                         for n in skeletons})
                 for box, pred in zip(box_list, results, strict=True)]
    return PoseResult(image_name, int(width), int(height), instances, list(skeletons)).to_dict()
