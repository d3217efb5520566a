"""Dataset merging by keypoint mapping (`data.datasets[*].keypoint_mapping`): index maps, config checks, samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from posebh_hf.data.keypoint_mapping import KeypointMappedTransform, keypoint_index_map
from posebh_hf.skeletons import Skeleton, get_skeleton
from posebh_hf.training import load_train_config
from posebh_hf.training.config import ConfigError
from posebh_hf.training.train_data import build_train_data, load_source

REPO = Path(__file__).resolve().parents[1]

LSP_NAMES = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
             "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top"]


def _lsp() -> Skeleton:
    return Skeleton(name="lspe", keypoint_names=tuple(LSP_NAMES))


def test_by_name_maps_the_twelve_shared_limb_joints() -> None:
    coco, lsp = get_skeleton("coco"), _lsp()
    index = keypoint_index_map(lsp, coco)
    names = list(coco.keypoint_names)
    assert (index >= 0).sum() == 12
    assert index[names.index("left_wrist")] == LSP_NAMES.index("left_wrist")
    assert all(index[names.index(n)] == -1 for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"))
    back = keypoint_index_map(coco, lsp)  # the other direction: neck and head_top stay unlabelled
    assert (back >= 0).sum() == 12 and back[LSP_NAMES.index("neck")] == -1


def test_explicit_mapping_and_its_errors() -> None:
    coco, lsp = get_skeleton("coco"), _lsp()
    index = keypoint_index_map(lsp, coco, {"head_top": "nose"})
    assert index.tolist().count(-1) == 16 and index[0] == LSP_NAMES.index("head_top")
    with pytest.raises(ValueError, match="'chin' is not a keypoint of lspe"):
        keypoint_index_map(lsp, coco, {"chin": "nose"})
    with pytest.raises(ValueError, match="'nose' is mapped twice"):
        keypoint_index_map(lsp, coco, {"neck": "nose", "head_top": "nose"})
    with pytest.raises(ValueError, match="shares no keypoint"):
        keypoint_index_map(Skeleton(name="bee", keypoint_names=("head", "tail")), coco)
    with pytest.raises(ValueError, match="unknown"):
        keypoint_index_map(lsp, coco, "by_position")


def test_mapped_transform_remaps_before_augmenting() -> None:
    coco, lsp = get_skeleton("coco"), _lsp()
    transform = KeypointMappedTransform(lsp, coco, keypoint_index_map(lsp, coco), dataset_index=1,
                                        preset="coco", seed=0)
    kpts = np.zeros((14, 3), np.float32)
    kpts[:, :2] = np.random.default_rng(0).uniform(60, 140, size=(14, 2))
    kpts[:, 2] = 2
    obj = {"keypoints": kpts.reshape(-1).tolist(), "bbox": [40.0, 40.0, 120.0, 120.0]}
    sample = transform.encode(np.zeros((200, 200, 3), np.uint8), obj, 200, 200, image_id=7, object_index=0)
    assert sample["dataset_index"] == 1 and sample["keypoints"].shape == (17, 3)
    weights = np.asarray(sample["target_weight"]).reshape(-1)
    assert weights[:5].sum() == 0  # face keypoints have no LSP source
    assert weights[5:].sum() > 0


def _config(tmp_path: Path, mapping: str, ratios: bool = True) -> list[str]:
    crops = shared_path("mdt_mini", "crops")
    ratio = ", ratio: 1.0" if ratios else ""
    return [f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}", "data.datasets=[]",
            f"data.datasets.0={{name: lspe, train: {crops / 'lspe' / 'lspe_val.json'}{ratio}}}",
            f"data.datasets.1={{name: coco_mini, skeleton: coco, train: "
            f"{crops / 'coco_mini' / 'coco_mini_train.json'}{ratio}, keypoint_mapping: {mapping}}}",
            "data.batch_size=8", "data.augment={input_size: [48, 64], heatmap_size: [12, 16]}",
            "schedule.steps_per_epoch=4"]


def test_merged_pool_trains_the_target_head_on_the_source_images(tmp_path: Path) -> None:
    cfg = load_train_config(REPO / "configs" / "smoke.yaml",
                            _config(tmp_path, "{lspe: {keypoints: by_name, ratio: 2.0}}"))
    sources = [load_source(spec, "train", Path(cfg.data.cache_dir)) for spec in cfg.data.datasets]
    data = build_train_data(cfg.data, Path(cfg.data.cache_dir), seed=0, rank=0, world_size=1, steps_per_epoch=4,
                            sources=sources)
    assert len(data.mixed.parts) == 3  # lspe, coco_mini, lspe-as-coco
    assert data.mixed.sizes[2] == data.mixed.sizes[0]
    mapped = [data.mixed[i] for i in range(int(data.mixed.offsets[2]), int(data.mixed.offsets[2]) + 4)]
    assert all(s["dataset_index"] == 1 for s in mapped)
    weights = np.stack([np.asarray(s["target_weight"]).reshape(-1) for s in mapped])
    assert weights.shape[1] == 17 and weights[:, :5].sum() == 0 and weights[:, 5:].sum() > 0
    counts = np.zeros(3)
    for batch in data.sampler:
        for i in batch:
            counts[data.mixed.locate(int(i))[0]] += 1
    assert counts[2] > counts[1]  # ratio 2 : 1


def test_config_refuses_bad_mappings(tmp_path: Path) -> None:
    smoke = REPO / "configs" / "smoke.yaml"
    with pytest.raises(ConfigError, match="needs a 'ratio'"):
        load_train_config(smoke, _config(tmp_path, "{lspe: {keypoints: by_name}}"))
    with pytest.raises(ConfigError, match="not a configured dataset"):
        load_train_config(smoke, _config(tmp_path, "{mpii: {ratio: 1.0}}"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_train_config(smoke, _config(tmp_path, "{lspe: by_name}"))
