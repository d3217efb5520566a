"""PoseBHImageProcessor: crops, box validation, and heatmaps -> image keypoints through the codec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posebh_hf import PoseBHImageProcessor
from posebh_hf.codecs import encode_heatmaps
from posebh_hf.geometry import apply_affine, box_to_center_scale, get_udp_warp_matrix
from posebh_hf.modeling import PoseBHOutput


def test_crops_shape_and_normalisation():
    proc = PoseBHImageProcessor()
    image = np.full((120, 160, 3), 255, np.uint8)
    out = proc([image, image], [[[10, 10, 50, 80]], [[0, 0, 160, 120], [5, 5, 20, 20]]])
    pixels = out["pixel_values"]
    assert pixels.shape == (3, 3, 256, 192)
    # A white pixel maps to (1 - mean) / std inside the box.
    expected = (1 - torch.tensor(proc.image_mean)) / torch.tensor(proc.image_std)
    assert torch.allclose(pixels[0, :, 128, 96], expected, atol=1e-5)


@pytest.mark.parametrize(("box", "message"), [
    ([0, 0, float("nan"), 10], "non-finite"),
    ([0, 0, -5, 10], "non-positive size"),
    ([500, 500, 10, 10], "outside"),
])
def test_bad_boxes_are_refused(box, message):
    with pytest.raises(ValueError, match=message):
        PoseBHImageProcessor()([np.zeros((100, 100, 3), np.uint8)], [[box]])


def test_image_and_box_count_mismatch():
    with pytest.raises(ValueError, match="one list of boxes per image"):
        PoseBHImageProcessor()([np.zeros((10, 10, 3), np.uint8)], [])


def test_post_process_recovers_image_keypoints():
    """Image keypoints -> crop (UDP matrix) -> heatmap targets (codec) -> post-process -> the same image keypoints."""
    proc = PoseBHImageProcessor()
    rng = np.random.default_rng(0)
    box = np.array([40.0, 30.0, 120.0, 200.0], np.float32)
    image_kpts = np.stack([rng.uniform(60, 140, 17), rng.uniform(60, 210, 17)], axis=1)
    center, scale = box_to_center_scale(box, 192 / 256)
    crop_kpts = apply_affine(image_kpts, get_udp_warp_matrix(center, scale * 200, 0.0, (192, 256)))
    targets, _ = encode_heatmaps(crop_kpts, np.ones(17), (192, 256), (48, 64), sigma=2.0, mode="udp")
    outputs = PoseBHOutput(heatmaps={"coco": torch.from_numpy(targets)[None]})
    result = proc.post_process_pose_estimation(outputs, [[box.tolist()]], dataset="coco")
    got = result[0][0]
    # 0.1 heatmap px at stride ~4 image px per heatmap px (scale) -> well under 1 image px
    assert np.abs(got["keypoints"] - image_kpts).max() < 0.6
    assert np.allclose(got["scores"], 1.0, atol=0.05)
    assert np.array_equal(got["bbox"], box)


def test_decoding_modes_from_config():
    proc = PoseBHImageProcessor(decoding={"aic": "default"})
    assert proc.decoding_for("aic") == "default" and proc.decoding_for("coco") == "udp"
    with pytest.raises(ValueError, match="decoding mode"):
        PoseBHImageProcessor(decoding={"aic": "dark"})
