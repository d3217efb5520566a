"""pycocotools' greedy detection-to-ground-truth matching, run for many images and all thresholds at once.

``COCOeval.evaluateImg`` matches each image separately: detections in score order, each to the best still-free
ground truth with OKS >= threshold, regular ground truths before ignored ones (the list is sorted ignore-last and
the scan stops at the first ignored one once a regular match exists), the last of equal best OKS winning (``if
iou < best: continue``), crowd ground truths able to absorb several detections. The images are independent, so
here the d-th detection of every image is matched in the same step, for all T thresholds, on padded arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MatchBatch", "greedy_match"]


@dataclass
class MatchBatch:
    """Padded per-image inputs: B images, up to D detections and G ground truths each (ignore-last order).

    ious [B, D, G] (-inf for padding), gt_ignore [B, G] int, gt_crowd [B, G] bool, gt_id [B, G],
    dt_id [B, D], dt_valid [B, D] bool.
    """

    ious: np.ndarray
    gt_ignore: np.ndarray
    gt_crowd: np.ndarray
    gt_id: np.ndarray
    dt_id: np.ndarray
    dt_valid: np.ndarray


def greedy_match(batch: MatchBatch, thrs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``dtm`` [B, T, D] (matched GT id or 0), ``dt_ig`` [B, T, D] (matched an ignored GT),
    ``gtm`` [B, T, G] (matched detection id or 0), exactly as pycocotools fills them per image."""
    b, d_max, g_max = batch.ious.shape
    t_count = len(thrs)
    start = np.minimum(thrs, 1 - 1e-10)[None, :, None]  # [1, T, 1]
    regular = (batch.gt_ignore == 0)[:, None, :]  # [B, 1, G]
    crowd = batch.gt_crowd[:, None, :]
    matched = np.zeros((b, t_count, g_max), dtype=bool)
    dtm = np.zeros((b, t_count, d_max))
    dt_ig = np.zeros((b, t_count, d_max))
    gtm = np.zeros((b, t_count, g_max))
    for d in range(d_max):
        row = batch.ious[:, d, :][:, None, :]  # [B, 1, G]
        cand = (~matched | crowd) & (row >= start)
        cand_reg = cand & regular
        use = np.where(cand_reg.any(axis=2, keepdims=True), cand_reg, cand)
        has = use.any(axis=2) & batch.dt_valid[:, d][:, None]  # [B, T]
        if not has.any():
            continue
        vals = np.where(use, row, -np.inf)
        best = vals.max(axis=2, keepdims=True)
        m = g_max - 1 - np.argmax((vals == best)[:, :, ::-1], axis=2)  # last index of the maximum
        bi, ti = np.nonzero(has)
        mi = m[bi, ti]
        dt_ig[bi, ti, d] = batch.gt_ignore[bi, mi]
        dtm[bi, ti, d] = batch.gt_id[bi, mi]
        gtm[bi, ti, mi] = batch.dt_id[bi, d]
        matched[bi, ti, mi] = True
    return dtm, dt_ig, gtm
