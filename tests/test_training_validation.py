"""Validation during training: crop-space metrics and the process sharding of instances."""

from __future__ import annotations

import numpy as np
import pytest

from posebh_hf.skeletons import get_skeleton
from posebh_hf.training.validation import _merge, _shard, score_predictions


def _gt(n: int = 6, k: int = 17, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(10, 180, size=(n, k, 2))
    vis = (rng.uniform(size=(n, k)) > 0.2).astype(np.float64)
    return np.concatenate([xy, vis[..., None]], axis=-1)


def test_perfect_predictions_score_one() -> None:
    gt = _gt()
    metrics = score_predictions(gt[..., :2].copy(), np.ones(gt.shape[:2]), gt, get_skeleton("coco"), 0.2)
    assert metrics["pck"] == pytest.approx(1.0) and metrics["epe"] == pytest.approx(0.0)
    assert metrics["ap"] == pytest.approx(1.0) and metrics["instances"] == 6.0


def test_far_predictions_score_zero_and_partial_shifts_in_between() -> None:
    gt = _gt()
    far = score_predictions(gt[..., :2] + 500.0, np.ones(gt.shape[:2]), gt, get_skeleton("coco"), 0.2)
    assert far["pck"] == 0.0 and far["ap"] == 0.0 and far["epe"] == pytest.approx(500 * np.sqrt(2))
    shifted = gt[..., :2].copy()
    shifted[:, ::2] += 1000.0  # every other keypoint far off
    half = score_predictions(shifted, np.ones(gt.shape[:2]), gt, get_skeleton("coco"), 0.2)
    assert 0.3 < half["pck"] < 0.7


def test_sharding_covers_every_instance_once_with_equal_counts() -> None:
    total, world = 7, 3
    shards = [_shard(total, r, world) for r in range(world)]
    assert {len(s) for s in shards} == {3}  # equal forward counts on every process
    parts = [(s, np.array(s, float)[:, None, None] * np.ones((1, 2, 2)), np.ones((len(s), 2)),
              np.ones((len(s), 2, 3))) for s in shards]
    pred, _, _ = _merge(parts, total)
    assert pred[:, 0, 0].tolist() == list(range(total))
