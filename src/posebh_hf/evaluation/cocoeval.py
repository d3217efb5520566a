"""COCO keypoint evaluation with any skeleton's sigmas (layer 1): pycocotools, made faster, same numbers.

:class:`FastKeypointEval` subclasses ``pycocotools.cocoeval.COCOeval`` and replaces its two per-image Python
loops: ``computeOks`` (by :func:`~posebh_hf.evaluation.oks.oks_matrix`, bit-identical values) and
``evaluateImg`` (the greedy matching run for the ten OKS thresholds at once, with pycocotools' exact rules:
detections in score order, a match needs OKS >= threshold, regular ground truths before ignored ones, the last
of equal best OKS wins, crowd ground truths can absorb several detections). ``accumulate`` and ``summarize`` are
pycocotools' own.

Inputs are converted the way mmpose's evaluator (xtcocotools) sees them, so the numbers equal mmpose's:

- a ground truth is ignored when it is crowd or has no keypoint with ``v > 0`` in the evaluated slice
  (xtcocotools counts them; pycocotools reads the ``num_keypoints`` field, equal for consistent files);
- a prediction whose keypoint scores in the slice are all 0 is dropped (xtcocotools ``_prepare``);
- a prediction's ``area`` (used for the medium/large ranges) is the extent of its ``area_slice`` keypoints
  (``loadRes``: the ``keypoints`` field, i.e. the 17 body keypoints for COCO-WholeBody);
- the OKS scale of a ground truth is its ``area``, or ``0.53 * w * h`` of its box with ``use_area=False``
  (xtcocotools' ``use_area=False`` for AIC, CrowdPose and 3DPW, and its fallback when ``area`` is absent).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .oks import oks_matrix

__all__ = [
    "COCO_STAT_NAMES",
    "FastKeypointEval",
    "build_dt_coco",
    "build_gt_coco",
    "quiet",
    "run_keypoint_eval",
]

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
NO_AREA_FACTOR = 0.53  # xtcocotools: OKS scale = 0.53 * box area when the segment area is not used


@contextlib.contextmanager
def quiet():
    """Silence pycocotools' progress prints (its numbers are read from the objects, not from stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _make_coco(images: list[dict], annotations: list[dict], categories: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with quiet():
        coco.createIndex()
    return coco


def build_gt_coco(gt: Mapping[str, Any], kpt_slice: slice, use_area: bool) -> COCO:
    """A pycocotools ``COCO`` of the ground truth restricted to ``kpt_slice`` (see the module docstring)."""
    anns = []
    for ann in gt["annotations"]:
        kpts = ann["keypoints"][kpt_slice]
        x, y, w, h = ann["bbox"]
        area = ann["area"] if use_area and ann["area"] is not None else h * w * NO_AREA_FACTOR
        anns.append({"id": ann["id"], "image_id": ann["image_id"], "category_id": ann["category_id"],
                     "keypoints": kpts, "num_keypoints": int(np.count_nonzero(kpts[:, 2] > 0)),
                     "bbox": [x, y, w, h], "area": area, "iscrowd": ann["iscrowd"]})
    return _make_coco(list(gt["images"]), anns, list(gt["categories"]))


def build_dt_coco(
    gt_coco: COCO, predictions: Sequence[Mapping[str, Any]], kpt_slice: slice, area_slice: slice | None = None
) -> COCO:
    """A results ``COCO`` like ``loadRes`` builds, restricted to ``kpt_slice``; all-zero-score ones dropped."""
    area_slice = kpt_slice if area_slice is None else area_slice
    anns = []
    for i, pred in enumerate(predictions):
        kpts = pred["keypoints"][kpt_slice]
        if not np.any(kpts[:, 2] > 0):
            continue
        full = pred["keypoints"][area_slice]
        x0, x1 = np.min(full[:, 0]), np.max(full[:, 0])
        y0, y1 = np.min(full[:, 1]), np.max(full[:, 1])
        anns.append({"id": i + 1, "image_id": pred["image_id"], "category_id": pred["category_id"],
                     "keypoints": kpts, "score": pred["score"], "area": (x1 - x0) * (y1 - y0),
                     "bbox": [x0, y0, x1 - x0, y1 - y0]})
    return _make_coco(list(gt_coco.dataset["images"]), anns, list(gt_coco.dataset["categories"]))


class FastKeypointEval(COCOeval):
    """``COCOeval(gt, dt, "keypoints")`` with the skeleton's ``sigmas`` and vectorised per-image steps.

    Ground-truth and result annotations must hold ``keypoints`` as ``[K, 3]`` arrays (as built by
    :func:`build_gt_coco` / :func:`build_dt_coco`).
    """

    def __init__(self, gt_coco: COCO, dt_coco: COCO, sigmas: Sequence[float] | np.ndarray) -> None:
        super().__init__(gt_coco, dt_coco, "keypoints")
        self.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        self._cache: dict[tuple[Any, Any], dict[str, Any]] = {}

    def _prepare(self) -> None:
        super()._prepare()
        self._cache = {}

    def _image(self, img_id: Any, cat_id: Any) -> dict[str, Any]:
        """Per (image, category) arrays, built once and shared by the OKS and the three area ranges."""
        key = (img_id, cat_id)
        if key not in self._cache:
            gts = self._gts[key]
            dts = self._dts[key]
            order = np.argsort([-d["score"] for d in dts], kind="mergesort")
            dts = [dts[i] for i in order]
            self._cache[key] = {
                "gts": gts,
                "gt_area": np.array([g["area"] for g in gts], dtype=np.float64),
                "gt_ignore": np.array([bool(g["ignore"]) for g in gts], dtype=bool),
                "gt_crowd": np.array([int(g["iscrowd"]) for g in gts], dtype=bool),
                "gt_id": np.array([g["id"] for g in gts]),
                "dts": dts,
                "dt_area": np.array([d["area"] for d in dts], dtype=np.float64),
                "dt_score": [d["score"] for d in dts],
                "dt_id": np.array([d["id"] for d in dts]),
            }
        return self._cache[key]

    def computeOks(self, imgId: Any, catId: Any) -> np.ndarray | list:  # noqa: N802, N803 (pycocotools API)
        img = self._image(imgId, catId)
        gts, dts = img["gts"], img["dts"][: self.params.maxDets[-1]]
        if len(gts) == 0 or len(dts) == 0:
            return []
        gt_kpts = np.stack([g["keypoints"] for g in gts])
        dt_xy = np.stack([d["keypoints"][:, :2] for d in dts])
        boxes = np.array([g["bbox"] for g in gts], dtype=np.float64)
        return oks_matrix(dt_xy, gt_kpts, boxes, img["gt_area"], self.params.kpt_oks_sigmas)

    def evaluateImg(self, imgId: Any, catId: Any, aRng: Sequence[float], maxDet: int) -> dict | None:  # noqa: N802, N803
        p = self.params
        img = self._image(imgId, catId)
        if len(img["gts"]) == 0 and len(img["dts"]) == 0:
            return None
        gt_ig = img["gt_ignore"] | (img["gt_area"] < aRng[0]) | (img["gt_area"] > aRng[1])
        gtind = np.argsort(gt_ig.astype(np.int64), kind="mergesort")
        gt_ig, crowd, gt_id = gt_ig[gtind].astype(np.int64), img["gt_crowd"][gtind], img["gt_id"][gtind]
        ious = self.ious[imgId, catId]
        ious = ious[:, gtind] if len(ious) > 0 else ious
        d_count = min(len(img["dts"]), maxDet)
        dt_id, dt_area = img["dt_id"][:d_count], img["dt_area"][:d_count]
        t_count, g_count = len(p.iouThrs), len(gtind)
        gtm = np.zeros((t_count, g_count))
        dtm = np.zeros((t_count, d_count))
        dt_ig = np.zeros((t_count, d_count))
        if len(ious) != 0:
            _greedy_match(ious, np.asarray(p.iouThrs), gt_ig, crowd, gt_id, dt_id, gtm, dtm, dt_ig)
        outside = ((dt_area < aRng[0]) | (dt_area > aRng[1])).reshape(1, d_count)
        dt_ig = np.logical_or(dt_ig, np.logical_and(dtm == 0, np.repeat(outside, t_count, 0)))
        return {
            "image_id": imgId, "category_id": catId, "aRng": aRng, "maxDet": maxDet,
            "dtIds": dt_id.tolist(), "gtIds": gt_id.tolist(), "dtMatches": dtm, "gtMatches": gtm,
            "dtScores": img["dt_score"][:d_count], "gtIgnore": gt_ig, "dtIgnore": dt_ig,
        }


def _greedy_match(
    ious: np.ndarray, thrs: np.ndarray, gt_ig: np.ndarray, crowd: np.ndarray, gt_id: np.ndarray,
    dt_id: np.ndarray, gtm: np.ndarray, dtm: np.ndarray, dt_ig: np.ndarray,
) -> None:
    """pycocotools' per-threshold greedy matching, for all T thresholds at once (fills gtm/dtm/dt_ig in place).

    Args:
        ious: [D', G] OKS (rows: detections by score; G in ignore-last order); D' >= D.
        thrs: [T] OKS thresholds. gt_ig/crowd/gt_id: [G]. dt_id: [D]. gtm: [T, G]. dtm, dt_ig: [T, D].
    """
    t_count, g_count = gtm.shape
    start = np.minimum(thrs, 1 - 1e-10)[:, None]  # [T, 1]
    regular = (gt_ig == 0)[None, :]
    matched = np.zeros((t_count, g_count), dtype=bool)
    rows = np.arange(t_count)
    for d in range(dtm.shape[1]):
        row = ious[d][None, :]  # [1, G]
        cand = (~matched | crowd[None, :]) & (row >= start)
        cand_reg = cand & regular
        # pycocotools stops at the first ignored GT once a regular one matched: regular GTs win.
        use = np.where(cand_reg.any(axis=1, keepdims=True), cand_reg, cand)
        has = use.any(axis=1)
        if not has.any():
            continue
        vals = np.where(use, row, -np.inf)
        best = vals.max(axis=1, keepdims=True)
        # `if iou < best: continue` lets an equal later OKS replace the match: take the last maximum.
        m = g_count - 1 - np.argmax((vals == best)[:, ::-1], axis=1)
        t_idx, m = rows[has], m[has]
        dt_ig[t_idx, d] = gt_ig[m]
        dtm[t_idx, d] = gt_id[m]
        gtm[t_idx, m] = dt_id[d]
        matched[t_idx, m] = True


def run_keypoint_eval(
    gt_coco: COCO, dt_coco: COCO, sigmas: Sequence[float] | np.ndarray, img_ids: Iterable[Any] | None = None
) -> FastKeypointEval:
    """Evaluate + accumulate + summarize quietly; returns the evaluator (``.stats`` [10], ``.eval``)."""
    ev = FastKeypointEval(gt_coco, dt_coco, sigmas)
    if img_ids is not None:
        ev.params.imgIds = sorted(img_ids)
    with quiet():
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev
