"""BlazePose person boxes (posebh_hf.detection): decoding, NMS and box geometry on synthetic outputs; where the model
files come from and the one-line error when they are absent; a real run on a COCO photo and `posebh predict
--detect blazepose` (these skip, saying what to run, without the TFLite runtime, the model files or ../shared)."""

from __future__ import annotations

import json
import zipfile
from argparse import Namespace

import numpy as np
import pytest
from conftest import save_tiny_model, shared_path
from PIL import Image

from posebh_hf.cli import main
from posebh_hf.detection import blazepose as bp
from posebh_hf.detection import box_iou, detector_available, model_file, people_detector
from posebh_hf.detection.pose_landmarks import CROP_SIZE, roi_affine

FETCH = "python -m posebh_hf.detection.model_file"


@pytest.fixture
def no_models(tmp_path, monkeypatch):
    """An empty cache, no $POSEBH_BLAZEPOSE_DIR and no installed mediapipe: the model files are nowhere."""
    monkeypatch.setenv("POSEBH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(model_file.ENV_DIR, raising=False)
    monkeypatch.setattr(model_file, "_installed_mediapipe", lambda kind: None)
    return tmp_path


def _real_detector_or_skip() -> None:
    usable, why = detector_available("blazepose")
    if not usable:
        pytest.skip(f"the BlazePose detector is not set up here ({why})")


def test_anchors_follow_mediapipes_ssd_layout():
    anchors = bp.anchors()
    assert anchors.shape == (2254, 2) and anchors.min() > 0 and anchors.max() < 1
    np.testing.assert_allclose(anchors[:2], [[0.5 / 28, 0.5 / 28]] * 2)  # stride 8: 28 x 28, 2 per cell
    np.testing.assert_allclose(anchors[1568], [0.5 / 14, 0.5 / 14])  # stride 16 starts after 28 * 28 * 2
    np.testing.assert_allclose(anchors[1960:1966], [[0.5 / 7, 0.5 / 7]] * 6)  # three stride-32 layers share a grid


def test_decode_maps_offsets_around_the_anchor_and_drops_low_scores():
    raw = np.zeros((2254, 12), np.float32)
    scores = np.full(2254, -5.0, np.float32)  # sigmoid(-5) = 0.007: dropped
    raw[100] = [22.4, -11.2, 44.8, 22.4, 0, 0, 0, -22.4, 0, 0, 0, 0]  # offsets in 224-pixel units
    scores[100] = 3.0
    faces, keypoints, kept = bp.decode(raw, scores)
    ax, ay = bp.anchors()[100]
    assert faces.shape == (1, 4) and keypoints.shape == (1, 4, 2)
    np.testing.assert_allclose(faces[0], [ax + 0.1 - 0.1, ay - 0.05 - 0.05, 0.2, 0.1], atol=1e-6)
    np.testing.assert_allclose(keypoints[0, 1], [ax, ay - 0.1], atol=1e-6)
    np.testing.assert_allclose(kept, [1 / (1 + np.exp(-3.0))])


def test_weighted_nms_averages_a_cluster_and_keeps_separate_people_best_first():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [50, 50, 10, 10]], float)
    scores = np.array([0.6, 0.9, 0.7])
    extra = np.array([[[0.0, 0.0]], [[3.0, 3.0]], [[9.0, 9.0]]])
    out_boxes, out_extra, out_scores = bp.weighted_nms(boxes, scores, extra, 0.3)
    np.testing.assert_allclose(out_scores, [0.9, 0.7])
    np.testing.assert_allclose(out_boxes[0], [0.6, 0, 10, 10])  # (0 * 0.6 + 1 * 0.9) / 1.5
    np.testing.assert_allclose(out_extra[0], [[1.8, 1.8]])
    np.testing.assert_allclose(out_boxes[1], boxes[2])
    empty = bp.weighted_nms(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4, 2)))
    assert [a.shape for a in empty] == [(0, 4), (0, 4, 2), (0,)]


def test_keypoint_boxes_stand_on_the_body_axis_and_stay_in_the_image():
    # An upright person: hips at (100, 200), the body circle's point 100 px above them.
    faces = np.array([[90.0, 110.0, 20.0, 20.0]])
    keypoints = np.array([[[100.0, 200.0], [100.0, 100.0], [100.0, 150.0], [100.0, 120.0]]])
    box = bp.person_boxes(faces, keypoints, 400, 400, below=0.9, above=1.0, half_width=0.35)[0]
    np.testing.assert_allclose(box, [65, 100, 70, 190])
    # Lying down (axis to the right) near the right edge: the box turns and is clipped.
    lying = np.array([[[350.0, 200.0], [450.0, 200.0], [400.0, 200.0], [430.0, 200.0]]])
    box = bp.person_boxes(faces * 0 + [[440, 190, 10, 10]], lying, 400, 400, below=0.9, above=1.0, half_width=0.35)[0]
    np.testing.assert_allclose(box, [260, 165, 140, 70])


def test_the_landmark_crop_turns_the_body_axis_upright():
    upright = roi_affine(np.array([[100.0, 200.0], [100.0, 100.0], [0, 0], [0, 0]]))
    centre = upright @ [CROP_SIZE / 2, CROP_SIZE / 2, 1]
    top = upright @ [CROP_SIZE / 2, 0, 1]
    np.testing.assert_allclose(centre, [100, 200])
    np.testing.assert_allclose(top, [100, 200 - 125])  # half of the 2.5 r side above the hips
    lying = roi_affine(np.array([[100.0, 200.0], [200.0, 200.0], [0, 0], [0, 0]]))  # head to the right
    np.testing.assert_allclose(lying @ [CROP_SIZE / 2, 0, 1], [225, 200], atol=1e-9)


def test_a_missing_model_is_one_line_naming_the_command(no_models):
    with pytest.raises(model_file.ModelNotFoundError) as err:
        model_file.find_model("detector")
    message = str(err.value)
    assert FETCH in message and "\n" not in message and str(no_models / "cache") in message
    usable, why = detector_available("blazepose")
    assert not usable and ("model_file" in why or "pip install" in why)
    with pytest.raises(model_file.ModelNotFoundError, match="model_file"):
        people_detector("blazepose")


def test_models_are_extracted_from_a_wheel_and_found_in_the_cache(no_models, monkeypatch):
    wheel = no_models / "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for kind, (member, _) in model_file.MODELS.items():
            archive.writestr(member, f"fake {kind}")
    assert model_file.main([str(no_models)]) == 0  # a folder holding the wheel
    for kind in model_file.MODELS:
        path = model_file.find_model(kind)
        assert path.parent == no_models / "cache" / "blazepose" and path.read_text() == f"fake {kind}"
    monkeypatch.setenv(model_file.ENV_DIR, str(no_models / "elsewhere"))
    with pytest.raises(model_file.ModelNotFoundError, match=model_file.ENV_DIR):
        model_file.find_model("landmarks")
    assert model_file.main([str(no_models / "not-a-wheel.whl")]) == 2


def test_blazepose_finds_the_annotated_person_in_a_coco_photo():
    photo = shared_path("examples", "coco_000000442450_people_dog.jpg")
    annotations = shared_path("mdt_mini", "raw", "coco_mini", "annotations", "person_keypoints_train.json")
    _real_detector_or_skip()
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    detector = people_detector("blazepose")
    boxes = detector(rgb)
    _, scores = detector.detect(rgb)
    assert 1 <= len(boxes) <= 3 and all(len(b) == 4 and all(isinstance(v, float) for v in b) for b in boxes)
    assert list(scores) == sorted(scores, reverse=True)
    height, width = rgb.shape[:2]
    assert all(0 <= x and 0 <= y and x + w <= width + 1e-6 and y + h <= height + 1e-6 for x, y, w, h in boxes)
    truth = [a["bbox"] for a in json.loads(annotations.read_text())["annotations"] if a["image_id"] == 442450]
    assert box_iou(np.array(boxes), np.array(truth)).max() >= 0.5, (boxes, truth)


def test_blazepose_finds_nobody_in_a_blank_image():
    _real_detector_or_skip()
    assert people_detector("blazepose")(np.full((240, 320, 3), 128, np.uint8)) == []


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), dataset_names=["coco"], image_size=[64, 48])


def test_predict_detect_blazepose_gives_one_instance_per_box(capsys, model_dir):
    photo = shared_path("examples", "coco_000000442450_people_dog.jpg")
    _real_detector_or_skip()
    expected = people_detector("blazepose")(np.asarray(Image.open(photo).convert("RGB")))
    code = main(["predict", str(photo), "--model", str(model_dir), "--detect", "blazepose"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    np.testing.assert_allclose([inst["bbox"] for inst in doc["instances"]], expected, atol=0.01)


def test_predict_detect_blazepose_without_the_model_is_one_error_line(capsys, model_dir, no_models):
    photo = no_models / "grey.png"
    Image.fromarray(np.full((60, 40, 3), 128, np.uint8)).save(photo)
    code = main(["predict", str(photo), "--model", str(model_dir), "--detect", "blazepose"])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == "" and len(lines) == 1 and FETCH in lines[0], err


def test_videos_default_to_blazepose_only_when_it_is_set_up(capsys, no_models):
    from posebh_hf.cli.predict import _video_detector
    from posebh_hf.detection import choose_detector

    assert choose_detector("hog") == ("hog", "")
    assert choose_detector("auto")[0] == choose_detector("blazepose")[0] == "hog"
    with pytest.raises(ValueError, match="unknown person detector"):
        choose_detector("yolo")

    assert _video_detector(Namespace(detect="none")) == "none"
    assert _video_detector(Namespace(detect=None)) == "hog"
    assert "BlazePose is not usable" in capsys.readouterr().err


def test_the_demo_uses_blazepose_when_asked_and_says_why_not_otherwise(no_models):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
    from demo_detect import BoxFinder

    finder = BoxFinder(offline="blazepose")
    note = finder.describe()  # names the missing piece: the model files' command, or the runtime's pip install
    assert "BlazePose is not usable" in note and (FETCH in note or "pip install" in note)
    assert finder(np.zeros((40, 40, 3), np.uint8))[1] != "BlazePose person detector"


def test_the_demo_defaults_to_blazepose_when_set_up_else_quietly_to_hog(no_models, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
    import demo_detect

    monkeypatch.delenv("POSEBH_OFFLINE_DETECTOR", raising=False)
    finder = demo_detect.BoxFinder()
    assert finder.offline == "auto" and "not usable" not in finder.describe()  # not set up: HOG, no complaint
    monkeypatch.setattr(demo_detect, "choose_detector",
                        lambda requested: ("hog", "") if requested == "hog" else ("blazepose", ""))
    assert "BlazePose" in demo_detect.BoxFinder().describe()
    assert "HOG" in demo_detect.BoxFinder(offline="hog").describe()
