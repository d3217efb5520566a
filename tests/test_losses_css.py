"""losses.css: agreement filters, fused pseudo labels (Q8, Q9 fixed), and which samples CSS trains."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from posebh_hf.codecs import encode_heatmaps_torch
from posebh_hf.losses import LossWeights, css_loss, css_pseudo_labels

W, H = 40, 48  # heatmap width, height


def _maps(points: list[tuple[float, float]], conf: list[float]) -> torch.Tensor:
    """[1, K, H, W] UDP Gaussians (sigma 2) at `points` (heatmap pixels) scaled by `conf`."""
    heat, _ = encode_heatmaps_torch(torch.tensor([points]), torch.ones(1, len(points)), heatmap_size=(W, H))
    return heat * torch.tensor(conf).view(1, -1, 1, 1)


def _released_accept(mh_peaks, ph_peaks, mh_conf, ph_conf, thr=0.25, dist=2.1):
    """Released filter: sqrt((x_MH - x_PH)^2 + (x_PH - y_PH)^2) (Q8)."""
    out = []
    for (xm, _ym), (xp, yp), cm, cp in zip(mh_peaks, ph_peaks, mh_conf, ph_conf, strict=True):
        out.append(cm > thr and cp > thr and math.hypot(xm - xp, xp - yp) <= dist)
    return out


def test_filters_keep_only_agreeing_confident_keypoints_q8():
    mh_pts = [(10, 40), (20, 30), (20, 30), (20, 20), (25, 29)]
    ph_pts = [(10, 40), (23, 30), (22, 30), (20, 20), (25, 25)]
    mh_conf, ph_conf = [0.9, 0.9, 0.9, 0.9, 0.9], [0.8, 0.8, 0.8, 0.2, 0.8]
    labels = css_pseudo_labels(_maps(mh_pts, mh_conf), _maps(ph_pts, ph_conf))
    # 0: same place, off the diagonal; 1: 3 px apart; 2: 2 px apart; 3: PH not confident; 4: 4 px apart
    assert labels.accepted[0].tolist() == [True, False, True, False, False]
    assert labels.confident[0].tolist() == [True, True, True, False, True]
    assert _released_accept(mh_pts, ph_pts, mh_conf, ph_conf) == [False, False, False, False, True]
    assert float(labels.weights[0, 1]) == 0.0 and float(labels.heatmaps[0, 1].abs().sum()) == 0.0
    assert float(labels.weights[0, 0]) == pytest.approx(0.8, abs=1e-3)  # min(c_MH, c_PH)


def test_pseudo_keypoint_fuses_both_heads_coordinates_q9():
    mh_xy, ph_xy, c_mh, c_ph = (10.2, 40.3), (11.0, 40.9), 0.9, 0.45
    labels = css_pseudo_labels(_maps([mh_xy], [c_mh]), _maps([ph_xy], [c_ph]))
    assert labels.accepted.tolist() == [[True]]
    a, b = c_mh / (c_mh + c_ph), c_ph / (c_mh + c_ph)
    fused = torch.tensor([a * mh_xy[0] + b * ph_xy[0], a * mh_xy[1] + b * ph_xy[1]])
    torch.testing.assert_close(labels.keypoints[0, 0], fused, atol=0.05, rtol=0)
    released = torch.tensor([a * mh_xy[0] + b * c_ph, a * mh_xy[1] + b * c_ph])  # PH confidence, not coords
    assert float((labels.keypoints[0, 0] - released).norm()) > 3.0
    # the pseudo heatmap is the codec's UDP Gaussian at the fused point
    expected, _ = encode_heatmaps_torch(labels.keypoints[:, :1], torch.ones(1, 1), heatmap_size=(W, H))
    torch.testing.assert_close(labels.heatmaps, expected)
    assert float(labels.weights[0, 0]) == pytest.approx(min(c_mh, c_ph), abs=0.02)


def test_css_trains_only_samples_of_other_datasets():
    num_keypoints = [2, 1]  # skeleton 0 rows 0-1, skeleton 1 row 2
    dataset_index = torch.tensor([0, 1])
    good, far = (12.0, 20.0), (30.0, 5.0)
    head0 = torch.cat([_maps([good, good], [0.9, 0.9]),  # sample 0 is skeleton 0's own data: excluded
                       _maps([good, good], [0.9, 0.9])]).requires_grad_(True)
    head1 = torch.cat([_maps([good], [0.9]), _maps([good], [0.9])]).requires_grad_(True)
    phm = torch.cat([
        torch.cat([_maps([good, good], [0.8, 0.8]), _maps([good], [0.8])], dim=1),
        torch.cat([_maps([good, far], [0.8, 0.8]), _maps([good], [0.8])], dim=1),  # keypoint 1 disagrees
    ]).clamp(1e-4, 1 - 1e-4).requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2, 8, H, W, generator=g, requires_grad=True)
    protos = F.normalize(torch.randn(3, 2, 8, generator=g), dim=-1)
    lw = LossWeights()
    loss, logs = css_loss(emb, [head0, head1], phm, dataset_index, protos, num_keypoints, weights=lw)
    assert logs["css_candidates_0"] == 2.0 and logs["css_accepted_0"] == 1.0  # sample 1, keypoint 0 only
    assert logs["css_candidates_1"] == 1.0 and logs["css_accepted_1"] == 1.0  # sample 0
    assert logs["css_accept_rate"] == pytest.approx(2 / 3)
    loss.backward()
    assert float(head0.grad[0].abs().sum()) == 0.0 and float(head0.grad[1].abs().sum()) > 0
    assert float(head1.grad[1].abs().sum()) == 0.0 and float(head1.grad[0].abs().sum()) > 0
    assert float(head0.grad[1, 1].abs().sum()) == 0.0  # rejected keypoint: weight 0
    assert float(emb.grad.abs().sum()) > 0 and float(phm.grad.abs().sum()) > 0
    assert float(loss.detach()) == pytest.approx(logs["css_loss"]) and logs["css_loss"] > 0


def test_css_is_zero_when_nothing_agrees():
    heads = [torch.zeros(2, 2, H, W, requires_grad=True), None]
    loss, logs = css_loss(torch.randn(2, 8, H, W), heads, torch.full((2, 3, H, W), 1e-4), torch.tensor([1, 1]),
                          F.normalize(torch.randn(3, 2, 8), dim=-1), [2, 1])
    assert float(loss.detach()) == 0.0 and logs["css_accepted"] == 0.0 and logs["css_candidates"] == 4.0
