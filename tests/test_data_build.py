"""`build_dataset` / `posebh data build`: saved datasets, malformed input, atomic output, the Hub push path."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import datasets
import numpy as np
import pytest
from conftest import shared_path

from posebh_hf.cli import main
from posebh_hf.data import ConvertOptions, MalformedRecordError, build_dataset, load_pose_dataset
from posebh_hf.data.features import pose_features
from posebh_hf.data.push import push_dataset_to_hub, render_dataset_card


def _coco_copy(tmp_path: Path, edit) -> Path:
    """The real COCO sample with one annotation edited by `edit(annotations)`."""
    src = json.loads(shared_path("real", "coco", "test_coco.json").read_text())
    edit(src)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(src))
    return path


def test_build_coco_roundtrip_and_self_description(tmp_path: Path) -> None:
    folder = shared_path("real", "coco")
    summary = build_dataset("coco", folder / "test_coco.json", folder, tmp_path / "coco", split="val", progress=False)
    assert (summary.images, summary.instances, summary.instances_with_keypoints) == (4, 14, 12)
    ds, skeleton = load_pose_dataset(tmp_path / "coco")
    assert skeleton.name == "coco" and skeleton.flip_pairs[0] == (1, 2)
    assert ds.features == pose_features(17)
    src = json.loads((folder / "test_coco.json").read_text())
    row = ds[0]
    assert row["image"].size == (row["width"], row["height"])  # embedded JPEG decodes
    ann = next(a for a in src["annotations"] if a["id"] == row["objects"][0]["id"])
    np.testing.assert_allclose(np.asarray(row["objects"][0]["keypoints"]).reshape(-1), ann["keypoints"])
    assert ds.split == "val"
    assert json.loads((tmp_path / "coco" / "posebh.json").read_text())["summary"]["instances"] == 14
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    # several arrow shards (tiny shard size) load back as one dataset, rows in file order
    build_dataset("coco", folder / "test_coco.json", folder, tmp_path / "sharded", max_shard_bytes=1, progress=False)
    assert len(list((tmp_path / "sharded").glob("data-*-of-00004.arrow"))) == 4
    assert load_pose_dataset(tmp_path / "sharded")[0]["image_id"] == [im["id"] for im in src["images"]]


def test_build_link_images_and_mpii_sizes_from_headers(tmp_path: Path) -> None:
    folder = shared_path("real", "mpii")
    build_dataset("mpii", folder / "test_mpii.json", folder, tmp_path / "mpii", link_images=True, progress=False,
                  options=ConvertOptions(head_boxes=folder / "mpii_val_headboxes_first5.json"))
    ds, _ = load_pose_dataset(tmp_path / "mpii")
    raw = ds.cast_column("image", datasets.Image(decode=False))[0]["image"]
    assert raw["bytes"] is None and Path(raw["path"]).is_file()
    sizes = {(r["width"], r["height"]) for r in ds.select_columns(["width", "height"])}
    assert sizes == {(1280, 720), (854, 480)}  # README: four 1280x720, one 854x480
    assert "head_box" in ds.features["objects"].feature


@pytest.mark.parametrize(
    ("edit", "record", "field"),
    [
        (lambda d: d["annotations"][1].pop("keypoints"), "annotation id=198196", "keypoints"),
        (lambda d: d["annotations"][1].__setitem__("keypoints", [1.0] * 48), "annotation id=198196", "keypoints"),
        (lambda d: d["annotations"][2]["keypoints"].__setitem__(0, float("nan")), "annotation id=230195", "keypoints"),
        (lambda d: d["annotations"][2].__setitem__("bbox", [1, 2, -3, 4]), "annotation id=230195", "bbox"),
        (lambda d: d["images"][0].__setitem__("file_name", "missing.jpg"), "image id=785", "file_name"),
    ],
    ids=["missing-field", "wrong-count", "nan", "negative-box", "image-missing"],
)
def test_malformed_records_are_named_and_leave_nothing(tmp_path: Path, edit, record: str, field: str) -> None:
    bad = _coco_copy(tmp_path, edit)
    out = tmp_path / "out"
    with pytest.raises(MalformedRecordError) as err:
        build_dataset("coco", bad, shared_path("real", "coco"), out, progress=False)
    assert err.value.record == record and err.value.field == field
    assert str(bad) in str(err.value)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad.json"]
    summary = build_dataset("coco", bad, shared_path("real", "coco"), out, skip_bad=True, progress=False)
    assert summary.skipped == 1 and summary.skipped_by_field == {field: 1}
    assert summary.instances == 13  # one annotation dropped, or image 785 with its one person
    assert load_pose_dataset(out)[0].num_rows == (3 if field == "file_name" else 4)


def test_cli_build_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _coco_copy(tmp_path, lambda d: d["annotations"][0]["bbox"].__setitem__(2, -5))
    code = main(["data", "build", "--format", "coco", "--annotations", str(bad), "--images",
                 str(shared_path("real", "coco")), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "annotation id=442619" in err and "'bbox'" in err
    code = main(["data", "build", "--format", "coco", "--annotations", str(tmp_path / "nope.json"), "--images",
                 str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2 and "nope.json" in capsys.readouterr().err
    code = main(["data", "build", "--format", "coco", "--annotations", str(bad), "--images",
                 str(shared_path("real", "coco")), "--out", str(tmp_path / "o"), "--skip-bad", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "4 images, 13 instances, 11 with keypoints" in out and "skipped 1" in out


def test_card_rendering_and_mocked_push(tmp_path: Path) -> None:
    folder = shared_path("real", "crowdpose")
    build_dataset("crowdpose", folder / "test_crowdpose.json", folder, tmp_path / "cp", split="test", progress=False)
    meta = json.loads((tmp_path / "cp" / "posebh.json").read_text())
    card = render_dataset_card(meta, repo_id="org/crowdpose-test", split="test")
    assert card.startswith("---\n") and "task_categories:" in card and "path: data/test-*.parquet" in card
    assert "`left_shoulder`, `right_shoulder`" in card and "| instances | 5 |" in card
    uploaded: dict[str, object] = {}

    def fake_upload(folder_path: str, **kwargs: object) -> str:
        root = Path(folder_path)
        uploaded["files"] = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        uploaded["kwargs"] = kwargs
        table = datasets.load_dataset("parquet", data_files=str(root / "data" / "*.parquet"), split="train")
        uploaded["rows"], uploaded["features"] = table.num_rows, table.features
        uploaded["crowd_index"] = sorted(table["crowd_index"])
        return "https://hub/commit/1"

    api = mock.Mock()
    api.upload_folder.side_effect = fake_upload
    url = push_dataset_to_hub(tmp_path / "cp", "org/crowdpose-test", api=api)
    assert url == "https://hub/commit/1"
    api.create_repo.assert_called_once_with("org/crowdpose-test", repo_type="dataset", private=False, exist_ok=True)
    assert uploaded["files"] == ["README.md", "data/test-00000-of-00001.parquet", "posebh.json"]
    assert uploaded["kwargs"]["repo_type"] == "dataset"
    crowd = sorted(im["crowdIndex"] for im in json.loads((folder / "test_crowdpose.json").read_text())["images"])
    assert uploaded["rows"] == 2 and uploaded["crowd_index"] == pytest.approx(crowd)
    assert uploaded["features"]["objects"] == pose_features(14, ("crowd_index",))["objects"]


def test_cli_show_and_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    folder = shared_path("real", "coco")
    build_dataset("coco", folder / "test_coco.json", folder, tmp_path / "coco", progress=False)
    assert main(["data", "show", str(tmp_path / "coco"), "--n", "6", "--out", str(tmp_path / "g.png"), "--cols",
                 "3"]) == 0
    with Image.open(tmp_path / "g.png") as grid:
        assert grid.size == (3 * 192 + 2 * 4, 2 * 256 + 4)
    assert main(["data", "show", str(tmp_path / "nothing"), "--out", str(tmp_path / "h.png")]) == 2
    assert "nothing" in capsys.readouterr().err and not (tmp_path / "h.png").exists()
    raw = {"images": [{"id": 1, "file_name": "a\\cat\\v1\\1.jpg", "video_id": 1}],
           "annotations": [{"id": 1, "image_id": 1, "video_id": 1, "is_crowd": 0}], "categories": []}
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    assert main(["data", "split-apt36k", "--annotations", str(tmp_path / "raw.json"), "--out", str(tmp_path / "s")]) == 0
    assert "train: 1 images, 1 annotations" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["apt36k_test.json", "apt36k_train.json",
                                                                 "apt36k_val.json"]


def test_cli_push_to_hub_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_path("real", "ochuman")
    with mock.patch("posebh_hf.data.push.HfApi") as api_class:
        api_class.return_value.upload_folder.return_value = mock.Mock(commit_url="https://hub/c/2")
        code = main(["data", "build", "--format", "ochuman", "--annotations", str(folder / "test_ochuman.json"),
                     "--images", str(folder), "--out", str(tmp_path / "oc"), "--split", "val", "--no-progress",
                     "--push-to-hub", "org/ochuman", "--private"])
    assert code == 0 and "pushed to https://hub/c/2" in capsys.readouterr().out
    api = api_class.return_value
    api.create_repo.assert_called_once_with("org/ochuman", repo_type="dataset", private=True, exist_ok=True)
    assert api.upload_folder.call_args.kwargs["commit_message"] == "Add ochuman val split"
