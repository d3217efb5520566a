"""COCO keypoint evaluation with any skeleton's sigmas (layer 1): pycocotools, made faster, same numbers.

:class:`FastKeypointEval` subclasses ``pycocotools.cocoeval.COCOeval`` and replaces its per-image Python loops
(``computeOks`` per pair, ``evaluateImg`` per image, area range and threshold) by batched numpy over all images:
OKS for every (detection, ground truth) pair at once with bit-identical values, and pycocotools' greedy matching
run for the d-th detection of every image and all ten thresholds in one step (see ``matching.py``). It produces
the same ``ious`` and ``evalImgs``; ``accumulate`` and ``summarize`` are pycocotools' own.

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
import copy
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .matching import MatchBatch, greedy_match
from .oks import oks_pairs

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
    anns = gt["annotations"]
    k = gt["num_keypoints"]
    block = np.stack([a["keypoints"] for a in anns])[:, kpt_slice] if anns else np.zeros((0, k, 3))[:, kpt_slice]
    labelled = np.count_nonzero(block[:, :, 2] > 0, axis=1)
    out = []
    for ann, kpts, n in zip(anns, block, labelled.tolist(), strict=True):
        x, y, w, h = ann["bbox"]
        area = ann["area"] if use_area and ann["area"] is not None else h * w * NO_AREA_FACTOR
        out.append({"id": ann["id"], "image_id": ann["image_id"], "category_id": ann["category_id"],
                    "keypoints": kpts, "num_keypoints": n, "bbox": [x, y, w, h], "area": area,
                    "iscrowd": ann["iscrowd"]})
    return _make_coco(list(gt["images"]), out, list(gt["categories"]))


def build_dt_coco(
    gt_coco: COCO, predictions: Sequence[Mapping[str, Any]], kpt_slice: slice, area_slice: slice | None = None
) -> COCO:
    """A results ``COCO`` like ``loadRes`` builds, restricted to ``kpt_slice``; all-zero-score ones dropped."""
    area_slice = kpt_slice if area_slice is None else area_slice
    anns = []
    if predictions:
        full = np.stack([p["keypoints"] for p in predictions])  # [N, K, 3]
        keep = np.any(full[:, kpt_slice, 2] > 0, axis=1)
        ext = full[:, area_slice, :2]
        lo, hi = ext.min(axis=1), ext.max(axis=1)  # [N, 2]: loadRes' keypoint extent
        for i in np.nonzero(keep)[0].tolist():
            x0, y0 = lo[i]
            w, h = hi[i] - lo[i]
            pred = predictions[i]
            anns.append({"id": i + 1, "image_id": pred["image_id"], "category_id": pred["category_id"],
                         "keypoints": full[i, kpt_slice], "score": pred["score"], "area": w * h,
                         "bbox": [x0, y0, w, h]})
    return _make_coco(list(gt_coco.dataset["images"]), anns, list(gt_coco.dataset["categories"]))


class FastKeypointEval(COCOeval):
    """``COCOeval(gt, dt, "keypoints")`` with the skeleton's ``sigmas``; ``evaluate`` runs batched.

    ``evaluate`` fills ``self.ious`` and ``self.evalImgs`` with the same content as pycocotools' per-image loops
    (OKS by :func:`~posebh_hf.evaluation.oks.oks_pairs`, matching by
    :func:`~posebh_hf.evaluation.matching.greedy_match`); ``accumulate`` and ``summarize`` are pycocotools' own.
    Annotations must hold ``keypoints`` as ``[K, 3]`` arrays (as built by :func:`build_gt_coco` /
    :func:`build_dt_coco`); categories are always used (``params.useCats = 1``, the keypoint default).
    """

    def __init__(self, gt_coco: COCO, dt_coco: COCO, sigmas: Sequence[float] | np.ndarray) -> None:
        super().__init__(gt_coco, dt_coco, "keypoints")
        self.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)

    def evaluate(self) -> None:
        p = self.params
        if not p.useCats:
            raise ValueError("FastKeypointEval needs params.useCats = 1")
        p.imgIds = list(np.unique(p.imgIds))
        p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        self._prepare()
        table = _Table(self, p.maxDets[-1])
        self.ious = table.ious
        per_area = [table.evaluate_area(a, np.asarray(p.iouThrs)) for a in p.areaRng]
        n_img = len(p.imgIds)
        self.evalImgs = [per_area[a][c * n_img + i] for c in range(len(p.catIds)) for a in range(len(p.areaRng))
                         for i in range(n_img)]
        self._paramsEval = copy.deepcopy(self.params)


def _stack(items: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(items).astype(np.float64) if items else np.zeros(shape)


class _Table:
    """All (image, category) cells of one evaluation as flat arrays: ground truths, score-sorted detections, the
    OKS of every (detection, ground truth) pair of a cell (row-major [D, G] per cell)."""

    def __init__(self, ev: COCOeval, max_det: int) -> None:
        p = ev.params
        self.max_det = max_det
        self.keys = [(img, cat) for cat in p.catIds for img in p.imgIds]
        gts_all: list[dict] = []
        dts_all: list[dict] = []
        spans = []  # (first GT, G, first detection, D) per cell
        for key in self.keys:
            gts, dts = ev._gts[key], ev._dts[key]
            if dts:  # pycocotools: score order (stable), at most maxDets[-1]
                order = np.argsort([-d["score"] for d in dts], kind="mergesort")[:max_det]
                dts = [dts[i] for i in order]
            spans.append((len(gts_all), len(gts), len(dts_all), len(dts)))
            gts_all.extend(gts)
            dts_all.extend(dts)
        self.g0, self.gn, self.d0, self.dn = (np.array(col, dtype=np.int64).reshape(-1)
                                              for col in zip(*spans, strict=True)) if spans else (np.zeros(0, int),) * 4
        k = len(p.kpt_oks_sigmas)
        self.gt_kpts = _stack([g["keypoints"] for g in gts_all], (0, k, 3))
        self.gt_box = np.array([g["bbox"] for g in gts_all], dtype=np.float64).reshape(-1, 4)
        self.gt_area = np.array([g["area"] for g in gts_all], dtype=np.float64)
        self.gt_ignore = np.array([bool(g["ignore"]) for g in gts_all], dtype=bool)
        self.gt_crowd = np.array([bool(int(g["iscrowd"])) for g in gts_all], dtype=bool)
        self.gt_id = np.array([g["id"] for g in gts_all])
        self.gt_cell = np.repeat(np.arange(len(self.keys)), self.gn)
        self.dt_xy = _stack([d["keypoints"][:, :2] for d in dts_all], (0, k, 2))
        self.dt_area = np.array([d["area"] for d in dts_all], dtype=np.float64)
        self.dt_score = np.array([d["score"] for d in dts_all], dtype=np.float64)
        self.dt_id = np.array([d["id"] for d in dts_all])
        self.active = np.nonzero((self.gn > 0) & (self.dn > 0))[0]  # cells that need OKS and matching
        self.start = np.zeros(len(self.keys), dtype=np.int64)
        sizes = self.dn[self.active] * self.gn[self.active]
        self.start[self.active] = np.cumsum(sizes) - sizes
        self.oks = self._pair_oks(np.asarray(p.kpt_oks_sigmas, dtype=np.float64), sizes)

    def _pair_oks(self, sigmas: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        cell = np.repeat(self.active, sizes)
        offset = np.arange(int(sizes.sum())) - self.start[cell]
        gn = self.gn[cell]
        return oks_pairs(self.dt_xy, self.gt_kpts, self.gt_box, self.gt_area, sigmas,
                         self.d0[cell] + offset // gn, self.g0[cell] + offset % gn)

    @property
    def ious(self) -> dict[tuple[Any, Any], np.ndarray | list]:
        """pycocotools' ``self.ious``: [D, G] per cell (GTs in annotation order), ``[]`` when D or G is 0."""
        out: dict[tuple[Any, Any], np.ndarray | list] = dict.fromkeys(self.keys, [])
        for i in self.active:
            s, d_n, g_n = self.start[i], self.dn[i], self.gn[i]
            out[self.keys[i]] = self.oks[s:s + d_n * g_n].reshape(d_n, g_n)
        return out

    def evaluate_area(self, a_rng: Sequence[float], thrs: np.ndarray) -> list[dict | None]:
        """pycocotools ``evaluateImg(img, cat, a_rng, maxDet)`` for every cell, in ``self.keys`` order."""
        gt_ig = self.gt_ignore | (self.gt_area < a_rng[0]) | (self.gt_area > a_rng[1])
        dt_out = (self.dt_area < a_rng[0]) | (self.dt_area > a_rng[1])
        # Each cell's GTs in pycocotools' order (stable, ignored last): one stable lexsort over all cells.
        perm = np.lexsort((gt_ig, self.gt_cell))
        t_count = len(thrs)
        dtm = np.zeros((t_count, len(self.dt_id)))
        dt_ig = np.zeros((t_count, len(self.dt_id)))
        gtm = np.zeros((t_count, len(self.gt_id)))  # in `perm` order
        for cells in _buckets(self.active, self.gn):
            self._match(cells, perm, gt_ig, thrs, dtm, dt_ig, gtm)
        dt_ignore = np.logical_or(dt_ig, np.logical_and(dtm == 0, dt_out[None, :]))
        gt_ids, gt_ignore = self.gt_id[perm], gt_ig[perm].astype(np.int64)
        out: list[dict | None] = []
        for i, key in enumerate(self.keys):
            g0, g1, d0, d1 = self.g0[i], self.g0[i] + self.gn[i], self.d0[i], self.d0[i] + self.dn[i]
            if g0 == g1 and d0 == d1:
                out.append(None)
                continue
            out.append({
                "image_id": key[0], "category_id": key[1], "aRng": a_rng, "maxDet": self.max_det,
                "dtIds": self.dt_id[d0:d1], "gtIds": gt_ids[g0:g1], "dtMatches": dtm[:, d0:d1],
                "gtMatches": gtm[:, g0:g1], "dtScores": self.dt_score[d0:d1], "gtIgnore": gt_ignore[g0:g1],
                "dtIgnore": dt_ignore[:, d0:d1],
            })
        return out

    def _match(self, cells: np.ndarray, perm: np.ndarray, gt_ig: np.ndarray, thrs: np.ndarray, dtm: np.ndarray,
               dt_ig: np.ndarray, gtm: np.ndarray) -> None:
        """Greedy matching of the cells (all with G > 0 and D > 0) as one padded batch; fills the global
        ``dtm``/``dt_ig`` ([T, ND]) and ``gtm`` ([T, NG], ``perm`` order) in place."""
        g0, gn, d0, dn = self.g0[cells], self.gn[cells], self.d0[cells], self.dn[cells]
        g_max, d_max = int(gn.max()), int(dn.max())
        gj = np.arange(g_max)[None, :]
        g_ok = gj < gn[:, None]  # [B, G]
        g_pos = np.where(g_ok, g0[:, None] + gj, 0)  # position in `perm` order
        g_src = perm[g_pos]  # the GT behind each sorted slot
        dj = np.arange(d_max)[None, :]
        d_ok = dj < dn[:, None]  # [B, D]
        d_src = np.where(d_ok, d0[:, None] + dj, 0)
        # ious[b, d, j] = OKS(detection d, sorted GT j) = oks[start + d * G + (original local index of j)]
        flat = (self.start[cells][:, None, None] + dj[:, :, None] * gn[:, None, None]
                + (g_src - g0[:, None])[:, None, :])
        ious = np.where(d_ok[:, :, None] & g_ok[:, None, :], self.oks[np.where(
            d_ok[:, :, None] & g_ok[:, None, :], flat, 0)], -np.inf)
        batch = MatchBatch(ious=ious, gt_ignore=np.where(g_ok, gt_ig[g_src], 1).astype(np.int64),
                           gt_crowd=g_ok & self.gt_crowd[g_src], gt_id=np.where(g_ok, self.gt_id[g_src], 0),
                           dt_id=np.where(d_ok, self.dt_id[d_src], 0), dt_valid=d_ok)
        b_dtm, b_dtig, b_gtm = greedy_match(batch, thrs)  # [B, T, D], [B, T, D], [B, T, G]
        bi, di = np.nonzero(d_ok)
        dtm[:, d_src[bi, di]] = b_dtm[bi, :, di].T
        dt_ig[:, d_src[bi, di]] = b_dtig[bi, :, di].T
        bi, gi = np.nonzero(g_ok)
        gtm[:, g_pos[bi, gi]] = b_gtm[bi, :, gi].T


def _buckets(active: np.ndarray, gn: np.ndarray) -> list[np.ndarray]:
    """Active cells grouped by G rounded up to a power of two (bounds the padding of crowded images)."""
    if len(active) == 0:
        return []
    size = np.left_shift(1, np.ceil(np.log2(gn[active])).astype(np.int64))
    return [active[size == s] for s in np.unique(size)]


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
