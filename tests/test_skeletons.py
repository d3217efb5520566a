"""Skeletons: built-ins match the spec's tables; user definitions are validated with specific errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_path

from posebh_hf.skeletons import (
    DEFAULT_SIGMA,
    Skeleton,
    SkeletonError,
    get_skeleton,
    infer_flip_pairs,
    list_skeletons,
)

EXPECTED_K = {"coco": 17, "aic": 14, "mpii": 16, "ap10k": 17, "apt36k": 17, "coco_wholebody": 133, "crowdpose": 14,
              "ochuman": 17, "smpl24": 24, "interhand": 21}


def test_all_builtins_present_with_official_sizes():
    assert set(EXPECTED_K) <= set(list_skeletons())
    for name, k in EXPECTED_K.items():
        s = get_skeleton(name)
        assert s.num_keypoints == k
        assert len(s.joint_weights) == k
        flip = s.flip_indices
        assert [flip[flip[i]] for i in range(k)] == list(range(k)), f"{name}: flip is not an involution"


@pytest.mark.parametrize("name", sorted(EXPECTED_K))
def test_flip_pairs_swap_left_and_right(name):
    s = get_skeleton(name)
    for a, b in s.flip_pairs:
        na, nb = s.keypoint_names[a], s.keypoint_names[b]
        if name == "coco_wholebody" and na.startswith("face-"):
            continue  # face landmarks carry numbers, not sides
        assert {s.keypoint_side(a), s.keypoint_side(b)} == {"left", "right"}, (na, nb)


def test_spec_tables_spot_checks():
    coco = get_skeleton("coco")
    assert coco.keypoint_names[0] == "nose" and coco.keypoint_names[16] == "right_ankle"
    assert coco.sigmas[11] == pytest.approx(0.107)
    assert coco.upper_body_ids == tuple(range(11))
    aic = get_skeleton("aic")
    assert aic.keypoint_names[12:] == ("head_top", "neck") and aic.sigmas[0] == pytest.approx(0.01388152)
    mpii = get_skeleton("mpii")
    assert mpii.keypoint_names[6:8] == ("pelvis", "thorax") and (10, 15) in mpii.flip_pairs
    wb = get_skeleton("coco_wholebody")
    assert wb.parts == {"body": (0, 17), "foot": (17, 23), "face": (23, 91), "lefthand": (91, 112),
                        "righthand": (112, 133)}
    assert wb.sigmas[:17] == coco.sigmas and wb.sigmas[17] == pytest.approx(0.068)
    assert wb.sigmas[91:112] == wb.sigmas[112:133] and wb.sigmas[23] == pytest.approx(0.042)
    assert (23, 39) in wb.flip_pairs and (91, 112) in wb.flip_pairs and len(wb.flip_pairs) == 61
    assert get_skeleton("interhand").flip_pairs == () and get_skeleton("interhand").sigmas is None
    assert get_skeleton("ap10k").keypoint_names == get_skeleton("apt36k").keypoint_names


def test_round_trip_through_json(tmp_path):
    for name in list_skeletons():
        s = get_skeleton(name)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(s.to_dict()))
        assert Skeleton.from_json(path) == s


def test_user_skeleton_infers_flip_pairs_from_names(tmp_path):
    path = tmp_path / "quad.json"
    path.write_text(json.dumps({"name": "quad", "keypoints": ["nose", "left_ear", "right_ear", "L_paw", "R_paw", "tail"],
                                "skeleton": [[1, 2], [1, 3], [1, 6]]}))
    s = get_skeleton(path)
    assert s.flip_pairs == ((1, 2), (3, 4))
    assert s.edges == ((0, 1), (0, 2), (0, 5))
    assert s.sigmas is None and np.allclose(s.oks_sigmas(), DEFAULT_SIGMA)
    assert infer_flip_pairs(["a_l", "a_r", "b"]) == ((0, 1),)


def test_from_coco_category_mdt_mini_files():
    root = shared_path("mdt_mini", "crops")
    for ds in ("lspe", "coco_mini", "bee", "mirror_mouse", "dlc_openfield"):
        data = json.loads((root / ds / f"{ds}_train.json").read_text())
        cat = data["categories"][0]
        s = Skeleton.from_coco_category(cat, name=ds)
        assert s.num_keypoints == len(cat["keypoints"])
        if cat.get("flip_pairs") is not None:
            assert [list(p) for p in s.flip_pairs] == [list(p) for p in cat["flip_pairs"]]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"keypoints": []}, "'keypoints' is empty"),
        ({"keypoints": ["a", "a"]}, "duplicate keypoint names"),
        ({"skeleton": [[0, 1]]}, "1-based"),
        ({"skeleton": [[1, 9]]}, "not a keypoint index"),
        ({"flip_pairs": [[0, 0]]}, "with itself"),
        ({"flip_pairs": [[0, 1], [1, 2]]}, "appears in flip pairs"),
        ({"sigmas": [0.1, 0.1]}, "'sigmas' has 2 values for 3 keypoints"),
        ({"sigmas": [0.1, float("nan"), 0.1]}, "finite and > 0"),
        ({"name": "bad name!"}, "'name' must be"),
        ({"parts": {"x": [2, 1]}}, "part 'x'"),
        ({"flip_test": "no"}, "'flip_test' must be true or false"),
        ({"flip_test": 1}, "'flip_test' must be true or false"),
    ],
)
def test_invalid_definitions_raise_specific_errors(patch, message):
    base = {"name": "tri", "keypoints": ["a", "b", "c"], "skeleton": [[1, 2]]}
    base.update(patch)
    with pytest.raises(SkeletonError, match=message):
        Skeleton.from_dict(base, source="test.json")


def test_unknown_name_and_bad_file(tmp_path):
    with pytest.raises(SkeletonError, match="unknown skeleton 'nope'"):
        get_skeleton("nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SkeletonError, match="not valid JSON"):
        get_skeleton(bad)
    with pytest.raises(SkeletonError, match="does not exist"):
        get_skeleton(tmp_path / "missing.json")
    with pytest.raises(SkeletonError, match="no 'keypoints'"):
        Skeleton.from_coco_category({"id": 1, "name": "person"})


def test_edge_colours_by_side():
    s = get_skeleton("coco")
    colours = s.colors()
    assert len(colours) == len(s.edges) and len(set(colours)) == 3


# ---------------------------------------------------------------------------------------------- flip policy
def test_flip_policy_defaults_to_having_flip_pairs():
    for name in list_skeletons():
        skeleton = get_skeleton(name)
        # every built-in with pairs is flipped; interhand (one hand, no pairs) is flipped as mmpose's test_cfg does
        assert skeleton.allows_flip, name
    assert get_skeleton("interhand").flip_test is True and not get_skeleton("interhand").flip_pairs
    assert get_skeleton("coco").flip_test is None and "flip_test" not in get_skeleton("coco").to_dict()
    paired = Skeleton.from_dict({"name": "p", "keypoints": ["left_eye", "right_eye", "nose"]})
    assert paired.flip_pairs == ((0, 1),) and paired.allows_flip
    mid_line = Skeleton.from_dict({"name": "m", "keypoints": ["nose", "spine", "tail"]})
    assert not mid_line.allows_flip  # conservative: no pairs -> never flipped unless declared
    assert Skeleton.from_dict({"name": "m", "keypoints": ["nose", "tail"], "flip_test": True}).allows_flip
    vetoed = Skeleton.from_dict({"name": "v", "keypoints": ["left_eye", "right_eye"], "flip_test": False})
    assert vetoed.flip_pairs and not vetoed.allows_flip


def test_flip_policy_round_trips_and_survives_renaming(tmp_path):
    s = Skeleton.from_dict({"name": "rig", "keypoints": ["a_top", "a_bot"], "flip_test": False})
    assert Skeleton.from_dict(s.to_dict()) == s and s.to_dict()["flip_test"] is False
    assert s.renamed("other").flip_test is False
    path = tmp_path / "rig.json"
    path.write_text(json.dumps(s.to_dict()))
    assert get_skeleton(path).allows_flip is False


def test_mirror_mouse_from_its_coco_file_is_not_flipped():
    root = shared_path("mdt_mini", "crops")
    data = json.loads((root / "mirror_mouse" / "mirror_mouse_train.json").read_text())
    skeleton = Skeleton.from_coco_category(data["categories"][0], name="mirror_mouse")
    assert skeleton.flip_pairs == () and not skeleton.allows_flip
    coco_mini = json.loads((root / "coco_mini" / "coco_mini_train.json").read_text())
    assert Skeleton.from_coco_category(coco_mini["categories"][0], name="coco_mini").allows_flip
