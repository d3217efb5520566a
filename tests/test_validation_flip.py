"""The flip test in validation (`eval.flip_test`, spec §6.2): mirrored crops, flip-back with the head's pairs, mean."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posebh_hf.codecs import HeatmapCodec
from posebh_hf.skeletons import Skeleton
from posebh_hf.training.config import EvalConfig
from posebh_hf.training.validation import ValidationSet, predict_crops, validate

INPUT, HEATMAP = (192, 256), (48, 64)  # (W, H)
EYES = Skeleton(name="eyes", keypoint_names=("left_eye", "right_eye"), flip_pairs=((0, 1),))
RIG = Skeleton(name="rig", keypoint_names=("left_eye", "right_eye"), flip_pairs=((0, 1),), flip_test=False)


class StubModel(nn.Module):
    """A model whose head `head` returns `make(pixels)` [B, 2, 64, 48]; counts its forward passes."""

    def __init__(self, skeleton: Skeleton, make) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # predict_crops reads the device from the parameters
        self.skeleton, self.make, self.calls = skeleton, make, 0
        codec = HeatmapCodec(input_size=INPUT, heatmap_size=HEATMAP, use_udp=True)
        self.config = SimpleNamespace(codec_for=lambda *a, **k: codec, get_skeleton=lambda name: skeleton,
                                      skeletons={skeleton.name: {"keypoints": list(skeleton.keypoint_names)}})

    def forward(self, pixels: torch.Tensor, dataset_index: str, heads: list[str]) -> SimpleNamespace:
        self.calls += 1
        return SimpleNamespace(heatmaps={heads[0]: self.make(pixels)})


class Crops:
    """Two crops, each black but for one bright 8 x 8 block at a different place."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        pixels = torch.zeros(3, INPUT[1], INPUT[0])
        pixels[:, 40 + 80 * i: 48 + 80 * i, 20 + 100 * i: 28 + 100 * i] = 1.0
        return {"pixel_values": pixels, "target": torch.zeros(2, HEATMAP[1], HEATMAP[0]),
                "target_weight": torch.ones(2), "keypoints": torch.zeros(2, 3), "dataset_index": 0, "image_id": i,
                "object_index": 0}


def _vset(skeleton: Skeleton) -> ValidationSet:
    return ValidationSet(skeleton.name, 0, Crops(), HeatmapCodec(input_size=INPUT, heatmap_size=HEATMAP),
                         skeleton)


def _bright_spot(pixels: torch.Tensor) -> torch.Tensor:
    """A flip-equivariant "model": both channels are the crop's brightness pooled 4 x 4."""
    return F.avg_pool2d(pixels[:, :1], 4).repeat(1, 2, 1, 1)


def _fixed_peaks(pixels: torch.Tensor) -> torch.Tensor:
    """Ignores the crop: left_eye peaks (1.0) at column 10, right_eye (0.6) at column 30, both on row 20."""
    heat = torch.zeros(pixels.shape[0], 2, HEATMAP[1], HEATMAP[0])
    heat[:, 0, 20, 10], heat[:, 1, 20, 30] = 1.0, 0.6
    return heat


def test_flip_test_keeps_the_answer_of_a_mirror_symmetric_model() -> None:
    model = StubModel(EYES, _bright_spot)
    plain, plain_scores, _ = predict_crops(model, _vset(EYES))
    flipped, flipped_scores, _ = predict_crops(model, _vset(EYES), flip=True)
    assert model.calls == 1 + 2  # one batch plain, then one batch plain + mirrored
    np.testing.assert_allclose(flipped, plain, atol=1e-4)
    np.testing.assert_allclose(flipped_scores, plain_scores, atol=1e-6)


def test_flip_test_swaps_the_pair_before_averaging() -> None:
    model = StubModel(EYES, _fixed_peaks)
    plain, scores, _ = predict_crops(model, _vset(EYES))
    flipped, flipped_scores, _ = predict_crops(model, _vset(EYES), flip=True)
    stride = (INPUT[0] - 1) / (HEATMAP[0] - 1)  # UDP
    assert plain[0, 1, 0] == pytest.approx(30 * stride, abs=1.0)
    # right_eye's mean map: its own 0.6 peak halved at column 30, left_eye's mirrored 1.0 peak halved at 47 - 10
    assert flipped[0, 1, 0] == pytest.approx(37 * stride, abs=1.0)
    assert flipped_scores[0, 1] == pytest.approx(0.5, abs=0.02) and scores[0, 1] == pytest.approx(0.6, abs=0.02)


def test_a_skeleton_without_flip_test_is_never_flipped_and_eval_config_reaches_it() -> None:
    model = StubModel(RIG, _fixed_peaks)
    plain, _, _ = predict_crops(model, _vset(RIG))
    flipped, _, _ = predict_crops(model, _vset(RIG), flip=True)
    assert model.calls == 2 and np.array_equal(plain, flipped)
    eyes = StubModel(EYES, _fixed_peaks)
    validate(eyes, [_vset(EYES)], EvalConfig(flip_test=True))
    assert eyes.calls == 2
    assert EvalConfig().flip_test is False
