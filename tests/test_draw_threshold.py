"""A model carries the score under which its keypoints are not drawn (`PoseBHConfig.draw_threshold`): `posebh
predict` and the demo use it unless the user sets one; 0.3 (mmpose's) when the model says nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_demo_app, save_tiny_model
from PIL import Image

from posebh_hf import PoseBHConfig
from posebh_hf.cli import main


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.2", True])
def test_the_config_refuses_a_threshold_outside_zero_one(bad):
    with pytest.raises(ValueError, match="draw_threshold must be a number in"):
        PoseBHConfig.tiny(draw_threshold=bad)


def test_default_and_saved_values():
    assert PoseBHConfig.tiny().keypoint_draw_threshold == 0.3
    config = PoseBHConfig.tiny(draw_threshold=0.15)
    assert PoseBHConfig.from_dict(config.to_dict()).keypoint_draw_threshold == 0.15


@pytest.fixture(scope="module")
def low_threshold_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("drawn") / "model", draw_threshold=0.0)


def _drawn_pixels(path) -> int:
    return int((np.asarray(Image.open(path).convert("RGB")).astype(int) != 128).any(axis=-1).sum())


def test_predict_draws_with_the_model_threshold_unless_told(tmp_path, low_threshold_model, capsys):
    photo = tmp_path / "grey.png"
    Image.new("RGB", (64, 96), (128, 128, 128)).save(photo)
    args = ["predict", str(photo), "--model", str(low_threshold_model), "--skeleton", "coco", "--box", "4,4,56,88"]
    assert main([*args, "--out-dir", str(tmp_path / "model")]) == 0
    assert main([*args, "--threshold", "1", "--out-dir", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    # threshold 0 (the model's): every keypoint and limb drawn; 1: the box alone
    assert _drawn_pixels(tmp_path / "model" / "grey_coco.png") > _drawn_pixels(tmp_path / "one" / "grey_coco.png")


def test_the_demo_slider_starts_at_the_model_threshold(low_threshold_model):
    import gradio as gr

    app = load_demo_app()
    demo = app.build_demo(str(low_threshold_model), cache_examples="off")
    sliders = [b for b in demo.blocks.values() if isinstance(b, gr.Slider)]
    assert [s.value for s in sliders] == [0.0]
    demo.close()
    assert json.loads((low_threshold_model / "config.json").read_text())["draw_threshold"] == 0.0
