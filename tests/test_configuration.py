"""PoseBHConfig: defaults from the spec, the tiny preset, JSON round trips and validation errors."""

from __future__ import annotations

import pytest
from transformers import AutoConfig, VitPoseBackboneConfig

from posebh_hf.configuration_posebh import DEFAULT_DATASETS, PoseBHConfig, backbone_config_for
from posebh_hf.skeletons import Skeleton, get_skeleton

CUSTOM = Skeleton(name="stick", keypoint_names=("top", "left_end", "right_end"), flip_pairs=((1, 2),),
                  edges=((0, 1), (0, 2)))


def test_default_config_matches_spec() -> None:
    config = PoseBHConfig()
    assert config.model_type == "posebh"
    assert config.dataset_names == list(DEFAULT_DATASETS)
    assert config.num_keypoints == [17, 14, 16, 17, 17, 133]
    assert [start for start, _ in config.prototype_offsets.values()] == [0, 17, 31, 47, 64, 81]
    assert config.num_prototype_rows == 214
    backbone = config.backbone_config
    assert isinstance(backbone, VitPoseBackboneConfig)
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads) == (768, 12, 12)
    assert (backbone.num_experts, backbone.part_features, backbone.layer_norm_eps) == (6, 192, 1e-6)
    assert backbone.out_indices == [12]
    assert (config.embed_dim, config.num_prototypes, config.similarity) == (64, 3, "abs_cosine")
    assert config.head_type == "classic" and config.head_channels == 256
    assert config.dataset_index_of("mpii") == 2
    assert config.get_skeleton("coco").keypoint_names == get_skeleton("coco").keypoint_names


def test_huge_backbone_preset() -> None:
    backbone = backbone_config_for("huge", num_experts=6)
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads) == (1280, 32, 16)
    assert backbone.part_features == 320


def test_tiny_preset_and_overrides() -> None:
    config = PoseBHConfig.tiny()
    backbone = config.backbone_config
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads) == (64, 2, 2)
    assert (backbone.part_features, backbone.num_experts) == (16, 6)
    assert config.head_channels == 32 and config.embedding_deconv_channels == 32
    assert config.dataset_names == list(DEFAULT_DATASETS) and config.embed_dim == 64

    small = PoseBHConfig.tiny(dataset_names=["coco", "mpii"], num_hidden_layers=1, similarity="cosine")
    assert small.backbone_config.num_experts == 2 and small.backbone_config.num_hidden_layers == 1
    assert small.similarity == "cosine" and small.num_keypoints == [17, 16]
    single = PoseBHConfig.tiny(dataset_names=["interhand"])
    assert single.backbone_config.num_experts == 1 and single.num_keypoints == [21]


def test_json_round_trip_keeps_custom_skeletons(tmp_path) -> None:
    config = PoseBHConfig.tiny(dataset_names=["coco", "stick"], skeletons={"stick": CUSTOM.to_dict()},
                               extra_prototype_skeletons=["interhand"], num_cluster_prototypes=4)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, PoseBHConfig)
    drop = {"_name_or_path"}
    assert {k: v for k, v in loaded.to_dict().items() if k not in drop} == {
        k: v for k, v in config.to_dict().items() if k not in drop}
    assert loaded.get_skeleton("stick").flip_pairs == ((1, 2),)
    assert loaded.prototype_skeleton_names == ["coco", "stick", "interhand"]
    assert loaded.prototype_offsets == {"coco": (0, 17), "stick": (17, 20), "interhand": (20, 41)}
    assert loaded.num_prototype_rows == 41
    assert isinstance(loaded.backbone_config, VitPoseBackboneConfig)
    assert loaded.backbone_config.num_experts == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"similarity": "dot"}, "similarity='dot' is unknown"),
        ({"head_type": "fancy"}, "head_type='fancy' is unknown"),
        ({"num_keypoints": [17, 14]}, "num_keypoints has 2 entries for 6"),
        ({"num_keypoints": [17, 14, 16, 17, 17, 132]}, "gives 132 keypoints for 'coco_wholebody'"),
        ({"dataset_names": ["coco", "aic", "mpii"]}, "num_experts=6 must equal len(dataset_names)=3"),
        ({"dataset_names": ["coco", "aic"], "num_experts": 1}, "num_experts=1 (plain ViTPose) supports a single"),
        ({"dataset_names": ["coco", "nothing"], "num_experts": 2}, "skeleton 'nothing' is not a built-in"),
        ({"dataset_names": ["coco", "coco"], "num_experts": 2}, "appear more than once"),
        ({"extra_prototype_skeletons": ["mpii"]}, "appear more than once"),
        ({"skeletons": {"stick": CUSTOM.to_dict()}}, "neither in dataset_names"),
        ({"dataset_names": []}, "dataset_names is empty"),
        ({"embed_dim": 0}, "embed_dim must be >= 1"),
    ],
)
def test_invalid_configs_raise_clear_value_errors(kwargs: dict, message: str) -> None:
    backbone_keys = {"num_experts"}
    backbone = {k: kwargs.pop(k) for k in list(kwargs) if k in backbone_keys}
    with pytest.raises(ValueError) as info:
        if backbone:
            PoseBHConfig(backbone_config=backbone_config_for("tiny", **backbone), **kwargs)
        else:
            PoseBHConfig.tiny(**kwargs) if "dataset_names" not in kwargs else PoseBHConfig(
                backbone_config=backbone_config_for("tiny", num_experts=6), **kwargs)
    assert message in str(info.value)


def test_invalid_custom_skeleton_names_the_entry() -> None:
    broken = {**CUSTOM.to_dict(), "flip_pairs": [[1, 1]]}
    with pytest.raises(ValueError, match=r"skeletons\['stick'\] is invalid"):
        PoseBHConfig.tiny(dataset_names=["stick"], skeletons={"stick": broken})


def test_default_skeletons_are_validated_and_round_trip(tmp_path) -> None:
    config = PoseBHConfig.tiny(default_skeletons=["coco"])
    assert config.skeletons_to_draw == ["coco"]
    config.save_pretrained(tmp_path)
    assert PoseBHConfig.from_pretrained(tmp_path).skeletons_to_draw == ["coco"]
    assert PoseBHConfig.tiny().skeletons_to_draw == list(PoseBHConfig.tiny().dataset_names)
    with pytest.raises(ValueError, match="default_skeletons=\\['horse'\\] must be a non-empty list"):
        PoseBHConfig.tiny(default_skeletons=["horse"])
