"""Demo box sources (app/demo_detect.py): NMS, OpenCV HOG on a real photo, a transformers detector from a folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

APP_DIR = Path(__file__).resolve().parents[1] / "app"
sys.path.insert(0, str(APP_DIR))

import demo_detect  # noqa: E402
from demo_detect import BoxFinder, HubDetector, box_iou, hog_available, hog_people_boxes, nms  # noqa: E402


def test_box_iou_matches_a_hand_computed_value():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 5, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, b), [[25 / 175, 0.0, 1.0]])


def test_nms_agrees_with_a_brute_force_reference():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(0, 80, (40, 2)), rng.uniform(5, 40, (40, 2))], axis=1)
    scores = rng.uniform(size=40)
    keep = nms(boxes, scores, 0.3)
    # Reference: walk in score order, keep a box iff it overlaps no kept box by more than the threshold.
    ref: list[int] = []
    for i in np.argsort(-scores):
        if all(box_iou(boxes[i], boxes[j])[0, 0] <= 0.3 for j in ref):
            ref.append(int(i))
    assert keep == ref and 1 < len(keep) < 40


def _coco_person_boxes(image_id: int) -> list[list[float]]:
    ann = shared_path("mdt_mini", "raw", "coco_mini", "annotations", "person_keypoints_train.json")
    data = json.loads(ann.read_text())
    return [a["bbox"] for a in data["annotations"] if a["image_id"] == image_id and a["category_id"] == 1]


@pytest.mark.skipif(not hog_available(), reason="this OpenCV build has no HOGDescriptor (OpenCV 5 moved it to "
                    "contrib); pin opencv-python-headless<5 for the offline people detector")
def test_hog_finds_both_riders_of_a_coco_photo():
    photo = shared_path("examples", "coco_000000214753_horse_riders.jpg")
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    boxes = hog_people_boxes(rgb)
    truth = _coco_person_boxes(214753)
    assert len(truth) == 2 and 1 <= len(boxes) <= 6
    for gx, gy, gw, gh in truth:  # every annotated rider's centre lies inside some detected box
        cx, cy = gx + gw / 2, gy + gh / 2
        assert any(x <= cx <= x + w and y <= cy <= y + h for x, y, w, h in boxes), (truth, boxes)
    assert all(0 <= x and 0 <= y and x + w <= rgb.shape[1] + 1 and y + h <= rgb.shape[0] + 1 for x, y, w, h in boxes)


def test_box_finder_without_hog_reports_it(monkeypatch):
    monkeypatch.setattr(demo_detect, "hog_available", lambda: False)
    monkeypatch.setattr(demo_detect, "choose_detector", lambda requested: ("hog", "not set up"))
    boxes, by = BoxFinder()(np.zeros((50, 50, 3), np.uint8))
    assert boxes == [] and by.startswith("no detector")
    assert "whole image" in BoxFinder().describe()


def test_unreachable_hub_detector_falls_back_with_a_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    detector, note = HubDetector.load("PekingU/not-a-cached-detector")
    assert detector is None and "not available" in note and "not-a-cached-detector" in note
    finder = BoxFinder(None, note)
    assert finder.describe().startswith(note)


@pytest.fixture(scope="module")
def tiny_detector_dir(tmp_path_factory) -> Path:
    """A random 3-class RT-DETR saved to a folder: exercises the transformers path with no download."""
    import torch
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    torch.manual_seed(0)
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrConfig(
        backbone_config=backbone, use_pretrained_backbone=False, encoder_hidden_dim=16, encoder_in_channels=[8, 16, 16],
        d_model=16, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_layers=1, decoder_layers=1, num_queries=30,
        decoder_in_channels=[16, 16, 16], num_denoising=0, encoder_attention_heads=2, decoder_attention_heads=2,
        decoder_n_points=2, id2label={0: "person", 1: "car", 2: "dog"}, label2id={"person": 0, "car": 1, "dog": 2})
    out = tmp_path_factory.mktemp("tiny_rtdetr")
    RTDetrForObjectDetection(config).save_pretrained(out)
    RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(out)
    return out


def test_hub_detector_keeps_only_person_and_animal_boxes_inside_the_image(tiny_detector_dir):
    detector, note = HubDetector.load(str(tiny_detector_dir), threshold=0.0)
    assert detector is not None, note
    rgb = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    # Reference: the same post-processing by hand, keeping labels person/dog only.
    import torch

    with torch.inference_mode():
        outputs = detector.model(**detector.processor(images=rgb, return_tensors="pt"))
        raw = detector.processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(120, 200)])[0]
    wanted = sum(1 for label in raw["labels"].tolist() if label in (0, 2))
    boxes = detector(rgb)
    assert 0 < len(boxes) <= min(wanted, demo_detect.MAX_DETECTIONS)
    assert all(x >= 0 and y >= 0 and x + w <= 200.01 and y + h <= 120.01 and w > 0 and h > 0
               for x, y, w, h in boxes)
    detector.model.config.id2label = {0: "car", 1: "car", 2: "car"}  # nothing a pose head covers
    assert detector(rgb) == []
    found, by = BoxFinder(detector, note)(rgb)
    assert found == [] and "Hub detector" in by
