"""PoseBHPipeline: whole-image and boxed inference, flip averaging, skeleton routing, JSON schema."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from posebh_hf import PoseBHConfig, PoseBHForPoseEstimation, PoseBHPipeline, results_to_json
from posebh_hf.modeling import PoseBHOutput


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return PoseBHForPoseEstimation(PoseBHConfig.tiny())


class MirrorEquivariantModel(nn.Module):
    """Heatmaps = the input's first channel pooled to 64x48, identical for every keypoint: exactly equivariant to a
    horizontal flip (the channel swap is a no-op), so flip averaging must not move any keypoint."""

    def __init__(self, config: PoseBHConfig) -> None:
        super().__init__()
        self.config = config
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[int, tuple[str, ...]]] = []

    def forward(self, pixel_values, dataset_index=None, heads=None):
        self.calls.append((int(dataset_index[0]), tuple(heads)))
        pooled = nn.functional.avg_pool2d(pixel_values[:, :1], 4)
        return PoseBHOutput(heatmaps={n: pooled.expand(-1, self.config.get_skeleton(n).num_keypoints, -1, -1)
                                      for n in heads})


def blob_image() -> np.ndarray:
    image = np.zeros((200, 160, 3), np.uint8)
    image[60:70, 40:52] = 255  # one bright blob, off-centre so a wrong flip would move the peak
    return image


def test_flip_averaging_keeps_equivariant_predictions():
    model = MirrorEquivariantModel(PoseBHConfig.tiny())
    pipe = PoseBHPipeline(model)
    plain = pipe(blob_image(), skeletons=["coco"], flip=False)[0]["coco"]
    flipped = pipe(blob_image(), skeletons=["coco"], flip=True)[0]["coco"]
    assert np.allclose(plain["keypoints"], flipped["keypoints"], atol=1e-3)
    assert 40 <= plain["keypoints"][0, 0] <= 52 and 60 <= plain["keypoints"][0, 1] <= 70


def test_each_expert_gets_its_own_forward_pass():
    model = MirrorEquivariantModel(PoseBHConfig.tiny())
    pipe = PoseBHPipeline(model)
    pipe(blob_image(), boxes=[[10, 10, 100, 150]], skeletons=["coco", "ap10k", "aic"], flip=False)
    assert sorted(model.calls) == [(0, ("coco",)), (1, ("aic",)), (3, ("ap10k",))]


def test_boxes_and_skeletons_with_a_real_tiny_model(tiny_model):
    pipe = PoseBHPipeline(tiny_model)
    boxes = [[10, 20, 60, 120], [50, 30, 80, 90]]
    results = pipe(blob_image(), boxes=boxes, skeletons=["coco", "coco_wholebody"])
    assert len(results) == 2
    assert results[1]["coco_wholebody"]["keypoints"].shape == (133, 2)
    assert np.isfinite(results[0]["coco"]["keypoints"]).all()
    doc = results_to_json(results, boxes, ["coco", "coco_wholebody"], pipe, "blob.png", 160, 200)
    first = doc["instances"][0]["skeletons"]["coco"]["keypoints"][0]
    assert set(first) == {"name", "x", "y", "score"} and first["name"] == "nose"
    assert doc["instances"][1]["bbox"] == [50.0, 30.0, 80.0, 90.0]


def test_unknown_skeleton_and_bad_box(tiny_model):
    pipe = PoseBHPipeline(tiny_model)
    with pytest.raises(ValueError, match="unknown skeleton"):
        pipe(blob_image(), skeletons=["horse"])
    with pytest.raises(ValueError, match="outside"):
        pipe(blob_image(), boxes=[[1000, 0, 10, 10]])


def test_from_pretrained_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    pipe = PoseBHPipeline.from_pretrained(tmp_path)
    a = PoseBHPipeline(tiny_model)(blob_image(), skeletons=["mpii"])[0]["mpii"]["keypoints"]
    b = pipe(blob_image(), skeletons=["mpii"])[0]["mpii"]["keypoints"]
    assert np.allclose(a, b, atol=1e-4)


def test_processor_defaults_to_the_backbone_input_size(tmp_path):
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(image_size=[128, 96]))
    model.save_pretrained(tmp_path)  # no preprocessor_config.json
    pipe = PoseBHPipeline.from_pretrained(tmp_path)
    assert pipe.image_processor.input_size == (96, 128)
    assert pipe(blob_image(), skeletons=["coco"])[0]["coco"]["keypoints"].shape == (17, 2)


def test_grouped_expert_dispatch_is_the_default_and_changes_no_prediction():
    import copy

    from posebh_hf.modeling.fast_backbone import expert_dispatch

    torch.manual_seed(1)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny())
    fast = PoseBHPipeline(copy.deepcopy(model))
    reference = PoseBHPipeline(model, expert_dispatch="masked")
    assert expert_dispatch(fast.model) == "grouped" and expert_dispatch(reference.model) == "masked"
    boxes = [[10, 20, 60, 120], [50, 30, 80, 90]]
    names = ["coco", "ap10k", "coco_wholebody"]  # three experts in one call
    got, want = fast(blob_image(), boxes=boxes, skeletons=names), reference(blob_image(), boxes=boxes, skeletons=names)
    for g, w in zip(got, want, strict=True):
        for name in names:
            np.testing.assert_allclose(g[name]["keypoints"], w[name]["keypoints"], atol=1e-4)
            np.testing.assert_allclose(g[name]["scores"], w[name]["scores"], atol=1e-5)
    with pytest.raises(ValueError, match="expert_dispatch must be one of"):
        PoseBHPipeline(model, expert_dispatch="fastest")


# ---------------------------------------------------------------------------------------------- flip policy
RIG = {"name": "rig", "keypoints": ["nose_top", "tail_top", "nose_bot", "tail_bot"], "flip_pairs": []}


def rig_config() -> PoseBHConfig:
    return PoseBHConfig.tiny(dataset_names=["coco", "rig"], skeletons={"rig": RIG})


def test_flip_test_runs_only_for_skeletons_that_allow_it():
    model = MirrorEquivariantModel(rig_config())
    pipe = PoseBHPipeline(model)
    assert not pipe.skeleton("rig").allows_flip and pipe.skeleton("coco").allows_flip
    pipe(blob_image(), skeletons=["coco", "rig"], flip=True)
    # coco (expert 0): a plain and a mirrored pass; rig (expert 1): the plain pass only
    assert sorted(model.calls) == [(0, ("coco",)), (0, ("coco",)), (1, ("rig",))]
    assert pipe.flip_applies("coco") and not pipe.flip_applies("rig") and not pipe.flip_applies("coco", False)


def test_flip_true_on_a_mirror_rig_equals_no_flip():
    torch.manual_seed(0)
    pipe = PoseBHPipeline(PoseBHForPoseEstimation(rig_config()))
    a = pipe(blob_image(), skeletons=["rig"], flip=True)[0]["rig"]
    b = pipe(blob_image(), skeletons=["rig"], flip=False)[0]["rig"]
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
    # an explicit "flip_test": true turns it on for a skeleton without pairs
    forced = PoseBHPipeline(PoseBHForPoseEstimation(PoseBHConfig.tiny(
        dataset_names=["coco", "rig"], skeletons={"rig": {**RIG, "flip_test": True}})))
    assert forced.skeleton("rig").allows_flip


# ---------------------------------------------------------------------------------------------- inputs and scores
class HotModel(MirrorEquivariantModel):
    """Heatmaps peaking at 3.0: scores above 1 must be clipped where they are reported."""

    def forward(self, pixel_values, dataset_index=None, heads=None):
        out = super().forward(pixel_values, dataset_index, heads)
        return PoseBHOutput(heatmaps={n: h * 0 + 3.0 * (h > h.mean()).float() for n, h in out.heatmaps.items()})


def test_scores_are_clipped_to_unit_interval_unless_asked_for_raw():
    pipe = PoseBHPipeline(HotModel(PoseBHConfig.tiny()))
    clipped = pipe(blob_image(), skeletons=["coco"])[0]["coco"]["scores"]
    raw = pipe(blob_image(), skeletons=["coco"], clip_scores=False)[0]["coco"]["scores"]
    assert raw.max() > 1.0 and clipped.max() <= 1.0 and clipped.min() >= 0.0
    doc = results_to_json(pipe(blob_image(), skeletons=["coco"], clip_scores=False), None, ["coco"], pipe, "b", 160,
                          200)
    assert max(k["score"] for k in doc["instances"][0]["skeletons"]["coco"]["keypoints"]) <= 1.0


def test_paths_and_bytes_are_read_with_exif_orientation(tmp_path):
    from PIL import Image

    stored = np.zeros((160, 200, 3), np.uint8)  # stored landscape; EXIF 6 = shown rotated 90 degrees clockwise
    stored[60:70, 40:52] = 255
    exif = Image.Exif()
    exif[274] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    model = MirrorEquivariantModel(PoseBHConfig.tiny())
    pipe = PoseBHPipeline(model)
    from_path = pipe(path, skeletons=["coco"], flip=False)[0]["coco"]["keypoints"]
    from_bytes = pipe(path.read_bytes(), skeletons=["coco"], flip=False)[0]["coco"]["keypoints"]
    upright = np.rot90(stored, k=-1)  # what a viewer shows: 200 high, 160 wide
    from_array = pipe(upright, skeletons=["coco"], flip=False)[0]["coco"]["keypoints"]
    np.testing.assert_allclose(from_path, from_array, atol=2.0)
    np.testing.assert_allclose(from_bytes, from_path)
    with pytest.raises(ValueError, match="outside the 160x200 image"):
        pipe(path, boxes=[[170, 10, 20, 20]], skeletons=["coco"])  # inside the stored 200x160, not the shown photo


def test_16bit_arrays_and_pil_images_are_scaled_not_clipped():
    from PIL import Image

    wide = (blob_image()[:, :, 0].astype(np.uint16) * 200)  # 0 .. 51000
    pipe = PoseBHPipeline(MirrorEquivariantModel(PoseBHConfig.tiny()))
    eight = np.rint(wide / 257.0).astype(np.uint8)
    want = pipe(eight, skeletons=["coco"], flip=False)[0]["coco"]
    for given in (wide, Image.fromarray(wide)):
        got = pipe(given, skeletons=["coco"], flip=False)[0]["coco"]
        np.testing.assert_allclose(got["keypoints"], want["keypoints"])
        np.testing.assert_allclose(got["scores"], want["scores"])
