"""`transformers.pipeline("keypoint-detection")` after `import posebh_hf`, `PoseResult` objects, `PoseBHPipeline.
predict` batching, and `posebh predict` on folders and globs (JSON Lines). The README's snippet runs verbatim."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from posebh_hf import PoseBHPipeline, PoseResult
from posebh_hf.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), dataset_names=["coco", "ap10k"])


def _photo(seed: int, shape=(120, 90, 3)) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def test_the_readme_snippet_runs_verbatim(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- snippet:pipeline-task:begin -->\n```python\n(.*?)```\n<!-- snippet:pipeline-task:end -->",
                      text, re.S)
    assert block, "README lost its pipeline-task snippet"
    (tmp_path / "app").symlink_to(ROOT / "app")  # the snippet names the embedded model by its relative path
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README.md:pipeline-task", "exec"), {})  # noqa: S102 - our own README
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('{"image": "') and (tmp_path / "astronaut_pose.png").is_file()
    assert out[1].startswith("(1, 4) (1, 17, 2) (1, 17) ['nose', 'left_eye', 'right_eye']")


def test_task_inputs_and_batching_equal_single_calls(model_dir, tmp_path):
    from transformers import pipeline

    import posebh_hf  # noqa: F401

    pose = pipeline("keypoint-detection", model=str(model_dir))
    assert type(pose).__name__ == "KeypointDetectionPipeline"
    path = tmp_path / "a.png"
    Image.fromarray(_photo(1)).save(path)
    images = [str(path), Image.fromarray(_photo(2)), _photo(3, (80, 140, 3))]
    boxes = [[[5, 5, 60, 100], [10, 0, 70, 110]], None, [[20, 10, 50, 60]]]
    batched = pose(images, boxes=boxes, skeletons=["coco", "ap10k"], box_scores=[[0.9, 0.5], None, [0.7]])
    assert [len(r.instances) for r in batched] == [2, 1, 1]
    assert batched[0].instances[1].box_score == 0.5 and batched[1].instances[0].box_score is None
    assert batched[0].image_name == str(path) and batched[1].image_name == "image_1"
    single = PoseBHPipeline.from_pretrained(model_dir)
    for image, image_boxes, result in zip(images, boxes, batched, strict=True):
        alone = single(image, boxes=image_boxes, skeletons=["coco", "ap10k"])
        for i, inst in enumerate(result.instances):
            for name in ("coco", "ap10k"):
                np.testing.assert_allclose(inst.skeletons[name].xy, alone[i][name]["keypoints"], atol=1e-4)
                np.testing.assert_allclose(inst.skeletons[name].scores, alone[i][name]["scores"], atol=1e-5)
    one = pose(str(path), boxes=[[5, 5, 60, 100]], skeletons=["coco"])
    assert isinstance(one, PoseResult) and one.keypoints("coco").shape == (1, 17, 2)


def test_result_objects(model_dir, tmp_path):
    pipe = PoseBHPipeline.from_pretrained(model_dir)
    result = pipe.predict(_photo(4), boxes=[[[5, 5, 60, 100]]], skeletons=["coco", "ap10k"])[0]
    doc = result.to_dict()
    assert set(doc) == {"image", "width", "height", "instances"} and doc["width"] == 90
    kps = doc["instances"][0]["skeletons"]["ap10k"]["keypoints"]
    assert len(kps) == 17 and kps[2]["name"] == "nose" and all(0 <= k["score"] <= 1 for k in kps)
    assert json.loads(result.to_json()) == doc
    assert result.boxes.shape == (1, 4) and result.scores("ap10k").shape == (1, 17)
    drawn = result.plot(threshold=0.0)
    assert drawn.shape == (120, 90, 3) and (drawn != result.image).any()
    assert (result.plot(threshold=1.0) != result.image).any()  # the box and the skeleton name are always drawn
    assert json.loads(result.save(tmp_path / "r.json").read_text()) == doc
    assert Image.open(result.save(tmp_path / "r.png")).size == (90, 120)
    with pytest.raises(ValueError, match="use .png"):
        result.save(tmp_path / "r.gif")
    with pytest.raises(ValueError, match="was not predicted"):
        result.keypoints("mpii")
    with pytest.raises(ValueError, match="score threshold"):
        result.plot(threshold=float("nan"))


def test_predict_takes_folders_and_globs_and_prints_json_lines(capsys, model_dir, tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(3):
        Image.fromarray(_photo(10 + i)).save(shots / f"s{i}.png")
    (shots / "notes.txt").write_text("not an image")
    extra = tmp_path / "extra.jpg"
    Image.fromarray(_photo(20)).save(extra)
    code = main(["predict", str(shots), str(tmp_path / "e*.jpg"), "--model", str(model_dir), "--skeleton", "coco"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 4
    docs = [json.loads(line) for line in lines]
    assert [Path(d["image"]).name for d in docs] == ["s0.png", "s1.png", "s2.png", "extra.jpg"]
    code = main(["predict", str(tmp_path / "nothing*.png"), "--model", str(model_dir)])
    assert code == 2 and "matches no files" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), "--model", str(model_dir)]) == 2
    assert "holds no images" in capsys.readouterr().err


def test_the_task_is_registered_by_the_import():
    from transformers.pipelines import PIPELINE_REGISTRY

    import posebh_hf

    assert "keypoint-detection" in PIPELINE_REGISTRY.get_supported_tasks()
    posebh_hf.register_pipeline_task()  # idempotent
    assert PIPELINE_REGISTRY.supported_tasks["keypoint-detection"]["impl"] is posebh_hf.KeypointDetectionPipeline
