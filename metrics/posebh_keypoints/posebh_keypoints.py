"""`evaluate` metric for 2D keypoints: COCO-style OKS AP/AR, MPII PCKh and PCK / AUC / EPE, computed by
`posebh_hf.evaluation` (equal to pycocotools / xtcocotools and mmpose's MPII and InterHand protocols).

    import evaluate
    metric = evaluate.load("metrics/posebh_keypoints")          # a path in this repository, or a Hub id
    for batch in loader:
        metric.add_batch(predictions=..., references=...)       # one example per image
    metric.compute(protocol="coco")                             # or "pckh", "pck-auc-epe", "pck", "aic", ...

Needs `posebh-hf` (this repository) importable; works offline (HF_HUB_OFFLINE=1) when loaded from a path.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Keypoint metrics of the pose-estimation protocols: COCO-style OKS AP/AR (`coco`, `ap10k`, `apt36k`, `ochuman`,
`pw3d`, `aic`, `crowdpose`, `coco_wholebody`), MPII PCKh@0.5/@0.1 (`pckh`), InterHand2.6M PCK/AUC/EPE
(`pck-auc-epe`) and a generic PCK (`pck`). Every number comes from `posebh_hf.evaluation.evaluate`, so it equals
what that API gives for the same ground truth and predictions written as COCO / MPII files.
"""

_CITATION = """\
@inproceedings{jeong2025posebh,
  title={PoseBH: Prototypical Multi-Dataset Training Beyond Human Pose Estimation},
  author={Jeong, Uyoung and Freer, Jonathan and Baek, Seungryul and Chang, Hyung Jin and Kim, Kwang In},
  booktitle={CVPR},
  year={2025}
}
"""

_KWARGS_DESCRIPTION = """\
One example = one image (or one person crop). Coordinates are image pixels.

Args:
    predictions: list of dicts, one per image:
        image_id (int): the image, matching its reference.
        keypoints (list of list of float): one flat [x1, y1, s1, x2, y2, s2, ...] (K x 3) per predicted instance
            (K x 2 is accepted by `pckh`).
        scores (list of float): the instance scores (OKS protocols rank by them; ignored by PCK protocols).
        category_ids (list of int): the category per instance (e.g. AP-10K species), or [] (all category 1).
    references: list of dicts, one per image:
        image_id (int): the image id (COCO image id; for MPII any distinct integer per image).
        keypoints (list of list of float): one flat [x, y, v] * K per ground-truth instance (v > 0 = labelled).
        bboxes (list of list of float): [x, y, w, h] per instance (OKS with use_area=False, PCK box size).
        areas (list of float): the COCO `area` per instance, or [] when the data has none.
        iscrowd (list of int): 1 for crowd regions, or [] (all 0).
        head_boxes (list of list of float): `pckh` only: [x1, y1, x2, y2] per person, else [].
        category_ids (list of int): the category per instance, or [] (all category 1). OKS AP is averaged over
            the categories that have ground truth, as COCOeval does.
    PCK-type protocols pair the k-th prediction of an image with its k-th non-crowd instance; `pckh` pairs the
    k-th prediction with the k-th person. MPII ground truth is in MPII's 1-based frame, predictions 0-based (as
    the pipeline outputs them; pass pred_one_based=True otherwise).

compute(protocol="coco", skeleton=None, **options):
    protocol: one of posebh_hf.evaluation.PROTOCOLS.
    skeleton: skeleton name / JSON path overriding the protocol's (sigmas, keypoint names).
    options: as posebh_hf.evaluation.evaluate: pck_thr, auc_max_px (pck-auc-epe); thr, norm, torso (pck);
        thresholds and crowd_index (crowdpose: {image_id: CrowdPose's per-image `crowdIndex`}, which splits
        AP into AP(E)/AP(M)/AP(H)); pred_one_based (pckh).

Returns:
    dict of metrics, e.g. AP, AP50, ..., AR (OKS); PCKh, PCKh@0.1, per-joint values (pckh); PCK, AUC, EPE (pck).

Examples:
    >>> metric = evaluate.load("metrics/posebh_keypoints")
    >>> metric.add_batch(predictions=[{"image_id": 1, "keypoints": [[10, 10, 1] * 17], "scores": [0.9], "category_ids": []}],
    ...                  references=[{"image_id": 1, "keypoints": [[10, 10, 2] * 17], "bboxes": [[0, 0, 50, 80]],
    ...                               "areas": [2000.0], "iscrowd": [0], "head_boxes": [], "category_ids": []}])
    >>> metric.compute(protocol="coco")["AP"]
    1.0
"""

_FLOATS = datasets.Sequence(datasets.Sequence(datasets.Value("float64")))


def _features() -> datasets.Features:
    """The example schema (one per image)."""
    references = {
        "image_id": datasets.Value("int64"),
        "keypoints": _FLOATS,
        "bboxes": _FLOATS,
        "areas": datasets.Sequence(datasets.Value("float64")),
        "iscrowd": datasets.Sequence(datasets.Value("int64")),
        "head_boxes": _FLOATS,
        "category_ids": datasets.Sequence(datasets.Value("int64")),
    }
    return datasets.Features({
        "predictions": {
            "image_id": datasets.Value("int64"),
            "keypoints": _FLOATS,
            "scores": datasets.Sequence(datasets.Value("float64")),
            "category_ids": datasets.Sequence(datasets.Value("int64")),
        },
        "references": references,
    })


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PosebhKeypoints(evaluate.Metric):
    """OKS AP, PCKh and PCK/AUC/EPE through `posebh_hf.evaluation` (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_features(),
            reference_urls=["https://github.com/uyoung-jeong/PoseBH", "https://cocodataset.org/#keypoints-eval"],
        )

    def _compute(self, predictions, references, protocol: str = "coco", skeleton=None, **options):
        from posebh_hf.evaluation import PROTOCOLS, EvaluationInputError
        from posebh_hf.evaluation import evaluate as posebh_evaluate

        if protocol not in PROTOCOLS:
            raise EvaluationInputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        ids = [int(r["image_id"]) for r in references]
        if len(set(ids)) != len(ids):
            raise EvaluationInputError("references: each image_id may appear in one example only")
        for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
            if int(pred["image_id"]) != int(ref["image_id"]):
                raise EvaluationInputError(f"example {i}: prediction image_id {pred['image_id']} != reference "
                                           f"image_id {ref['image_id']}")
        crowd_index = options.pop("crowd_index", None)
        if PROTOCOLS[protocol].kind == "pckh":
            gt, pred = mpii_inputs(predictions, references)
        else:
            gt, pred = coco_inputs(predictions, references)
        if crowd_index is not None:
            add_crowd_index(gt, crowd_index)
        return posebh_evaluate(protocol, gt, pred, skeleton=skeleton, **options)


def add_crowd_index(gt: dict, crowd_index) -> None:
    """Set CrowdPose's `crowdIndex` on every ground-truth image from {image_id: value} (keys may be strings)."""
    from posebh_hf.evaluation import EvaluationInputError
    if not isinstance(crowd_index, dict):
        raise EvaluationInputError(f"crowd_index must map image_id -> crowdIndex, got a {type(crowd_index).__name__}")
    values = {int(k): float(v) for k, v in crowd_index.items()}
    missing = [img["id"] for img in gt["images"] if img["id"] not in values]
    if missing:
        raise EvaluationInputError(f"crowd_index has no value for image_id {missing[0]} ({len(missing)} missing)")
    for img in gt["images"]:
        img["crowdIndex"] = values[img["id"]]


def _column(ref, field: str, count: int, image_id) -> list:
    values = list(ref.get(field) or [])
    if values and len(values) != count:
        raise ValueError(f"image {image_id}: {len(values)} {field} for {count} instances")
    return values


def coco_inputs(predictions, references) -> tuple[dict, list[dict]]:
    """Examples -> (COCO keypoint ground-truth dict, COCO results list)."""
    images, annotations, results = [], [], []
    categories: set[int] = set()
    for pred, ref in zip(predictions, references, strict=True):
        image_id = int(ref["image_id"])
        images.append({"id": image_id})
        kpts = list(ref["keypoints"])
        boxes = _column(ref, "bboxes", len(kpts), image_id)
        if len(boxes) != len(kpts):
            raise ValueError(f"image {image_id}: every instance needs a bbox ({len(boxes)} for {len(kpts)})")
        areas = _column(ref, "areas", len(kpts), image_id)
        crowd = _column(ref, "iscrowd", len(kpts), image_id)
        cats = _column(ref, "category_ids", len(kpts), image_id)
        for j, (k, box) in enumerate(zip(kpts, boxes, strict=True)):
            category = int(cats[j]) if cats else 1
            categories.add(category)
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category, "keypoints": list(k),
                   "bbox": list(box), "iscrowd": int(crowd[j]) if crowd else 0}
            if areas:
                ann["area"] = float(areas[j])
            annotations.append(ann)
        scores = _column(pred, "scores", len(pred["keypoints"]), image_id)
        pred_cats = _column(pred, "category_ids", len(pred["keypoints"]), image_id)
        for j, k in enumerate(pred["keypoints"]):
            category = int(pred_cats[j]) if pred_cats else 1
            categories.add(category)
            record = {"image_id": image_id, "category_id": category, "keypoints": list(k)}
            if scores:
                record["score"] = float(scores[j])
            results.append(record)
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": c, "name": str(c)} for c in sorted(categories or {1})]}
    return gt, results


def mpii_inputs(predictions, references) -> tuple[list[dict], list[dict]]:
    """Examples -> (mmpose MPII ground-truth records with head boxes, prediction records keyed by image)."""
    gt, preds = [], []
    for pred, ref in zip(predictions, references, strict=True):
        image = str(int(ref["image_id"]))
        kpts = list(ref["keypoints"])
        heads = _column(ref, "head_boxes", len(kpts), image)
        if len(heads) != len(kpts):
            raise ValueError(f"image {image}: pckh needs a head box per person ({len(heads)} for {len(kpts)})")
        for k, head in zip(kpts, heads, strict=True):
            arr = np.asarray(k, dtype=np.float64).reshape(-1, 3)
            gt.append({"image": image, "joints": arr[:, :2].tolist(), "joints_vis": (arr[:, 2] > 0).astype(int).tolist(),
                       "headbox": np.asarray(head, dtype=np.float64).reshape(2, 2).tolist()})
        for k in pred["keypoints"]:
            flat = np.asarray(k, dtype=np.float64).reshape(-1)
            width = 3 if flat.size == 48 else 2
            preds.append({"image": image, "joints": flat.reshape(-1, width)[:, :2].tolist()})
    return gt, preds
