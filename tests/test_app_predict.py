"""One demo request without a server (app/demo_predict.py) on a tiny random PoseBH model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

APP_DIR = Path(__file__).resolve().parents[1] / "app"
sys.path.insert(0, str(APP_DIR))

import demo_predict  # noqa: E402
from demo_inputs import InputError, LoadedImage  # noqa: E402
from demo_predict import check_skeletons, choose_boxes, run_prediction  # noqa: E402

from posebh_hf.pipeline import PoseBHPipeline, results_to_json  # noqa: E402


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> PoseBHPipeline:
    import torch

    from posebh_hf.configuration_posebh import PoseBHConfig
    from posebh_hf.modeling import PoseBHForPoseEstimation

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_posebh")
    PoseBHForPoseEstimation(PoseBHConfig.tiny()).save_pretrained(out)
    return PoseBHPipeline.from_pretrained(str(out))


@pytest.fixture
def image() -> LoadedImage:
    rng = np.random.default_rng(0)
    return LoadedImage(rgb=rng.integers(0, 256, (90, 140, 3), dtype=np.uint8), name="noise.png")


def test_prediction_json_is_the_pipeline_json(pipe, image):
    boxes = [[10.0, 5.0, 60.0, 80.0], [70.0, 0.0, 70.0, 90.0]]
    names = ["coco", "ap10k"]
    pred = run_prediction(pipe, image, boxes, names, flip=True, threshold=0.3)
    reference = results_to_json(pipe(image.rgb, boxes=boxes, skeletons=names, flip=True), boxes, names, pipe,
                                image_name="noise.png", width=140, height=90)
    assert pred.payload == reference
    assert [len(i["skeletons"]["coco"]["keypoints"]) for i in pred.payload["instances"]] == [17, 17]
    assert [caption.split(":")[0] for _, caption in pred.overlays] == names
    assert all(o.shape == image.rgb.shape and o.dtype == np.uint8 for o, _ in pred.overlays)
    assert "2 instance(s) x 2 skeleton(s)" in pred.note and "flip test on" in pred.note


def test_threshold_only_changes_the_drawing(pipe, image):
    boxes = [[0.0, 0.0, 140.0, 90.0]]
    low = run_prediction(pipe, image, boxes, ["coco"], flip=False, threshold=0.0)
    high = run_prediction(pipe, image, boxes, ["coco"], flip=False, threshold=1.0)
    assert low.payload == high.payload
    assert "17/17" in low.overlays[0][1] and "0/17" in high.overlays[0][1]
    # At threshold 1 only the box outline is drawn; at 0 the keypoints add more changed pixels.
    changed = [int((o[0] != image.rgb).any(-1).sum()) for o in (high.overlays[0], low.overlays[0])]
    assert 0 < changed[0] < changed[1]
    with pytest.raises(InputError, match="threshold"):
        run_prediction(pipe, image, boxes, ["coco"], flip=False, threshold=1.5)


def test_overlays_of_large_images_are_downscaled_but_json_keeps_full_resolution(pipe, monkeypatch):
    monkeypatch.setattr(demo_predict, "DISPLAY_MAX_SIDE", 70)
    big = LoadedImage(rgb=np.zeros((90, 140, 3), np.uint8), name="big.png")
    pred = run_prediction(pipe, big, [[0.0, 0.0, 140.0, 90.0]], ["mpii"], flip=False, threshold=0.3)
    assert pred.overlays[0][0].shape == (45, 70, 3)
    assert pred.payload["width"] == 140 and pred.payload["instances"][0]["bbox"] == [0.0, 0.0, 140.0, 90.0]


def test_skeleton_choice_is_validated(pipe):
    names = pipe.skeleton_names
    assert check_skeletons(["ap10k", "coco", "ap10k"], names) == ["ap10k", "coco"]
    with pytest.raises(InputError, match="at least one"):
        check_skeletons([], names)
    with pytest.raises(InputError, match=r"Unknown skeleton\(s\) 'horse'"):
        check_skeletons(["horse"], names)


def test_box_sources(image):
    def detect_two(rgb):
        return [[1.0, 2.0, 30.0, 40.0], [50.0, 2.0, 30.0, 40.0]], "fake detector"

    def detect_none(rgb):
        return [], "fake detector"

    assert choose_boxes(image, "whole", [], detect_two) == ([[0.0, 0.0, 140.0, 90.0]], "whole image as one box")
    boxes, note = choose_boxes(image, "detect", [], detect_two)
    assert len(boxes) == 2 and note == "2 box(es) from fake detector"
    boxes, note = choose_boxes(image, "detect", [], detect_none)
    assert boxes == [[0.0, 0.0, 140.0, 90.0]] and "found no person/animal" in note
    assert choose_boxes(image, "boxes", [[1, 1, 5, 5]], detect_two)[0] == [[1, 1, 5, 5]]
    with pytest.raises(InputError, match="no box was given"):
        choose_boxes(image, "boxes", [], detect_two)
    with pytest.raises(InputError, match="Unknown box source"):
        choose_boxes(image, "lasso", [], detect_two)


def test_overlay_files_are_whole_pngs_in_fresh_folders_and_old_ones_are_pruned(tmp_path):
    import os
    import time

    from PIL import Image

    files = demo_predict.OverlayFiles(tmp_path / "overlays", max_age_s=60)
    rgb = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    first = files.write([(rgb, "coco: x")], ["coco"])
    second = files.write([(rgb, "coco: x")], ["coco"])
    assert first[0][1] == "coco: x" and Path(first[0][0]).name == "coco.png"
    assert Path(first[0][0]).parent != Path(second[0][0]).parent  # identical results never share a file
    np.testing.assert_array_equal(np.asarray(Image.open(first[0][0])), rgb)  # RGB order kept through OpenCV
    assert not list((tmp_path / "overlays").rglob(".*"))  # no staging files left
    old = Path(first[0][0]).parent
    os.utime(old, (time.time() - 120, time.time() - 120))
    files.write([(rgb, "c")], ["coco"])
    assert not old.exists() and Path(second[0][0]).exists()


def test_the_random_fallback_loads_a_working_pipeline_and_leaves_no_files(monkeypatch, tmp_path):
    import tempfile

    import demo_model

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TemporaryDirectory puts the saved model
    choice = demo_model.choose_model(None, env={}, default_dir=tmp_path / "absent")
    fallback = demo_model.load_pipeline(choice)
    assert choice.is_random and "coco" in fallback.skeleton_names
    assert not list(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        demo_model.load_pipeline(demo_model.ModelChoice(str(tmp_path / "no-such-folder"), "argument"))
