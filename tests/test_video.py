"""`posebh predict clip.mp4`: one JSON line per frame with track ids, an annotated video with every frame; the IoU
tracker and the keypoint-following boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import save_tiny_model

from posebh_hf.cli import main
from posebh_hf.video import IouTracker, boxes_from_keypoints

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), dataset_names=["coco"], image_size=[64, 48])


def make_clip(path, frames: int = 12, size=(160, 120)) -> None:
    """A synthetic clip: a bright figure walking left to right on a dark background."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 30, np.uint8)
        x = 20 + 8 * i
        cv2.circle(frame, (x, 30), 8, (220, 220, 220), -1)
        cv2.line(frame, (x, 38), (x, 80), (220, 220, 220), 4)
        cv2.line(frame, (x, 80), (x - 10, 110), (220, 220, 220), 4)
        cv2.line(frame, (x, 80), (x + 10, 110), (220, 220, 220), 4)
        writer.write(frame)
    writer.release()


def test_predict_on_a_video_writes_frames_and_json_lines(capsys, model_dir, tmp_path):
    clip = tmp_path / "walk.mp4"
    make_clip(clip)
    code = main(["predict", str(clip), "--model", str(model_dir), "--detect", "none", "--every", "4",
                 "--out-dir", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["frame"] for r in records] == list(range(12))
    assert records[3]["time"] == pytest.approx(0.3)
    assert all(len(r["instances"]) == 1 for r in records)
    ids = [r["instances"][0]["track_id"] for r in records]
    assert ids[0] == 1 and all(isinstance(t, int) for t in ids)
    out = tmp_path / "out" / "walk_pose.mp4"
    reader = cv2.VideoCapture(str(out))
    count = 0
    while reader.read()[0]:
        count += 1
    assert count == 12 and not list((tmp_path / "out").glob(".*partial*"))
    assert "12 frames of" in captured.err


def test_tracker_keeps_ids_by_overlap_and_starts_new_ones():
    tracker = IouTracker()
    assert tracker.update(np.array([[0, 0, 10, 10], [50, 50, 10, 10]])) == [1, 2]
    assert tracker.update(np.array([[52, 51, 10, 10], [1, 0, 10, 10]])) == [2, 1]  # order swapped, ids follow
    assert tracker.update(np.array([[100, 100, 5, 5]])) == [3]  # no overlap: a new person
    assert tracker.update(np.zeros((0, 4))) == []


def test_boxes_follow_confident_keypoints_and_keep_the_old_box_otherwise():
    previous = np.array([[0.0, 0.0, 50.0, 50.0], [10.0, 10.0, 20.0, 20.0]])
    keypoints = np.array([[[20, 20], [40, 20], [30, 60]], [[0, 0], [1, 1], [2, 2]]], np.float64)
    scores = np.array([[0.9, 0.8, 0.7], [0.1, 0.9, 0.1]])
    out = boxes_from_keypoints(keypoints, scores, previous, 200, 200, threshold=0.3, margin=0.25, min_points=3)
    np.testing.assert_allclose(out[0], [15.0, 10.0, 30.0, 60.0])  # 20..40 x 20..60, widened by a quarter
    np.testing.assert_allclose(out[1], previous[1])  # one confident keypoint: keep the previous box


def test_a_bad_video_is_one_line(capsys, model_dir, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    assert main(["predict", str(bad), "--model", str(model_dir)]) == 2
    assert "cannot read video" in capsys.readouterr().err
