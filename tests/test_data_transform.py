"""The training transform on built datasets: outputs, determinism, geometry, flips, instance selection."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from posebh_hf.data import (
    ConvertOptions,
    PoseTrainTransform,
    build_dataset,
    instance_dataset,
    load_pose_dataset,
    stream_instances,
)
from posebh_hf.data.image_io import decode_image
from posebh_hf.data.show import denormalize
from posebh_hf.transforms import AugmentConfig

NO_AUG = AugmentConfig(flip_prob=0.0, half_body=False, scale_factor=0.0, rot_factor=0.0, rot_prob=0.0,
                       center_jitter_prob=0.0)


def _build_crops(root: Path, name: str) -> Path:
    folder = shared_path("mdt_mini", "crops", name)
    out = root / name
    build_dataset("coco-custom", folder / f"{name}_train.json", folder, out, split="train", progress=False,
                  options=ConvertOptions(skeleton_name=name))
    return out


@pytest.fixture(scope="module")
def dlc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_crops(tmp_path_factory.mktemp("crops"), "dlc_openfield")


@pytest.fixture(scope="module")
def coco_real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = shared_path("real", "coco")
    out = tmp_path_factory.mktemp("real") / "coco"
    build_dataset("coco", folder / "test_coco.json", folder, out, progress=False)
    return out


def test_outputs_shapes_and_determinism(dlc: Path) -> None:
    ds, skeleton = load_pose_dataset(dlc)
    transform = PoseTrainTransform.from_dataset(ds, dataset_index=3, seed=7)
    samples = instance_dataset(ds, transform)
    assert len(samples) == 71
    a = samples[5]
    assert a["pixel_values"].shape == (3, 256, 192) and a["pixel_values"].dtype == np.float32
    assert a["target"].shape == (4, 64, 48) and a["target_weight"].shape == (4,) and a["keypoints"].shape == (4, 3)
    assert a["dataset_index"] == 3 and a["object_index"] == 0
    again = instance_dataset(ds, PoseTrainTransform.from_dataset(ds, dataset_index=3, seed=7))[5]
    assert all(np.array_equal(a[k], again[k]) for k in ("pixel_values", "target", "keypoints"))
    transform.set_epoch(1)
    assert not np.array_equal(samples[5]["pixel_values"], a["pixel_values"])  # new epoch, new draws
    other = instance_dataset(ds, PoseTrainTransform.from_dataset(ds, dataset_index=3, seed=8))[5]
    assert not np.array_equal(other["pixel_values"], a["pixel_values"])


def test_no_augmentation_geometry_on_crops(dlc: Path) -> None:
    """Crop = the whole 192x256 image (box_source content) -> the UDP map is x' = (x - 96) * 191/192 + 95.5."""
    ds, _ = load_pose_dataset(dlc)
    transform = PoseTrainTransform.from_dataset(ds, augment=NO_AUG, box_source="content")
    samples = instance_dataset(ds, transform)
    src = json.loads((shared_path("mdt_mini", "crops", "dlc_openfield") / "dlc_openfield_train.json").read_text())
    anns = {a["image_id"]: a for a in src["annotations"]}
    for i in (0, 17, 40):
        sample = samples[i]
        row = ds[int(samples.data.column("row")[i].as_py())]
        kp = np.asarray(anns[row["image_id"]]["keypoints"], np.float64).reshape(-1, 3)
        expected = (kp[:, :2] - [96.0, 128.0]) * [191 / 192, 255 / 256] + [95.5, 127.5]
        np.testing.assert_allclose(sample["keypoints"][:, :2], expected, atol=1e-3)
        crop = denormalize(sample["pixel_values"]).astype(np.float64)
        original = np.asarray(row["image"].convert("RGB"), np.float64)
        assert np.abs(crop - original).mean() < 6.0  # same picture up to a 0.5 % rescale
        # UDP targets peak at keypoint * (48 - 1) / (192 - 1) (heatmap pixels)
        for k in np.flatnonzero(sample["target_weight"] > 0):
            peak = np.unravel_index(np.argmax(sample["target"][k]), (64, 48))
            np.testing.assert_allclose(peak[::-1], sample["keypoints"][k, :2] * [47 / 191, 63 / 255], atol=0.51)


def test_flip_mirrors_crop_and_swaps_pairs(dlc: Path) -> None:
    ds, skeleton = load_pose_dataset(dlc)
    plain = instance_dataset(ds, PoseTrainTransform.from_dataset(ds, augment=NO_AUG, box_source="content"))[3]
    flip = replace(NO_AUG, flip_prob=1.0)
    flipped = instance_dataset(ds, PoseTrainTransform.from_dataset(ds, augment=flip, box_source="content"))[3]
    assert skeleton.flip_pairs == ((1, 2),)  # leftear <-> rightear
    np.testing.assert_allclose(flipped["pixel_values"], plain["pixel_values"][:, :, ::-1], atol=0.02)
    swapped = plain["keypoints"][list(skeleton.flip_indices)]
    np.testing.assert_allclose(flipped["keypoints"][:, 0], 191.0 - swapped[:, 0], atol=1e-3)
    np.testing.assert_allclose(flipped["keypoints"][:, 1], swapped[:, 1], atol=1e-3)
    np.testing.assert_allclose(flipped["target"], plain["target"][list(skeleton.flip_indices)][:, :, ::-1], atol=1e-4)


def test_bbox_center_scale_matches_mmpose_xywh2cs(coco_real: Path) -> None:
    ds, _ = load_pose_dataset(coco_real)
    transform = PoseTrainTransform.from_dataset(ds, augment=replace(AugmentConfig(), center_jitter_prob=0.0))
    row = ds[1]
    for j, obj in enumerate(row["objects"]):
        x, y, w, h = obj["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(row["width"] - 1, x1 + max(0, w - 1)), min(row["height"] - 1, y1 + max(0, h - 1))
        w, h = x2 - x1, y2 - y1
        center = [x1 + w / 2, y1 + h / 2]
        w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
        c, s = transform.center_scale(obj["bbox"], row["width"], row["height"], row["image_id"], j)
        np.testing.assert_allclose(c, center, rtol=1e-5)
        np.testing.assert_allclose(s, [w / 200 * 1.25, h / 200 * 1.25], rtol=1e-5)
    # with the default jitter (p 0.3, +-20 %), the centre moves by at most 0.2 w / 0.2 h, and is fixed across epochs
    jittered = PoseTrainTransform.from_dataset(ds, seed=3)
    shifts = []
    for j, obj in enumerate(row["objects"]):
        c0, _ = transform.center_scale(obj["bbox"], row["width"], row["height"], row["image_id"], j)
        c1, _ = jittered.center_scale(obj["bbox"], row["width"], row["height"], row["image_id"], j)
        jittered.set_epoch(5)
        c2, _ = jittered.center_scale(obj["bbox"], row["width"], row["height"], row["image_id"], j)
        np.testing.assert_array_equal(c1, c2)
        shifts.append(np.abs(c1 - c0) / np.asarray(obj["bbox"][2:]))
    assert np.max(shifts) <= 0.2 + 1e-6
    obj = row["objects"][0]
    c0, _ = transform.center_scale(obj["bbox"], row["width"], row["height"], row["image_id"], 0)
    moved = sum(
        not np.array_equal(PoseTrainTransform.from_dataset(ds, seed=seed).center_scale(
            obj["bbox"], row["width"], row["height"], row["image_id"], 0)[0], c0)
        for seed in range(100))
    assert 15 <= moved <= 45  # p = 0.3


def test_mpii_roi_from_annotation(tmp_path: Path) -> None:
    folder = shared_path("real", "mpii")
    build_dataset("mpii", folder / "test_mpii.json", folder, tmp_path / "mpii", progress=False)
    ds, _ = load_pose_dataset(tmp_path / "mpii")
    transform = PoseTrainTransform.from_dataset(ds)
    assert transform.spec.box_source == "roi" and not transform.spec.augment.half_body
    src = json.loads((folder / "test_mpii.json").read_text())
    rows = {r["file_name"]: r for r in ds}
    for index, rec in enumerate(src):
        row = rows[rec["image"]]
        j = [o["id"] for o in row["objects"]].index(index)
        c, s = transform.center_scale(row["objects"][j]["bbox"], row["width"], row["height"], row["image_id"], j)
        np.testing.assert_allclose(c, [rec["center"][0] - 1, rec["center"][1] + 15 * rec["scale"] - 1], rtol=1e-5)
        np.testing.assert_allclose(s, [rec["scale"] * 1.25] * 2, rtol=1e-5)
    sample = instance_dataset(ds, transform)[0]
    assert sample["target"].shape == (16, 64, 48)


def test_instance_selection(coco_real: Path, tmp_path: Path) -> None:
    ds, _ = load_pose_dataset(coco_real)
    assert len(instance_dataset(ds, PoseTrainTransform.from_dataset(ds))) == 12  # 14 people, 12 with keypoints
    folder = shared_path("real", "coco_wholebody")
    build_dataset("coco_wholebody", folder / "test_coco_wholebody.json", shared_path("real", "coco"), tmp_path / "wb",
                  progress=False)
    wb, _ = load_pose_dataset(tmp_path / "wb")
    src = json.loads((folder / "test_coco_wholebody.json").read_text())
    with_body = sum(max(a["keypoints"]) > 0 for a in src["annotations"])  # mmpose: body keypoints decide
    transform = PoseTrainTransform.from_dataset(wb)
    assert transform.spec.labelled_range == (0, 17) and not transform.spec.augment.use_udp
    view = instance_dataset(wb, transform)
    assert len(view) == with_body
    assert view[0]["target"].shape == (133, 64, 48)
    # coco_mini crops: 5 single-point instances have a 0 x 0 box; box_source="content" keeps them
    crops = shared_path("mdt_mini", "crops", "coco_mini")
    build_dataset("coco-custom", crops / "coco_mini_train.json", crops, tmp_path / "cm", progress=False,
                  options=ConvertOptions(skeleton_name="coco_mini"))
    cm, _ = load_pose_dataset(tmp_path / "cm")
    assert len(instance_dataset(cm, PoseTrainTransform.from_dataset(cm))) == 112
    assert len(instance_dataset(cm, PoseTrainTransform.from_dataset(cm, box_source="content"))) == 117


def test_streaming_gives_the_same_samples(coco_real: Path) -> None:
    ds, _ = load_pose_dataset(coco_real)
    transform = PoseTrainTransform.from_dataset(ds, seed=11)
    mapped = {(s["image_id"], s["object_index"]): s for s in instance_dataset(ds, transform)}
    streamed = list(stream_instances(ds.to_iterable_dataset(num_shards=2), transform, batch_size=3))
    assert len(streamed) == len(mapped) == 12
    for s in streamed:
        ref = mapped[(s["image_id"], s["object_index"])]
        np.testing.assert_array_equal(np.asarray(s["pixel_values"]), ref["pixel_values"])
        np.testing.assert_array_equal(np.asarray(s["target"]), ref["target"])


def test_decode_ignores_exif_orientation_and_matches_pil(dlc: Path) -> None:
    ds, _ = load_pose_dataset(dlc)
    row = ds[0]
    import datasets

    raw = ds.cast_column("image", datasets.Image(decode=False))[0]["image"]
    ours = decode_image(raw)
    assert ours.shape == (row["height"], row["width"], 3)
    assert np.abs(ours.astype(int) - np.asarray(row["image"].convert("RGB"), int)).mean() < 1.5
