"""Every converter on the real samples in ../shared/data/real (and mdt_mini/raw for coco-custom).

Expected values are read from the source files with plain json/numpy here, independently of the converters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from posebh_hf.data.converters import ConvertOptions, ImageRecord, MalformedRecordError, read_corpus
from posebh_hf.data.converters.apt36k import split_apt36k
from posebh_hf.data.converters.interhand import world_to_pixel


def records(fmt: str, path: Path, **options) -> list[ImageRecord]:
    corpus = read_corpus(fmt, path, ConvertOptions(**options))
    items = list(corpus.records)
    errors = [i for i in items if isinstance(i, MalformedRecordError)]
    assert not errors, errors
    return items


def objects(items: list[ImageRecord]) -> dict[int, dict]:
    return {o["id"]: o for r in items for o in r.objects}


def check_coco_style(fmt: str, path: Path, n_images: int, n_instances: int, n_with_kpts: int) -> list[ImageRecord]:
    """Counts, boxes and keypoints equal to the COCO-style source file."""
    src = json.loads(path.read_text())
    items = records(fmt, path)
    assert len(items) == n_images == len(src["images"])
    got = objects(items)
    assert len(got) == n_instances == len(src["annotations"])
    assert sum(o["num_keypoints"] > 0 for o in got.values()) == n_with_kpts
    for ann in src["annotations"]:
        obj = got[ann["id"]]
        np.testing.assert_allclose(obj["keypoints"].reshape(-1), ann["keypoints"], rtol=1e-6)
        np.testing.assert_allclose(obj["bbox"], ann["bbox"], rtol=1e-6)
        assert obj["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3])
    by_id = {im["id"]: im for im in src["images"]}
    for rec in items:
        assert (rec.width, rec.height, rec.file_name) == (by_id[rec.image_id]["width"], by_id[rec.image_id]["height"],
                                                          by_id[rec.image_id]["file_name"])
    return items


def test_coco() -> None:
    check_coco_style("coco", shared_path("real", "coco", "test_coco.json"), 4, 14, 12)


def test_ochuman() -> None:
    check_coco_style("ochuman", shared_path("real", "ochuman", "test_ochuman.json"), 3, 5, 5)


def test_ap10k_keeps_species() -> None:
    items = check_coco_style("ap10k", shared_path("real", "ap10k", "test_ap10k.json"), 2, 2, 2)
    assert sorted(o["category_id"] for r in items for o in r.objects) == [1, 26]


def test_crowdpose_crowd_index() -> None:
    path = shared_path("real", "crowdpose", "test_crowdpose.json")
    items = check_coco_style("crowdpose", path, 2, 5, 4)
    src = {im["id"]: im["crowdIndex"] for im in json.loads(path.read_text())["images"]}
    assert {r.image_id: r.extras["crowd_index"] for r in items} == pytest.approx(src)


def test_aic_coco_style_and_native_agree(tmp_path: Path) -> None:
    path = shared_path("real", "aic", "test_aic.json")
    items = check_coco_style("aic", path, 3, 9, 9)
    src = json.loads(path.read_text())
    # The native AIC layout of the same people: hash image ids, xyxy boxes, visibility 1 visible/2 occluded/3 none.
    to_native = {2: 1, 1: 2, 0: 3}
    native = []
    for image in src["images"]:
        anns = [a for a in src["annotations"] if a["image_id"] == image["id"]]
        kp = {f"human{i + 1}": [v if j % 3 != 2 else to_native[v] for j, v in enumerate(a["keypoints"])]
              for i, a in enumerate(anns)}
        boxes = {f"human{i + 1}": [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                 for i, a in enumerate(anns)}
        native.append({"image_id": image["file_name"][:-4], "keypoint_annotations": kp, "human_annotations": boxes})
    file = tmp_path / "keypoint_validation_annotations.json"
    file.write_text(json.dumps(native))
    native_items = records("aic", file)
    assert [r.file_name for r in native_items] == [im["file_name"] for im in src["images"]]
    assert all(r.width is None for r in native_items)  # read from the image headers by the builder
    got = [o for r in native_items for o in r.objects]
    ref = [o for r in items for o in r.objects]
    assert len(got) == len(ref) == 9
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a["keypoints"], b["keypoints"])
        np.testing.assert_allclose(a["bbox"], b["bbox"])


def test_coco_wholebody_order_and_parts() -> None:
    path = shared_path("real", "coco_wholebody", "test_coco_wholebody.json")
    src = json.loads(path.read_text())
    items = records("coco_wholebody", path)
    got = objects(items)
    assert len(items) == 4 and len(got) == 14
    for ann in src["annotations"]:
        flat = ann["keypoints"] + ann["foot_kpts"] + ann["face_kpts"] + ann["lefthand_kpts"] + ann["righthand_kpts"]
        obj = got[ann["id"]]
        assert obj["keypoints"].shape == (133, 3)
        np.testing.assert_allclose(obj["keypoints"].reshape(-1), flat, rtol=1e-6)
        np.testing.assert_allclose(obj["keypoints"][91:112].reshape(-1), ann["lefthand_kpts"], rtol=1e-6)
        np.testing.assert_allclose(obj["righthand_box"], ann["righthand_box"], rtol=1e-6)
        assert obj["lefthand_valid"] == ann["lefthand_valid"] and obj["foot_valid"] == ann["foot_valid"]


def test_mpii_joints_boxes_and_head_boxes() -> None:
    path = shared_path("real", "mpii", "test_mpii.json")
    heads = shared_path("real", "mpii", "mpii_val_headboxes_first5.json")
    src = json.loads(path.read_text())
    items = records("mpii", path, head_boxes=heads)
    got = objects(items)
    assert len(items) == 5 and len(got) == 5
    head_src = json.loads(heads.read_text())["entries"]
    for index, rec in enumerate(src):
        obj = got[index]
        vis = np.asarray(rec["joints_vis"]) > 0
        np.testing.assert_allclose(obj["keypoints"][vis, :2], np.asarray(rec["joints"])[vis] - 1, rtol=1e-6)
        assert np.all(obj["keypoints"][vis, 2] == 2) and np.all(obj["keypoints"][~vis] == 0)
        # the ROI the reference trains on: centre (1-based -> 0-based, y + 15 s), side 1.25 s * 200
        s = rec["scale"]
        side = 1.25 * s * 200
        center = np.array(rec["center"]) - 1 + [0, 15 * s]
        np.testing.assert_allclose(obj["bbox"], [*(center - side / 2), side, side], rtol=1e-5)
        np.testing.assert_allclose(obj["head_box"], np.asarray(head_src[index]["headbox"]).reshape(-1), rtol=1e-6)
        assert obj["scale"] == pytest.approx(s)
    assert {r.file_name for r in items} == {rec["image"] for rec in src}


def test_interhand_projection_by_hand() -> None:
    folder = shared_path("real", "interhand2.6m")
    data = json.loads((folder / "test_interhand2.6m_data.json").read_text())
    cams = json.loads((folder / "test_interhand2.6m_camera.json").read_text())
    joints = json.loads((folder / "test_interhand2.6m_joint_3d.json").read_text())
    items = records("interhand", folder / "test_interhand2.6m_data.json")
    hands = [o for r in items for o in r.objects]
    assert len(hands) == 6  # 2 interacting images x 2 + one right + one left (README)
    assert sorted(o["hand_type"] for o in hands) == ["left"] * 3 + ["right"] * 3
    # One joint by hand: image 2017 (right hand only), joint 3 ("thumb1"), written out without matrices.
    image = next(im for im in data["images"] if im["frame_idx"] == 2017)
    cap, cam = str(image["capture"]), image["camera"]
    R = cams[cap]["camrot"][cam]
    t = cams[cap]["campos"][cam]
    f, c = cams[cap]["focal"][cam], cams[cap]["princpt"][cam]
    X = joints[cap]["2017"]["world_coord"][3]
    d = [X[0] - t[0], X[1] - t[1], X[2] - t[2]]
    xc = R[0][0] * d[0] + R[0][1] * d[1] + R[0][2] * d[2]
    yc = R[1][0] * d[0] + R[1][1] * d[1] + R[1][2] * d[2]
    zc = R[2][0] * d[0] + R[2][1] * d[1] + R[2][2] * d[2]
    u, v = f[0] * xc / zc + c[0], f[1] * yc / zc + c[1]
    rec = next(r for r in items if r.image_id == image["id"])
    (hand,) = rec.objects
    assert hand["hand_type"] == "right"
    np.testing.assert_allclose(hand["keypoints"][3, :2], [u, v], atol=1e-3)
    assert 0 <= u < image["width"] and 0 <= v < image["height"]
    # Tight boxes lie inside the annotation's (padded) hand box of the single-hand images: an independent check.
    for r in items:
        ann = next(a for a in data["annotations"] if a["image_id"] == r.image_id)
        if ann["hand_type"] in ("right", "left"):
            (only,) = r.objects
            x, y, w, h = ann["bbox"]
            bx, by, bw, bh = only["bbox"]
            assert x - 1 <= bx and y - 1 <= by and bx + bw <= x + w + 1 and by + bh <= y + h + 1
    # world_to_pixel agrees with the by-hand formula for all joints of that frame
    px = world_to_pixel(np.asarray(joints[cap]["2017"]["world_coord"]), np.asarray(R), np.asarray(t),
                        np.asarray(f), np.asarray(c))
    np.testing.assert_allclose(px[3], [u, v], rtol=1e-9)


def test_pw3d_visibility(tmp_path: Path) -> None:
    folder = shared_path("real", "3dpw")
    box = np.load(folder / "sample_3dpw_train.npz", allow_pickle=False)["bbox_xywh"][0].tolist()
    kpts = []
    for k in range(24):  # preprocess_3dpw.py layout: x, y, in-image flag (0/1)
        kpts += [300.0 + k, 900.0 + 10 * k, float(k % 3 != 0)]
    src = {"images": [{"id": 311, "file_name": "courtyard_rangeOfMotions_00/image_00311.jpg", "width": 1080,
                       "height": 1920}],
           "annotations": [{"id": 1, "image_id": 311, "bbox": box, "keypoints": kpts, "num_keypoints": 16,
                            "iscrowd": 0, "category_id": 1}],
           "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(24)]}]}
    path = tmp_path / "pw3d_test.json"
    path.write_text(json.dumps(src))
    (item,) = records("pw3d", path)
    obj = item.objects[0]
    assert read_corpus("pw3d", path).skeleton.name == "smpl24"
    np.testing.assert_allclose(obj["keypoints"][:, :2], np.asarray(kpts).reshape(24, 3)[:, :2])
    assert obj["keypoints"][:, 2].tolist() == [0.0 if k % 3 == 0 else 2.0 for k in range(24)]
    assert obj["num_keypoints"] == 16


def test_apt36k_convert_and_video_split(tmp_path: Path) -> None:
    # No public APT-36K sample: the AP-10K sample (same layout) with video ids and Windows paths, as released.
    src = json.loads(shared_path("real", "ap10k", "test_ap10k.json").read_text())
    raw = {"info": src["info"], "license": src["licenses"], "categories": src["categories"][::-1],
           "images": [], "annotations": []}
    # category "cat": 10 frames of videos 1,1,1,2,2,2,3,4,4,5 -> cuts int(11*0.7)=7, int(11*0.8)=8: train slice
    # 1,1,1,2,2,2,3, val slice 4, test slice 4,5; video 4 straddles val/test and goes wholly to val.
    videos = [1, 1, 1, 2, 2, 2, 3, 4, 4, 5] + [9, 9]  # + category "dog": 2 frames of video 9 -> train
    for i, vid in enumerate(videos):
        cat = "cat" if i < 10 else "dog"
        name = "clip46√" if i == 0 else f"clip{vid}"
        raw["images"].append({"id": i, "file_name": f"D:\\apt\\{cat}\\{name}\\{i}.jpg", "video_id": vid,
                              "width": 10, "height": 10})
        raw["annotations"].append({"id": 100 + i, "image_id": i, "video_id": vid, "is_crowd": 0, "bbox": [1, 1, 5, 5],
                                   "keypoints": [0] * 51, "num_keypoints": 0, "category_id": 1})
    path = tmp_path / "apt36k_annotations.json"
    path.write_text(json.dumps(raw, ensure_ascii=False))
    counts = split_apt36k(path, tmp_path / "out")
    assert counts == {"train": (9, 9), "val": (2, 2), "test": (1, 1)}
    train = json.loads((tmp_path / "out" / "apt36k_train.json").read_text())
    assert train["images"][0]["file_name"] == "cat/clip46б╠/0.jpg"  # on-disk name of a mis-encoded folder
    assert all("iscrowd" in a and "is_crowd" not in a for a in train["annotations"])
    assert [c["id"] for c in train["categories"]] == sorted(c["id"] for c in src["categories"])
    # The converter reads a split file with its video ids.
    ap = dict(src)
    ap["images"] = [{**im, "video_id": 7 + k} for k, im in enumerate(src["images"])]
    ap["annotations"] = [{**{k: v for k, v in a.items() if k != "iscrowd"}, "is_crowd": 1} for a in src["annotations"]]
    split_file = tmp_path / "apt36k_val.json"
    split_file.write_text(json.dumps(ap))
    items = records("apt36k", split_file)
    assert sorted(r.extras["video_id"] for r in items) == [7, 8]
    assert all(o["iscrowd"] == 1 for r in items for o in r.objects)


@pytest.mark.parametrize("dataset", ["lspe", "coco_mini"])
def test_coco_custom_on_mdt_mini_raw(dataset: str) -> None:
    folder = shared_path("mdt_mini", "raw", dataset, "annotations")
    for path in sorted(folder.glob("*.json")):
        src = json.loads(path.read_text())
        corpus = read_corpus("coco-custom", path)
        assert corpus.skeleton.keypoint_names == tuple(src["categories"][0]["keypoints"])
        if "flip_pairs" in src["categories"][0]:
            assert [list(p) for p in corpus.skeleton.flip_pairs] == src["categories"][0]["flip_pairs"]
        else:  # coco_mini: inferred from the left_/right_ names = COCO's pairs
            assert corpus.skeleton.flip_pairs == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
        items = [r for r in corpus.records]
        got = objects(items)
        assert len(items) == len(src["images"]) and len(got) == len(src["annotations"])
        for ann in src["annotations"]:
            np.testing.assert_allclose(got[ann["id"]]["keypoints"].reshape(-1), ann["keypoints"], rtol=1e-6)
