"""Periodic validation during training: GT-box crops of every dataset's `val` split, scored in crop space.

Each validation instance is cropped from its ground-truth box exactly like a training sample without
augmentation (the data package's transform with flip, half-body, scale/rotation and centre jitter off), run
through its dataset's head, decoded with the codec the model carries for that head (`config.codec_for`: argmax +
DARK/UDP or +-0.25; the trainer writes it from the transform that made the targets) and compared with the
transformed ground truth in crop pixels, so no image-space projection is needed:
- ``pck``: PCK at `pck_threshold` x max(w, h) of the instance's visible-keypoint box (mmpose's
  `keypoint_pck_accuracy`, mean over keypoints);
- ``epe``: mean end-point error in crop pixels;
- ``ap``: COCO OKS AP (pycocotools, the skeleton's sigmas or 0.05, scale 0.53 w h of that box).
With ``eval.flip_test`` (the paper's test protocol, spec §6.2) each crop is also run mirrored and the head's heatmaps
are flipped back with its skeleton's flip pairs and averaged before decoding, as `PoseBHPipeline` does; a skeleton
whose flip test does not apply (`Skeleton.allows_flip`) is never flipped. Off by default: the in-run validation is
twice as cheap without it, and every number of the mdt_mini study that does not say "flip" was taken without it.
Processes split the instances and gather the results; the model is evaluated unwrapped, in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..codecs import HeatmapCodec, heatmap_stride
from ..data.collate import PoseCollator
from ..data.views import instance_dataset
from ..evaluation import evaluate_coco, keypoint_pck_accuracy
from .config import DatasetConfig, EvalConfig
from .train_data import SourceData, make_transform

__all__ = ["NO_AUGMENT", "ValidationSet", "build_validation_sets", "predict_crops", "score_predictions", "validate",
           "visible_keypoint_boxes"]

NO_AUGMENT: dict[str, Any] = {"flip_prob": 0.0, "half_body": False, "scale_factor": 0.0, "rot_factor": 0.0,
                              "rot_prob": 0.0, "center_jitter_prob": 0.0}


@dataclass
class ValidationSet:
    """One dataset's validation instances (transformed on access) and the crop geometry they were cut with
    (`crop_codec`: input and heatmap sizes, UDP or not; decoding asks the model, see `predict_crops`)."""

    name: str
    dataset_index: int
    view: Any
    crop_codec: HeatmapCodec
    skeleton: Any

    @property
    def stride(self) -> np.ndarray:
        """[2] crop pixels per heatmap pixel."""
        codec = self.crop_codec
        return np.asarray(heatmap_stride(codec.input_size, codec.heatmap_size, codec.use_udp), np.float64)


def build_validation_sets(specs: Sequence[DatasetConfig], sources: Sequence[SourceData | None],
                          augment: dict[str, Any], config: EvalConfig) -> list[ValidationSet]:
    """A `ValidationSet` per dataset that has a `val` source (`sources[d]` None = no val split)."""
    out = []
    for d, (spec, source) in enumerate(zip(specs, sources, strict=True)):
        if source is None:
            continue
        transform = make_transform(spec, source.skeleton, d, {**augment, **NO_AUGMENT}, seed=0)
        view = instance_dataset(source.dataset, transform)
        if config.max_samples is not None and len(view) > config.max_samples:
            view = Subset(view, range(config.max_samples))
        out.append(ValidationSet(spec.name, d, view, transform.spec.augment.codec(), source.skeleton))
    return out


def visible_keypoint_boxes(gt: np.ndarray) -> np.ndarray:
    """[N, 4] xywh box of each instance's visible keypoints in gt [N, K, 3] (sides at least 1; [0, 0, 1, 1] for an
    instance with none visible). PCK@t counts a keypoint within t x the larger side of this box."""
    boxes = np.tile(np.array([0.0, 0.0, 1.0, 1.0]), (len(gt), 1))
    for i, (xy, m) in enumerate(zip(gt[..., :2], gt[..., 2] > 0, strict=True)):
        if m.any():
            lo, hi = xy[m].min(axis=0), xy[m].max(axis=0)
            boxes[i] = [lo[0], lo[1], max(hi[0] - lo[0], 1.0), max(hi[1] - lo[1], 1.0)]
    return boxes


def score_predictions(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, skeleton: Any,
                      pck_threshold: float) -> dict[str, float]:
    """Crop-space metrics of N instances: pred [N, K, 2], scores [N, K], gt [N, K, 3] (x, y, visibility)."""
    mask = gt[..., 2] > 0
    keep = mask.any(axis=1)
    pred, scores, gt, mask = pred[keep], scores[keep], gt[keep], mask[keep]
    if not len(gt):
        return {}
    boxes = visible_keypoint_boxes(gt)
    size = boxes[:, 2:].max(axis=1, keepdims=True).repeat(2, axis=1)
    _, pck, _ = keypoint_pck_accuracy(pred.astype(np.float32), gt[..., :2].astype(np.float32), mask,
                                      pck_threshold, size.astype(np.float32))
    epe = float(np.linalg.norm(pred - gt[..., :2], axis=-1)[mask].mean())
    images = [{"id": i + 1} for i in range(len(gt))]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "bbox": boxes[i].tolist(),
             "keypoints": np.concatenate([gt[i, :, :2], mask[i, :, None] * 2.0], axis=1).reshape(-1).tolist(),
             "num_keypoints": int(mask[i].sum())} for i in range(len(gt))]
    dets = [{"image_id": i + 1, "category_id": 1, "score": float(scores[i].mean()),
             "keypoints": np.concatenate([pred[i], scores[i, :, None]], axis=1).reshape(-1).tolist()}
            for i in range(len(gt))]
    ap = evaluate_coco({"images": images, "annotations": anns, "categories": [{"id": 1, "name": skeleton.name}]},
                       dets, skeleton, use_area=False)
    return {"pck": float(pck), "epe": epe, "ap": float(ap["AP"]), "instances": float(len(gt))}


def head_codec(model: nn.Module, head: str, vset: ValidationSet) -> HeatmapCodec:
    """How `head`'s heatmaps of `vset`'s crops decode: the model's own mode for the head (`config.codec_for`) at
    the crops' geometry. A head whose mode differs from the mode the crops were cut with is refused."""
    crop = vset.crop_codec
    codec = model.config.codec_for(head, crop.input_size, crop.heatmap_size)
    if codec.use_udp != crop.use_udp:
        raise ValueError(f"head {head!r} decodes with {codec.decoding!r} but the {vset.name!r} crops were cut with "
                         f"{crop.decoding!r}; set data.augment.use_udp to match the model's config.decoding")
    return codec


def _head_heatmaps(model: nn.Module, pixels: torch.Tensor, head: str, codec: HeatmapCodec,
                   flip_indices: Sequence[int] | None) -> torch.Tensor:
    """Head `head` on crops [B, 3, H_in, W_in] -> fp32 heatmaps [B, K_head, H, W]; with `flip_indices`, averaged
    with the flipped-back heatmaps of the mirrored crops (the codec owns the flip-back geometry)."""
    heat = model(pixels, dataset_index=head, heads=[head]).heatmaps[head].float()
    if flip_indices is None:
        return heat
    mirrored = model(pixels.flip(-1), dataset_index=head, heads=[head]).heatmaps[head].float()
    return (heat + codec.flip_back_torch(mirrored, flip_indices)) * 0.5


@torch.no_grad()
def predict_crops(model: nn.Module, vset: ValidationSet, head: str | None = None, batch_size: int = 32,
                  indices: Sequence[int] | None = None, device: torch.device | None = None, flip: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head `head` (default: the set's own; through its own expert) on the set's crops: predictions [N, K_head, 2]
    in crop pixels, scores [N, K_head] and the view's ground truth [N, K_view, 3]. `flip`: the flip test, where the
    head's skeleton allows it."""
    head = head or vset.name
    codec = head_codec(model, head, vset)
    head_skeleton = model.config.get_skeleton(head)
    flip_indices = head_skeleton.flip_indices if flip and head_skeleton.allows_flip else None
    device = device or next(model.parameters()).device
    k_view, k_head = vset.skeleton.num_keypoints, len(model.config.skeletons[head]["keypoints"])
    preds, scores, gts = [np.zeros((0, k_head, 2))], [np.zeros((0, k_head))], [np.zeros((0, k_view, 3))]
    subset = Subset(vset.view, list(range(len(vset.view)) if indices is None else indices))
    # own generator: evaluation must not consume the global RNG that training (and its checkpoints) use
    loader = DataLoader(subset, batch_size=batch_size, collate_fn=PoseCollator(k_view),
                        generator=torch.Generator().manual_seed(0))
    for batch in loader:
        heat = _head_heatmaps(model, batch["pixel_values"].to(device), head, codec, flip_indices)
        coords, conf = codec.decode(heat.cpu().numpy())
        preds.append(coords * vset.stride[None, None, :])
        scores.append(conf)
        gts.append(batch["keypoints"].numpy()[:, :k_view])
    return np.concatenate(preds), np.concatenate(scores), np.concatenate(gts)


def _shard(total: int, rank: int, world_size: int) -> list[int]:
    """Instances rank, rank + world_size, ..., padded (with a repeat) so that every process runs the same number
    of forward passes: sharded models (FSDP) need every process in every forward."""
    indices = list(range(rank, total, world_size))
    per_rank = -(-total // world_size)
    while total and len(indices) < per_rank:
        indices.append(indices[0] if indices else 0)
    return indices


def _merge(parts: Sequence[Any], total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gathered (indices, pred, score, gt) per process -> arrays in instance order, padding repeats dropped."""
    seen: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for indices, pred, score, gt in parts:
        for i, index in enumerate(indices):
            seen.setdefault(int(index), (pred[i], score[i], gt[i]))
    order = [seen[i] for i in range(total) if i in seen]
    return (np.stack([o[0] for o in order]), np.stack([o[1] for o in order]), np.stack([o[2] for o in order]))


def validate(model: nn.Module, sets: Sequence[ValidationSet], config: EvalConfig, *, rank: int = 0,
             world_size: int = 1, gather: Any = None, device: torch.device | None = None) -> dict[str, float]:
    """Metrics per dataset (``val/<name>/pck`` ...) and their means over datasets (``val/pck`` ...).

    Args:
        model: the unwrapped model (switched to eval mode here and back to its previous mode).
        sets: from `build_validation_sets`.
        config: the eval section.
        rank, world_size: this process's share is instances rank, rank + world_size, ...
        gather: `accelerate.utils.gather_object`-like callable for several processes.
        device: where to run (default: the model's device).
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    results: dict[str, float] = {}
    try:
        for vset in sets:
            indices = _shard(len(vset.view), rank, world_size)
            pred, score, gt = predict_crops(model, vset, batch_size=config.batch_size, indices=indices, device=device,
                                            flip=config.flip_test)
            if world_size > 1 and gather is not None:
                parts = gather([(indices, pred, score, gt)])
                pred, score, gt = _merge(parts, len(vset.view))
            metrics = score_predictions(pred, score, gt, vset.skeleton, config.pck_threshold)
            results.update({f"val/{vset.name}/{key}": value for key, value in metrics.items()})
    finally:
        model.train(was_training)
    for key in ("pck", "epe", "ap"):
        values = [v for k, v in results.items() if k.endswith(f"/{key}")]
        if values:
            results[f"val/{key}"] = float(np.mean(values))
    return results
