"""losses.heatmap and losses.sampling: JointsMSE, masked multi-head loss, phm loss, foreground sampling."""

from __future__ import annotations

import pytest
import torch

from posebh_hf.losses import joints_mse, multi_head_loss, prototype_heatmap_loss, sample_foreground_pixels


def _reference_mse(pred, target, weight):
    """(1/K) sum_k mean_{n, pixels} (w O - w T)^2, keypoint by keypoint."""
    k = pred.shape[1]
    total = 0.0
    for j in range(k):
        w = weight[:, j].view(-1, 1, 1)
        total += ((w * pred[:, j] - w * target[:, j]) ** 2).mean()
    return total / k


def test_joints_mse_matches_per_keypoint_formula():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 4, 5, 6, generator=g), torch.rand(3, 4, 5, 6, generator=g)
    weight = torch.rand(3, 4, 1, generator=g)
    torch.testing.assert_close(joints_mse(pred, target, weight), _reference_mse(pred, target, weight[..., 0]))
    torch.testing.assert_close(joints_mse(pred, target, weight[..., 0]), joints_mse(pred, target, weight))
    assert float(joints_mse(pred[:0], target[:0], weight[:0])) == 0.0
    with pytest.raises(ValueError, match="target_weight"):
        joints_mse(pred, target, torch.ones(3, 5))


def test_multi_head_loss_masks_other_datasets_and_averages_over_the_batch():
    g = torch.Generator().manual_seed(1)
    targets, weights = torch.rand(4, 3, 2, 2, generator=g), torch.ones(4, 3, 1)
    dataset_index = torch.tensor([0, 1, 0, 0])
    heads = [torch.rand(4, 3, 2, 2, generator=g), torch.rand(4, 2, 2, 2, generator=g)]
    loss, logs = multi_head_loss(heads, targets, weights, dataset_index)
    # head 1 sees only sample 1; the other 3 samples contribute 0 but count in the mean over B = 4
    expected1 = _reference_mse(heads[1][1:2], targets[1:2, :2], weights[1:2, :2, 0]) / 4
    expected0 = _reference_mse(heads[0][[0, 2, 3]], targets[[0, 2, 3]], weights[[0, 2, 3], :, 0]) * 3 / 4
    assert logs["head_loss_1"] == pytest.approx(float(expected1), rel=1e-5)
    assert logs["head_loss_0"] == pytest.approx(float(expected0), rel=1e-5)
    assert float(loss) == pytest.approx(float(expected0 + expected1), rel=1e-5)


def test_phm_loss_uses_each_datasets_rows_and_skips_empty_datasets():
    g = torch.Generator().manual_seed(2)
    num_keypoints = [2, 3, 1]
    phm = torch.rand(3, 6, 4, 4, generator=g)
    targets = torch.rand(3, 3, 4, 4, generator=g)
    targets[0, 2] = 0.0
    targets[2] = 0.0  # dataset 2's only sample has no foreground: skipped as released
    weights = torch.ones(3, 3, 1)
    dataset_index = torch.tensor([0, 1, 2])
    loss, logs = prototype_heatmap_loss(phm, targets, weights, dataset_index, num_keypoints, weight=2.0)
    mse0 = _reference_mse(phm[0:1, 0:2], targets[0:1, :2], weights[0:1, :2, 0])
    mse1 = _reference_mse(phm[1:2, 2:5], targets[1:2, :3], weights[1:2, :3, 0])
    assert set(logs) == {"phm_loss_0", "phm_loss_1", "phm_loss"}
    assert float(loss) == pytest.approx(2.0 * float(mse0 + mse1), rel=1e-5)
    with pytest.raises(ValueError, match="dataset_index values"):
        prototype_heatmap_loss(phm, targets, weights, torch.tensor([0, 1, 3]), num_keypoints)


def test_sampling_keeps_foreground_in_order_with_first_index_on_ties():
    emb = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    heat = torch.zeros(2, 3, 2, 2)
    heat[0, 1, 0, 1] = 0.5
    heat[0, 2, 0, 1] = 0.5  # tie with channel 1 -> class 1
    heat[1, 2, 1, 0] = 0.9
    heat[1, 0, 1, 1] = 0.1
    pixels = sample_foreground_pixels(emb, heat)
    assert pixels.classes.tolist() == [1, 2, 0] and pixels.sample_index.tolist() == [0, 1, 1]
    torch.testing.assert_close(pixels.confidences, torch.tensor([0.5, 0.9, 0.1]))
    torch.testing.assert_close(pixels.embeddings[1], emb[1, :, 1, 0])
    assert len(sample_foreground_pixels(emb, heat, threshold=0.2)) == 2
