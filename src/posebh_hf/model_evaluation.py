"""``evaluate_model`` (layer 4): run a model over a dataset split and score it with a protocol.

The dataset is the package's HF schema (one row per image: ``image``, ``image_id``, ``width``, ``height``,
``file_name``, ``skeleton``, ``objects`` with ``id``, ``bbox`` xywh, ``keypoints`` [K, 3] 0-based, ``num_keypoints``,
``area``, ``iscrowd``; ``crowd_index`` / ``head_box`` extras where a protocol needs them) or any iterable of such
dicts. Inference goes through :class:`~posebh_hf.pipeline.PoseBHPipeline` (imported lazily), one call per image
with all its boxes (the pipeline batches the crops).

Post-processing follows mmpose's top-down evaluation (spec 6.3):

- ``boxes="gt"``: the instances with labelled keypoints, their boxes cleaned as mmpose does (clipped to the image);
  box score 1.
- ``boxes=DETECTIONS_FILE`` (COCO detection results ``[{image_id, bbox, score, category_id}]``): the boxes of
  category ``det_category_id`` with ``score >= det_score_thr`` (mmpose: person, 0.0).
- Images are decoded in their stored orientation (``data.image_io.decode_image``, as the training transform does:
  the annotations refer to the stored pixels), not with ``datasets``' decoder, which applies EXIF orientation.
- Flip test: ``flip=True`` runs it only where the skeleton allows it (``Skeleton.allows_flip``: a skeleton without
  flip pairs, such as the mirror_mouse rig, or with ``"flip_test": false`` is not flipped).
- Keypoint scores are the raw heatmap maxima (not clipped to [0, 1]), as mmpose rescores with them.
- OKS protocols: instance score = box score x mean of the keypoint scores above ``vis_thr`` (0.2), then hard
  OKS-NMS per image at ``nms_thr`` (0.9) with the skeleton's sigmas and the padded crop area ``prod(scale * 200)``;
  the results go to the protocol function. PCKh/PCK protocols use GT boxes and score each GT instance directly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic_files import write_json_atomically
from .evaluation.errors import EvaluationInputError
from .evaluation.inputs import load_json
from .evaluation.oks import oks_nms, rescore_instances
from .evaluation.pckh import MpiiGroundTruth, pckh_metrics
from .evaluation.protocols import PROTOCOLS, evaluate
from .geometry import box_to_center_scale, sanitize_box_xywh
from .skeletons import Skeleton, get_skeleton

__all__ = ["dataset_to_coco", "evaluate_model", "predict_instances"]


def _as_pipeline(model: Any, batch_size: int) -> Any:
    """A ``PoseBHPipeline`` for a model; pipelines (anything that is not a torch module) are used as given."""
    import torch  # noqa: PLC0415 - layer-4 dependencies load only when a model is evaluated

    if isinstance(model, torch.nn.Module):
        from .pipeline import PoseBHPipeline  # noqa: PLC0415

        return PoseBHPipeline(model, batch_size=batch_size)
    return model


def _stored_images(dataset: Any) -> Any:
    """A ``datasets.Dataset`` whose image column decodes with PIL (EXIF applied) -> raw bytes/paths instead."""
    features = getattr(dataset, "features", None)
    if not isinstance(features, Mapping) or "image" not in features:
        return dataset
    import datasets  # noqa: PLC0415 - only for datasets' own objects

    image = features["image"]
    if isinstance(image, datasets.Image) and image.decode and hasattr(dataset, "cast_column"):
        return dataset.cast_column("image", datasets.Image(decode=False))
    return dataset


def _pixels(image: Any) -> Any:
    """Raw image values (``{"bytes", "path"}``, bytes, a path) -> RGB uint8 in stored orientation; others as given."""
    if isinstance(image, (Mapping, bytes, bytearray, memoryview, str, Path)):
        from .data.image_io import decode_image  # noqa: PLC0415 - OpenCV only when raw images are evaluated

        return decode_image(image)
    return image


def _objects(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    objs = []
    for obj in row.get("objects") or []:
        o = dict(obj)
        o["keypoints"] = np.asarray(o["keypoints"], dtype=np.float64).reshape(-1, 3)
        objs.append(o)
    return objs


def dataset_to_coco(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The dataset's ground truth as a COCO keypoint dict (``crowd_index`` -> ``crowdIndex`` for CrowdPose)."""
    images, anns, cats = [], [], set()
    for row in rows:
        img = {"id": row["image_id"], "width": row.get("width"), "height": row.get("height"),
               "file_name": row.get("file_name")}
        if row.get("crowd_index") is not None:
            img["crowdIndex"] = float(row["crowd_index"])
        images.append(img)
        for obj in _objects(row):
            area = obj.get("area")
            cats.add(int(obj.get("category_id", 1)))
            anns.append({"id": obj["id"], "image_id": row["image_id"], "category_id": obj.get("category_id", 1),
                         "bbox": [float(v) for v in obj["bbox"]], "keypoints": obj["keypoints"].reshape(-1).tolist(),
                         "num_keypoints": int(np.count_nonzero(obj["keypoints"][:, 2] > 0)),
                         # a stored area of 0 means "unknown" (e.g. AIC): fall back to 0.53 w h like xtcocotools
                         "area": float(area) if area is not None and area > 0 else None,
                         "iscrowd": int(obj.get("iscrowd") or 0)})
    return {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": str(c)} for c in sorted(cats or {1})]}


def _gt_boxes(row: Mapping[str, Any], clean: bool) -> tuple[list[list[float]], list[float], list[Any], list[int]]:
    """mmpose's GT instances: non-crowd with labelled keypoints; score 1. With ``clean`` (COCO-style datasets) the
    box is clipped to the image as mmpose's loader does and dropped when empty; MPII/InterHand boxes are used as
    stored (mmpose crops them from centre/scale without clipping). Returns boxes, scores, ids, category ids."""
    boxes, scores, ids, cats = [], [], [], []
    for obj in _objects(row):
        if obj.get("iscrowd") or not np.any(obj["keypoints"][:, 2] > 0):
            continue
        box = obj["bbox"]
        if clean:
            box = sanitize_box_xywh(box, int(row["width"]), int(row["height"]))
        if box is None:
            continue
        boxes.append([float(v) for v in box])
        scores.append(1.0)
        ids.append(obj["id"])
        cats.append(int(obj.get("category_id", 1)))  # AP-10K: each instance keeps its species category
    return boxes, scores, ids, cats


def _croppable(box: Sequence[float], row: Mapping[str, Any]) -> bool:
    x, y, w, h = box
    return w > 0 and h > 0 and x < row["width"] and y < row["height"] and x + w > 0 and y + h > 0


def _detections(path: str | Path, category_id: int, score_thr: float) -> dict[Any, list[tuple[list[float], float]]]:
    data = load_json(path, "detection")
    if not isinstance(data, list):
        raise EvaluationInputError(f"{path}: detections must be a JSON list of {{image_id, bbox, score}}")
    out: dict[Any, list[tuple[list[float], float]]] = {}
    for i, det in enumerate(data):
        try:
            if det.get("category_id", category_id) != category_id or float(det["score"]) < score_thr:
                continue
            box = [float(v) for v in det["bbox"]]
            out.setdefault(det["image_id"], []).append((box, float(det["score"])))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise EvaluationInputError(f"{path}: detection[{i}] needs image_id, bbox [x, y, w, h] and score") from None
        if len(box) != 4 or not all(np.isfinite(box)):
            raise EvaluationInputError(f"{path}: detection[{i}] has an invalid bbox {det['bbox']!r}")
    return out


def predict_instances(
    pipe: Any, rows: Iterable[Mapping[str, Any]], skeleton: Skeleton, boxes: str | Path = "gt", flip: bool = True,
    det_category_id: int = 1, det_score_thr: float = 0.0, progress: bool = True, total: int | None = None,
    clean_boxes: bool = True,
) -> list[dict[str, Any]]:
    """Run the pipeline on every image: one record per box with ``image_id``, ``annotation_id`` (GT mode),
    ``category_id``, ``keypoints`` [K, 3] ``(x, y, score)``, ``box_score`` and ``area`` (padded crop area, for
    OKS-NMS). ``flip`` applies where ``skeleton.allows_flip``; scores are raw (unclipped) for a ``PoseBHPipeline``."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    flip = bool(flip) and skeleton.allows_flip
    options: dict[str, Any] = {}
    if "torch" in sys.modules:  # a PoseBHPipeline exists only once torch is imported
        from .pipeline import PoseBHPipeline  # noqa: PLC0415

        options = {"clip_scores": False} if isinstance(pipe, PoseBHPipeline) else {}

    dets = None if str(boxes) == "gt" else _detections(boxes, det_category_id, det_score_thr)
    processor = getattr(pipe, "image_processor", None)
    out = []
    for row in tqdm(rows, total=total, desc=f"evaluating {skeleton.name}", disable=not progress, unit="img"):
        if dets is None:
            box_list, scores, ids, cats = _gt_boxes(row, clean_boxes)
        else:  # boxes that cannot be cropped (empty, or outside the image) are skipped
            pairs = [p for p in dets.get(row["image_id"], []) if _croppable(p[0], row)]
            box_list, scores = [b for b, _ in pairs], [s for _, s in pairs]
            ids, cats = [None] * len(pairs), [det_category_id] * len(pairs)
        if not box_list:
            continue
        results = pipe(_pixels(row["image"]), boxes=box_list, skeletons=[skeleton.name], flip=flip, **options)
        if processor is not None and hasattr(processor, "boxes_to_center_scale"):
            _, scale = processor.boxes_to_center_scale(np.asarray(box_list))
        else:
            _, scale = box_to_center_scale(np.asarray(box_list))
        areas = np.prod(scale * 200.0, axis=1)
        for res, score, ann_id, cat, area in zip(results, scores, ids, cats, areas, strict=True):
            pred = res[skeleton.name]
            kpts = np.concatenate([np.asarray(pred["keypoints"], np.float64).reshape(-1, 2),
                                   np.asarray(pred["scores"], np.float64).reshape(-1, 1)], axis=1)
            out.append({"image_id": row["image_id"], "annotation_id": ann_id, "category_id": cat,
                        "keypoints": kpts, "box_score": score, "area": float(area)})
    return out


def _coco_results(instances: Sequence[dict[str, Any]], skeleton: Skeleton, vis_thr: float,
                  nms_thr: float | None) -> list[dict[str, Any]]:
    """Rescore and OKS-NMS per image -> COCO results records."""
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for inst in instances:
        by_image.setdefault(inst["image_id"], []).append(inst)
    sigmas = skeleton.oks_sigmas()
    results = []
    for image_id, insts in by_image.items():
        kpts = np.stack([i["keypoints"] for i in insts])
        scores = rescore_instances(kpts[:, :, 2], [i["box_score"] for i in insts], vis_thr)
        keep = (range(len(insts)) if nms_thr is None
                else oks_nms(kpts, scores, np.array([i["area"] for i in insts]), sigmas, nms_thr))
        for k in keep:
            results.append({"image_id": image_id, "category_id": insts[k]["category_id"],
                            "keypoints": kpts[k].reshape(-1).tolist(),
                            "score": float(scores[k]), "annotation_id": insts[k]["annotation_id"]})
    return results


def _mpii_ground_truth(rows: Sequence[Mapping[str, Any]]) -> tuple[MpiiGroundTruth, list[Any]]:
    """MPII GT from the dataset (0-based keypoints -> MATLAB 1-based; ``head_box`` x1, y1, x2, y2)."""
    joints, vis, heads, ids = [], [], [], []
    for row in rows:
        for obj in _objects(row):
            if obj.get("head_box") is None:
                raise EvaluationInputError(f"image {row['image_id']}: object {obj['id']} has no head_box; build the "
                                           "MPII dataset with head boxes for PCKh")
            joints.append(obj["keypoints"][:, :2] + 1.0)
            vis.append(obj["keypoints"][:, 2] > 0)
            heads.append(np.asarray(obj["head_box"], dtype=np.float64).reshape(2, 2))
            ids.append(obj["id"])
    return MpiiGroundTruth(np.stack(joints), np.stack(vis), np.stack(heads)), ids


def evaluate_model(
    model: Any, dataset: Iterable[Mapping[str, Any]], protocol: str, boxes: str | Path = "gt", flip: bool = True,
    *, skeleton: str | Skeleton | None = None, batch_size: int = 32, vis_thr: float = 0.2,
    nms_thr: float | None = 0.9, det_score_thr: float = 0.0, det_category_id: int = 1, progress: bool = True,
    save_predictions: str | Path | None = None, **options: Any,
) -> dict[str, Any]:
    """Predict every image of ``dataset`` with ``model`` and score the predictions with ``protocol``.

    Args:
        model: a ``PoseBHForPoseEstimation`` (wrapped in a ``PoseBHPipeline``) or a pipeline-like callable
            ``pipe(image, boxes=[[x, y, w, h], ...], skeletons=[name], flip=bool)``.
        dataset: HF dataset split (or list of rows) in the package schema.
        protocol: one of :data:`~posebh_hf.evaluation.PROTOCOLS`.
        boxes: ``"gt"`` or a COCO detections JSON (OKS protocols only).
        flip: flip test where the skeleton allows it (``Skeleton.allows_flip``); False never flips.
        skeleton: the skeleton to predict; default: the rows' ``skeleton`` field, else the protocol's.
        batch_size: crops per forward pass when a pipeline is built here.
        vis_thr, nms_thr: rescoring threshold and OKS-NMS threshold (``None`` disables NMS).
        det_score_thr, det_category_id: detection filtering.
        save_predictions: also write the predictions (COCO results) there, atomically.
        **options: protocol options (see :func:`~posebh_hf.evaluation.evaluate`).

    Returns:
        The protocol's metrics dict.
    """
    if protocol not in PROTOCOLS:
        raise EvaluationInputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    spec = PROTOCOLS[protocol]
    if spec.kind != "oks" and str(boxes) != "gt":
        raise EvaluationInputError(f"protocol {protocol!r} scores ground-truth instances: use boxes='gt'")
    rows = list(_stored_images(dataset))
    if not rows:
        raise EvaluationInputError("the dataset has no rows to evaluate")
    name = skeleton or rows[0].get("skeleton") or spec.skeleton
    if name is None:
        raise EvaluationInputError(f"protocol {protocol!r} needs a skeleton (skeleton=NAME_OR_JSON)")
    skel = get_skeleton(name)
    pipe = _as_pipeline(model, batch_size)
    instances = predict_instances(pipe, rows, skel, boxes, flip, det_category_id, det_score_thr, progress,
                                  total=len(rows), clean_boxes=spec.kind == "oks")
    if not instances:
        raise EvaluationInputError("no instance to predict (no labelled ground truth or no detection)")
    if spec.kind == "pckh":
        gt, ids = _mpii_ground_truth(rows)
        by_id = {inst["annotation_id"]: inst["keypoints"][:, :2] for inst in instances}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise EvaluationInputError(f"MPII persons {missing[:10]} have no labelled joint to predict from")
        pred = np.stack([by_id[i] for i in ids])
        if save_predictions is not None:
            write_json_atomically(save_predictions, pred.tolist())
        return pckh_metrics(pred + 1.0, gt.joints, gt.visible, gt.head_boxes)
    if spec.kind == "oks":
        results = _coco_results(instances, skel, vis_thr, nms_thr)
    else:
        results = [{"image_id": i["image_id"], "category_id": i["category_id"],
                    "keypoints": i["keypoints"].reshape(-1).tolist(), "score": 1.0,
                    "annotation_id": i["annotation_id"]} for i in instances]
    if save_predictions is not None:
        write_json_atomically(save_predictions, results)
    return evaluate(protocol, dataset_to_coco(rows), results, skeleton=skel, **options)
