"""The model carries how each skeleton is decoded (`PoseBHConfig.decoding`): a converted released checkpoint decodes
coco/mpii with UDP + DARK and aic/ap10k with the classic rule (plain affine crop, +-0.25 refinement, 1-px flip
shift), end to end through `posebh predict`; training writes the table of its own targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_conversion import make_official_state_dict

from posebh_hf import PoseBHConfig, PoseBHForPoseEstimation
from posebh_hf.cli import main
from posebh_hf.codecs import decode_heatmaps, flip_back_heatmaps
from posebh_hf.codecs.projection import heatmap_to_image
from posebh_hf.configuration_posebh import released_decoding
from posebh_hf.processing_posebh import PoseBHImageProcessor


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    torch.save(make_official_state_dict(), root / "tiny.pth")
    assert main(["convert", "official", "--src", str(root / "tiny.pth"), "--dst", str(root / "model"),
                 "--variant", "tiny"]) == 0
    return root / "model"


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "person.png"
    Image.fromarray((np.random.default_rng(3).random((150, 110, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_conversion_writes_the_released_table(converted):
    config = PoseBHConfig.from_pretrained(converted)
    assert config.decoding == {"coco": "udp", "aic": "default", "mpii": "udp", "ap10k": "default",
                               "apt36k": "default", "coco_wholebody": "default"}
    assert config.codec_for("aic").use_udp is False and config.codec_for("mpii").use_udp is True
    assert config.codec_for("coco").shift_heatmap is False and config.codec_for("ap10k").shift_heatmap is True


def _reference(model, image: np.ndarray, box, name: str, udp: bool) -> np.ndarray:
    """The protocol by hand: crop (UDP or plain affine), forward + flipped forward, flip-back (shifted unless UDP),
    decode (DARK/UDP or +-0.25), back to image pixels (size - 1 or size)."""
    height, width = model.config.backbone_config.image_size
    processor = PoseBHImageProcessor(size={"height": height, "width": width})
    pixels = processor([image], [[box]], udp=udp)["pixel_values"]
    index = torch.tensor([model.config.dataset_index_of(name)])
    with torch.no_grad():
        plain = model(pixels, dataset_index=index, heads=[name]).heatmaps[name].numpy()
        mirrored = model(pixels.flip(-1), dataset_index=index, heads=[name]).heatmaps[name].numpy()
    flip_indices = model.config.get_skeleton(name).flip_indices
    heat = (plain + flip_back_heatmaps(mirrored, flip_indices, shift=not udp)) * 0.5
    coords, _ = decode_heatmaps(heat.astype(np.float32), mode="udp" if udp else "default")
    center, scale = processor.boxes_to_center_scale(np.asarray([box], np.float32))
    return heatmap_to_image(coords, center, scale, (heat.shape[-1], heat.shape[-2]), udp=udp)[0]


@pytest.mark.parametrize(("name", "udp"), [("coco", True), ("mpii", True), ("aic", False), ("ap10k", False)])
def test_predict_decodes_each_skeleton_as_released(capsys, converted, photo, name, udp):
    box = [10.0, 12.0, 80.0, 120.0]
    assert main(["predict", str(photo), "--model", str(converted), "--skeleton", name,
                 "--box", ",".join(map(str, box))]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = np.array([[k["x"], k["y"]] for k in doc["instances"][0]["skeletons"][name]["keypoints"]])
    model = PoseBHForPoseEstimation.from_pretrained(converted).eval()
    image = np.asarray(Image.open(photo).convert("RGB"))
    expected = _reference(model, image, box, name, udp)
    other = _reference(model, image, box, name, not udp)
    np.testing.assert_allclose(got, expected, atol=0.01)  # predict rounds to 2 decimals
    assert np.abs(got - other).max() > 0.05  # the other rule gives other keypoints: the test can tell them apart


def test_released_table_and_validation():
    assert released_decoding(["coco", "aic", "mpii", "mine"]) == {"coco": "udp", "aic": "default", "mpii": "udp",
                                                                  "mine": "default"}
    with pytest.raises(ValueError, match="expected one of"):
        PoseBHConfig.tiny(decoding={"aic": "dark"})
    with pytest.raises(ValueError, match="not one of this model's skeletons"):
        PoseBHConfig.tiny(decoding={"crowdpose": "udp"})


def test_pipeline_post_processing_is_post_process_pose_estimation(monkeypatch, converted, photo):
    """The pipeline turns heatmaps into keypoints only through the processor's transformers-style method."""
    from posebh_hf import PoseBHPipeline

    pipe = PoseBHPipeline.from_pretrained(converted)
    calls: list[str] = []
    original = PoseBHImageProcessor.post_process_pose_estimation

    def spy(self, outputs, boxes, dataset):
        calls.append(dataset)
        return original(self, outputs, boxes, dataset)

    monkeypatch.setattr(PoseBHImageProcessor, "post_process_pose_estimation", spy)
    result = pipe(str(photo), boxes=[[10.0, 12.0, 80.0, 120.0]], skeletons=["coco", "aic"], flip=True)
    assert sorted(calls) == ["aic", "coco"] and result is not None
    codec = pipe.image_processor.codec_for("aic", (48, 64))
    assert codec.decoding == "default" and codec.shift_heatmap  # flip-back shift of the classic rule
    assert pipe.image_processor.codec_for("coco", (48, 64)).decoding == "udp"


def test_validation_decodes_with_the_model_codec_and_refuses_a_mismatch():
    """Training validation asks the model how a head decodes; crops cut with another rule are refused."""
    from torch.utils.data import Dataset

    from posebh_hf.codecs import HeatmapCodec
    from posebh_hf.skeletons import get_skeleton
    from posebh_hf.training.validation import ValidationSet, predict_crops

    class Crops(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> dict:
            return {"pixel_values": torch.zeros(3, 256, 192), "target": torch.zeros(17, 64, 48),
                    "target_weight": torch.ones(17), "keypoints": torch.zeros(17, 3), "dataset_index": 0,
                    "image_id": i, "object_index": 0}

    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(decoding={"aic": "default"})).eval()
    udp_crops = ValidationSet("coco", 0, Crops(), HeatmapCodec(use_udp=True), get_skeleton("coco"))
    pred, scores, gt = predict_crops(model, udp_crops)
    assert pred.shape == (2, 17, 2) and scores.shape == (2, 17) and gt.shape == (2, 17, 3)
    model.config.decoding = {"coco": "default"}
    with pytest.raises(ValueError, match="decodes with 'default' but the 'coco' crops were cut with 'udp'"):
        predict_crops(model, udp_crops)
