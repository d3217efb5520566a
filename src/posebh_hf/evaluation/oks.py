"""Object keypoint similarity, OKS-NMS and instance rescoring (layer 1, numpy only).

``oks_matrix`` is the vectorised form of ``pycocotools.cocoeval.COCOeval.computeOks``; it performs the same
floating-point operations in the same order (per ground truth, a contiguous sum over its visible keypoints), so
the values are bit-identical to pycocotools'. ``oks_nms`` and ``rescore_instances`` follow mmpose 0.x
(``mmpose/core/post_processing/nms.py`` and ``TopDownCocoDataset.evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["oks_matrix", "oks_nms", "oks_one_to_many", "rescore_instances"]

_EPS = np.spacing(1)


def oks_matrix(
    dt_xy: np.ndarray, gt_kpts: np.ndarray, gt_boxes: np.ndarray, gt_areas: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """OKS between D detections and G ground truths, exactly as pycocotools computes it.

    A ground truth with no visible keypoint (v > 0) is compared through the distance of the detection to the
    ground truth's box doubled on each side (COCO's rule for ignored instances).

    Args:
        dt_xy: [D, K, 2] detected keypoint coordinates.
        gt_kpts: [G, K, 3] ground-truth ``(x, y, v)``.
        gt_boxes: [G, 4] ground-truth boxes ``(x, y, w, h)``.
        gt_areas: [G] OKS scale (the segment area, or 0.53 w h when ``use_area=False``).
        sigmas: [K] per-keypoint OKS sigmas.

    Returns:
        [D, G] float64 OKS.
    """
    dt_xy = np.asarray(dt_xy, dtype=np.float64)
    gt_kpts = np.asarray(gt_kpts, dtype=np.float64)
    d_count, g_count = dt_xy.shape[0], gt_kpts.shape[0]
    out = np.zeros((d_count, g_count))
    if d_count == 0 or g_count == 0:
        return out
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    xd, yd = dt_xy[..., 0], dt_xy[..., 1]  # [D, K]
    for j in range(g_count):
        xg, yg, vg = gt_kpts[j, :, 0], gt_kpts[j, :, 1], gt_kpts[j, :, 2]
        visible = vg > 0
        if visible.any():
            dx, dy = xd - xg, yd - yg
        else:
            bx, by, bw, bh = (float(v) for v in gt_boxes[j])
            x0, x1, y0, y1 = bx - bw, bx + bw * 2, by - bh, by + bh * 2
            dx = np.maximum(0, x0 - xd) + np.maximum(0, xd - x1)
            dy = np.maximum(0, y0 - yd) + np.maximum(0, yd - y1)
        e = (dx**2 + dy**2) / variances / (gt_areas[j] + _EPS) / 2
        if visible.any():
            # Row-contiguous copy (boolean column indexing may return a column-major array): the row sums then
            # use numpy's pairwise summation like pycocotools' 1-D `np.sum(e[vg > 0])`, bit for bit.
            e = np.ascontiguousarray(e[:, visible])
        out[:, j] = np.sum(np.exp(-e), axis=1) / e.shape[1]
    return out


def oks_one_to_many(
    kpts: np.ndarray,
    others: np.ndarray,
    area: float,
    other_areas: np.ndarray,
    sigmas: np.ndarray,
    vis_thr: float | None = None,
) -> np.ndarray:
    """mmpose's ``oks_iou``: OKS of one instance against N others, scaled by the mean of the two areas.

    Args:
        kpts: [K, 3] ``(x, y, score)`` of the reference instance.
        others: [N, K, 3] the other instances.
        area: the reference instance's area (mmpose: the padded crop area, ``prod(scale * 200)``).
        other_areas: [N] their areas.
        sigmas: [K].
        vis_thr: when set, only keypoints whose scores exceed it in *the other* instance count (mmpose's
            ``list(vg > thr) and list(vd > thr)`` evaluates to the second list).

    Returns:
        [N] float32 OKS (mmpose stores them in float32).
    """
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    out = np.zeros(len(others), dtype=np.float32)
    for n, other in enumerate(others):
        dx = other[:, 0] - kpts[:, 0]
        dy = other[:, 1] - kpts[:, 1]
        e = (dx**2 + dy**2) / variances / ((area + other_areas[n]) / 2 + _EPS) / 2
        if vis_thr is not None:
            e = e[other[:, 2] > vis_thr]
        out[n] = np.sum(np.exp(-e)) / len(e) if len(e) else 0.0
    return out


def oks_nms(
    kpts: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, thr: float = 0.9,
    vis_thr: float | None = None,
) -> list[int]:
    """Greedy (hard) OKS non-maximum suppression of one image's instances (mmpose ``oks_nms``).

    Args:
        kpts: [N, K, 3] ``(x, y, score)``.
        scores: [N] instance scores.
        areas: [N] instance areas.
        sigmas: [K].
        thr: instances whose OKS with a kept one is above ``thr`` are dropped.

    Returns:
        Indices of the kept instances, best score first.
    """
    kpts = np.asarray(kpts, dtype=np.float64)
    if len(kpts) == 0:
        return []
    order = np.asarray(scores).argsort()[::-1]
    areas = np.asarray(areas, dtype=np.float64)
    keep: list[int] = []
    while len(order) > 0:
        i = int(order[0])
        keep.append(i)
        ovr = oks_one_to_many(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, vis_thr)
        order = order[np.where(ovr <= thr)[0] + 1]
    return keep


def rescore_instances(
    kpt_scores: np.ndarray, box_scores: Sequence[float] | np.ndarray, vis_thr: float = 0.2
) -> np.ndarray:
    """mmpose's COCO rescoring: box score x mean of the keypoint scores above ``vis_thr`` (0 when none).

    Args:
        kpt_scores: [N, K] keypoint confidences.
        box_scores: [N] detector scores (1.0 for ground-truth boxes).

    Returns:
        [N] float64 instance scores.
    """
    kpt_scores = np.asarray(kpt_scores, dtype=np.float64)
    above = kpt_scores > vis_thr
    count = above.sum(axis=1)
    total = np.where(above, kpt_scores, 0.0).sum(axis=1)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return mean * np.asarray(box_scores, dtype=np.float64)


def oks_pairs(
    dt_xy: np.ndarray, gt_kpts: np.ndarray, gt_boxes: np.ndarray, gt_areas: np.ndarray, sigmas: np.ndarray,
    dt_index: np.ndarray, gt_index: np.ndarray,
) -> np.ndarray:
    """OKS of many (detection, ground truth) pairs at once, bit-identical to pycocotools' per-pair loop.

    Pairs are grouped by their ground truth's number ``c`` of visible keypoints; each group's terms are gathered
    into a row-contiguous ``[P_c, c]`` array, so every row is summed exactly like pycocotools'
    ``np.sum(np.exp(-e[vg > 0]))`` (same values, order and length). Ground truths without a visible keypoint use the
    doubled-box distance over all K keypoints.

    Args:
        dt_xy: [ND, K, 2]. gt_kpts: [NG, K, 3]. gt_boxes: [NG, 4]. gt_areas: [NG]. sigmas: [K].
        dt_index, gt_index: [P] the pairs.

    Returns:
        [P] float64 OKS.
    """
    out = np.zeros(len(dt_index))
    if len(dt_index) == 0:
        return out
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    k = gt_kpts.shape[1]
    vis = gt_kpts[:, :, 2] > 0  # [NG, K]
    count = vis.sum(axis=1)  # [NG]
    # visible keypoint indices of each GT, ascending, padded at the end (stable sort keeps the order)
    vis_order = np.argsort(~vis, axis=1, kind="stable")
    pair_count = count[gt_index]
    for c in np.unique(pair_count):
        sel = np.nonzero(pair_count == c)[0]
        d, g = dt_index[sel], gt_index[sel]
        xd, yd = dt_xy[d, :, 0], dt_xy[d, :, 1]  # [P_c, K]
        if c > 0:
            dx, dy = xd - gt_kpts[g, :, 0], yd - gt_kpts[g, :, 1]
        else:
            bx, by, bw, bh = (gt_boxes[g, i][:, None] for i in range(4))
            x0, x1, y0, y1 = bx - bw, bx + bw * 2, by - bh, by + bh * 2
            dx = np.maximum(0, x0 - xd) + np.maximum(0, xd - x1)
            dy = np.maximum(0, y0 - yd) + np.maximum(0, yd - y1)
        e = (dx**2 + dy**2) / variances / (gt_areas[g][:, None] + _EPS) / 2
        if c > 0:
            e = np.ascontiguousarray(np.take_along_axis(e, vis_order[g, :c], axis=1))
        out[sel] = np.sum(np.exp(-e), axis=1) / (c if c > 0 else k)
    return out
