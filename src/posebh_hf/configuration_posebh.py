"""`PoseBHConfig`: everything needed to rebuild a PoseBH model (layer 2).

Symbols: D_s datasets (heads / experts), K_d keypoints of dataset d, K total prototype rows, M prototypes per
keypoint, D embedding dimension.

The ordered `dataset_names` define `dataset_index` (= expert index = head index = prototype block order), as in
the official code: 0 coco, 1 aic, 2 mpii, 3 ap10k, 4 apt36k, 5 coco_wholebody. Each skeleton definition travels
inside the config (`skeletons`), so custom skeletons load with the model. Skeletons that have prototypes but no
heatmap head (attached prototype packs) are listed in `extra_prototype_skeletons`; their prototype rows follow
the datasets' rows.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig, VitPoseBackboneConfig
from transformers.configuration_utils import SubConfigSpec

from .codecs import DECODE_MODES, HeatmapCodec
from .ops.similarity import SIMILARITY_MODES
from .skeletons import Skeleton, SkeletonError, get_skeleton

__all__ = ["BACKBONE_PRESETS", "DEFAULT_DATASETS", "EMBEDDING_HEAD_TYPES", "HEAD_TYPES", "RELEASED_UDP_DATASETS",
           "SIMILARITIES", "PoseBHConfig", "released_decoding"]

DEFAULT_DATASETS: tuple[str, ...] = ("coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody")
SIMILARITIES: tuple[str, ...] = SIMILARITY_MODES  # the one list (ops.similarity)
HEAD_TYPES: tuple[str, ...] = ("classic", "simple")
# "deconv": the official KptProtoHead (spec 2.4); "linear": a 1x1 conv of the backbone map, centred per image,
# upsampled x4 (our option, docs/mdt_mini.md section 3: it keeps the backbone's feature geometry, where prototypes of
# a new skeleton can be fitted)
EMBEDDING_HEAD_TYPES: tuple[str, ...] = ("deconv", "linear")
# How the released ViTPose++ / PoseBH checkpoints were trained and are decoded (spec 5.x, 6.2, 6.4): UDP + DARK for
# COCO and MPII, the classic affine with the +-0.25 refinement and a 1-px flip shift for every other dataset.
RELEASED_UDP_DATASETS: frozenset[str] = frozenset({"coco", "mpii"})


DEFAULT_DRAW_THRESHOLD = 0.3  # mmpose's keypoint score threshold for drawing


def released_decoding(dataset_names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The released checkpoints' decoding table for `dataset_names`: "udp" for coco / mpii, else "default"."""
    return {name: "udp" if name in RELEASED_UDP_DATASETS else "default" for name in dataset_names}

# ViTPose++ backbones (spec §2.2). LayerNorm eps 1e-6 as in the official ViT (transformers' default is 1e-12).
BACKBONE_PRESETS: dict[str, dict[str, Any]] = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "part_features": 192},
    "huge": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "part_features": 320},
    # test preset, the same backbone as `PoseBHConfig.tiny()`
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "part_features": 16},
}
_BACKBONE_COMMON: dict[str, Any] = {
    "image_size": [256, 192],
    "patch_size": [16, 16],
    "mlp_ratio": 4,
    "qkv_bias": True,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
}
# backbone keyword names accepted by `PoseBHConfig.tiny` (initializer_range stays with PoseBHConfig)
_BACKBONE_FIELDS = (frozenset(k for k in VitPoseBackboneConfig.__annotations__ if not k.startswith("_"))
                    - {"initializer_range"}) | {"out_indices", "out_features"}


def backbone_config_for(variant: str, num_experts: int, **overrides: Any) -> VitPoseBackboneConfig:
    """A ViTPose(++) backbone config for `variant` in `BACKBONE_PRESETS` with `num_experts` experts."""
    if variant not in BACKBONE_PRESETS:
        raise ValueError(f"unknown backbone variant {variant!r}; expected one of {sorted(BACKBONE_PRESETS)}")
    kwargs = {**_BACKBONE_COMMON, **BACKBONE_PRESETS[variant], "num_experts": num_experts, **overrides}
    return VitPoseBackboneConfig(**kwargs)


@strict
class PoseBHConfig(PreTrainedConfig):
    r"""
    Configuration of [`PoseBHForPoseEstimation`].

    Args:
        backbone_config (`dict` or `VitPoseBackboneConfig`, *optional*):
            The ViTPose(++) backbone. Defaults to ViT-B with `num_experts = len(dataset_names)` (1 when there is a
            single dataset). `num_experts` must equal `len(dataset_names)`, or be 1 with a single dataset.
        dataset_names (`list[str]`): ordered dataset/skeleton names; the order defines `dataset_index`.
        num_keypoints (`list[int]`, *optional*): K_d per dataset; derived from the skeletons when omitted.
        skeletons (`dict[str, dict]`, *optional*): name -> `Skeleton.to_dict()` for every dataset and extra
            prototype skeleton. Built-in skeletons are filled in automatically; custom ones must be given.
        extra_prototype_skeletons (`list[str]`): skeletons with prototype rows but no heatmap head.
        extra_prototype_dataset_index (`dict[str, int]`, *optional*): extra skeleton -> the expert (dataset_index)
            its images are routed through.
        prototype_pack_provenance (`dict[str, dict]`, *optional*): skeleton -> where its attached prototype pack came
            from (source, base model and revision, embedding fingerprint, how it was learned); informational.
        head_type (`str`): "classic" (2 deconvs + 1x1 conv, PoseBH/ViTPose++) or "simple" (ViTPose simple head).
        head_channels (`int`): deconvolution channels of the classic heads (256).
        scale_factor (`int`): upsampling factor of the simple head (4).
        embedding_head_type (`str`): "deconv" (the official embedding head: 2 deconvs, a residual neck and a conv
            projection to D) or "linear" (a 1x1 conv of the backbone map to D, centred per image, bilinearly
            upsampled x4: prototypes then live in a linear image of the backbone's features;
            `embedding_deconv_channels` and `embedding_channels` are unused).
        embedding_deconv_channels (`int`): deconvolution channels of the embedding head (256).
        embedding_channels (`int`): width of the embedding head's neck and head convs (64).
        embed_dim (`int`): D, the embedding / prototype dimension (64).
        num_prototypes (`int`): M, prototypes per keypoint (3).
        similarity (`str`): "abs_cosine" (released code, |cos|) or "cosine" (paper).
        num_cluster_prototypes (`int`): C, rows of the cross-dataset cluster bank (0 = no bank).
        prototype_init_std (`float`): std of the truncated-normal prototype init before L2 normalisation.
        head_init_std (`float`): std of the normal init of head and embedding convs (0.001).
        initializer_range (`float`): std for any other layer.
        default_skeletons (`list[str]`, *optional*): the skeletons `posebh predict` and the demo draw when none is
            chosen (e.g. `["coco"]` for a model whose other heads are animals); default: every head.
        decoding (`dict[str, str]`, *optional*): skeleton name -> "udp" (UDP crop, UDP/DARK decoding, no flip
            shift) or "default" (classic crop, +-0.25 refinement, 1-px flip shift): how each skeleton's heatmaps were
            trained and must be decoded. Skeletons not listed use "udp" (how this package trains). `posebh convert
            official` writes the released table (`released_decoding`), training writes its own; `codec_for(name)`
            turns it into the `HeatmapCodec` every decoder uses.
        draw_threshold (`float`, *optional*): the keypoint score under which `posebh predict` and the demo hide a
            keypoint unless the user sets one (default 0.3, mmpose's). A weak model whose heatmap peaks stay low
            (the embedded default) carries a lower value measured on its val split.
    """

    model_type = "posebh"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=VitPoseBackboneConfig)}

    backbone_config: dict | PreTrainedConfig | None = None
    dataset_names: list[str] | tuple[str, ...] = DEFAULT_DATASETS
    num_keypoints: list[int] | tuple[int, ...] | None = None
    skeletons: dict[str, dict] | None = None
    extra_prototype_skeletons: list[str] | tuple[str, ...] = ()
    extra_prototype_dataset_index: dict[str, int] | None = None
    prototype_pack_provenance: dict[str, dict] | None = None
    head_type: str = "classic"
    head_channels: int = 256
    scale_factor: int = 4
    embedding_head_type: str = "deconv"
    embedding_deconv_channels: int = 256
    embedding_channels: int = 64
    embed_dim: int = 64
    num_prototypes: int = 3
    similarity: str = "abs_cosine"
    num_cluster_prototypes: int = 0
    prototype_init_std: float = 0.02
    head_init_std: float = 0.001
    initializer_range: float = 0.02
    default_skeletons: list[str] | tuple[str, ...] | None = None
    decoding: dict[str, str] | None = None
    draw_threshold: float | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        if __name__.startswith("posebh_hf."):
            # A repo pushed with remote code names its pipeline file in `custom_pipelines` (for users without the
            # package). The installed package serves that task itself (`import posebh_hf` registers it), and
            # transformers would refuse the repo's entry without trust_remote_code, so the package drops it.
            kwargs.pop("custom_pipelines", None)
        self.dataset_names = [str(n) for n in self.dataset_names]
        self.extra_prototype_skeletons = [str(n) for n in self.extra_prototype_skeletons]
        self.backbone_config = self._resolve_backbone(self.backbone_config)
        super().__post_init__(**kwargs)
        self._check_choices()
        self.skeletons = self._resolve_skeletons(self.skeletons)
        self.num_keypoints = self._resolve_num_keypoints(self.num_keypoints)
        self._check_experts()
        self._check_default_skeletons()
        self._check_decoding()
        self._check_draw_threshold()

    # ------------------------------------------------------------------------------------------- construction
    def _resolve_backbone(self, backbone: dict | PreTrainedConfig | None) -> VitPoseBackboneConfig:
        if backbone is None:
            n = len(self.dataset_names)
            return backbone_config_for("base", num_experts=n if n > 1 else 1)
        if isinstance(backbone, dict):
            backbone = {k: v for k, v in backbone.items() if k != "model_type"}
            return VitPoseBackboneConfig(**backbone)
        if not isinstance(backbone, VitPoseBackboneConfig):
            raise ValueError(f"PoseBHConfig.backbone_config must be a VitPoseBackboneConfig or its dict, got "
                             f"{type(backbone).__name__}")
        return backbone

    def _check_choices(self) -> None:
        if not self.dataset_names:
            raise ValueError("PoseBHConfig.dataset_names is empty; give at least one dataset/skeleton name")
        names = self.dataset_names + self.extra_prototype_skeletons
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"PoseBHConfig: names {duplicates} appear more than once in dataset_names + "
                             "extra_prototype_skeletons")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"PoseBHConfig.similarity={self.similarity!r} is unknown; expected one of {SIMILARITIES}")
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"PoseBHConfig.head_type={self.head_type!r} is unknown; expected one of {HEAD_TYPES}")
        if self.embedding_head_type not in EMBEDDING_HEAD_TYPES:
            raise ValueError(f"PoseBHConfig.embedding_head_type={self.embedding_head_type!r} is unknown; expected one "
                             f"of {EMBEDDING_HEAD_TYPES}")
        for name in ("head_channels", "scale_factor", "embedding_deconv_channels", "embedding_channels",
                     "embed_dim", "num_prototypes"):
            if getattr(self, name) < 1:
                raise ValueError(f"PoseBHConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_cluster_prototypes < 0:
            raise ValueError(f"PoseBHConfig.num_cluster_prototypes must be >= 0, got {self.num_cluster_prototypes}")

    def _resolve_skeletons(self, given: dict[str, dict] | None) -> dict[str, dict]:
        given = dict(given or {})
        out: dict[str, dict] = {}
        for name in self.dataset_names + self.extra_prototype_skeletons:
            if name in given:
                try:
                    out[name] = Skeleton.from_dict(given[name], source=f"config skeletons[{name!r}]",
                                                   name=name).to_dict()
                except SkeletonError as err:
                    raise ValueError(f"PoseBHConfig.skeletons[{name!r}] is invalid: {err}") from None
                continue
            try:
                out[name] = get_skeleton(name).to_dict()
            except SkeletonError:
                raise ValueError(f"PoseBHConfig: skeleton {name!r} is not a built-in; pass its definition in "
                                 f"skeletons={{{name!r}: Skeleton.to_dict()}}") from None
        unused = sorted(set(given) - set(out))
        if unused:
            raise ValueError(f"PoseBHConfig.skeletons has entries {unused} that are neither in dataset_names nor in "
                             "extra_prototype_skeletons")
        return out

    def _resolve_num_keypoints(self, given: list[int] | tuple[int, ...] | None) -> list[int]:
        derived = [len(self.skeletons[n]["keypoints"]) for n in self.dataset_names]
        if given is None:
            return derived
        given = [int(k) for k in given]
        if len(given) != len(self.dataset_names):
            raise ValueError(f"PoseBHConfig.num_keypoints has {len(given)} entries for {len(self.dataset_names)} "
                             f"dataset_names {self.dataset_names}")
        for name, k, k_skel in zip(self.dataset_names, given, derived, strict=True):
            if k != k_skel:
                raise ValueError(f"PoseBHConfig.num_keypoints gives {k} keypoints for {name!r} but its skeleton "
                                 f"has {k_skel}")
        return given

    def _check_experts(self) -> None:
        n_exp, n_data = self.backbone_config.num_experts, len(self.dataset_names)
        if n_exp == n_data or (n_exp == 1 and n_data == 1):
            return
        if n_exp == 1:
            raise ValueError(f"PoseBHConfig: backbone_config.num_experts=1 (plain ViTPose) supports a single dataset, "
                             f"got {n_data} dataset_names {self.dataset_names}")
        raise ValueError(f"PoseBHConfig: backbone_config.num_experts={n_exp} must equal len(dataset_names)={n_data} "
                         f"({self.dataset_names})")

    def _check_default_skeletons(self) -> None:
        if self.default_skeletons is None:
            return
        self.default_skeletons = [str(n) for n in self.default_skeletons]
        known = self.dataset_names + self.extra_prototype_skeletons
        unknown = [n for n in self.default_skeletons if n not in known]
        if unknown or not self.default_skeletons:
            raise ValueError(f"PoseBHConfig.default_skeletons={self.default_skeletons} must be a non-empty list of "
                             f"this model's skeletons {known}")

    def _check_draw_threshold(self) -> None:
        if self.draw_threshold is None:
            return
        value = self.draw_threshold
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"PoseBHConfig.draw_threshold must be a number in [0, 1], got {value!r}")
        self.draw_threshold = float(value)

    def _check_decoding(self) -> None:
        if self.decoding is None:
            return
        if not isinstance(self.decoding, dict):
            raise ValueError(f"PoseBHConfig.decoding must map skeleton names to {DECODE_MODES}, got "
                             f"{type(self.decoding).__name__}")
        self.decoding = {str(k): str(v) for k, v in self.decoding.items()}
        known = self.dataset_names + self.extra_prototype_skeletons
        for name, mode in self.decoding.items():
            if name not in known:
                raise ValueError(f"PoseBHConfig.decoding names {name!r}, which is not one of this model's skeletons "
                                 f"{known}")
            if mode not in DECODE_MODES:
                raise ValueError(f"PoseBHConfig.decoding[{name!r}]={mode!r}; expected one of {DECODE_MODES}")

    def decoding_for(self, name: str) -> str:
        """"udp" or "default": how skeleton `name` is decoded (see `decoding`)."""
        return (self.decoding or {}).get(name, "udp")

    def codec_for(self, name: str, input_size: tuple[int, int] | None = None,
                  heatmap_size: tuple[int, int] | None = None) -> HeatmapCodec:
        """The heatmap codec of skeleton `name`: its decoding mode at `input_size` (W, H; default: the backbone's
        input) and `heatmap_size` (W, H; default: a quarter of the input, the heads' output)."""
        if input_size is None:
            height, width = self.backbone_config.image_size
            input_size = (int(width), int(height))
        if heatmap_size is None:
            heatmap_size = (int(input_size[0]) // 4, int(input_size[1]) // 4)
        return HeatmapCodec(input_size=tuple(input_size), heatmap_size=tuple(heatmap_size),
                            use_udp=self.decoding_for(name) == "udp")

    @property
    def keypoint_draw_threshold(self) -> float:
        """What predict and the demo hide keypoints under when the user sets nothing: `draw_threshold`, else 0.3."""
        return DEFAULT_DRAW_THRESHOLD if self.draw_threshold is None else float(self.draw_threshold)

    @property
    def skeletons_to_draw(self) -> list[str]:
        """What predict and the demo draw when the user chooses nothing: `default_skeletons`, else every head."""
        return list(self.default_skeletons) if self.default_skeletons else list(self.dataset_names)

    # ------------------------------------------------------------------------------------------- presets
    @classmethod
    def tiny(cls, **overrides: Any) -> PoseBHConfig:
        """A 2-layer, 64-wide model for tests (~0.5 M parameters): hidden 64, 2 heads, part_features 16, head and
        embedding deconvs 32 channels, D = 64, M = 3, input 256x192, the six default datasets.

        Keyword overrides go to the config, or to the backbone when they name a `VitPoseBackboneConfig` field
        (e.g. `num_hidden_layers=1`, `image_size=[64, 48]`). `num_experts` follows `dataset_names` unless given.
        """
        backbone_overrides = {k: overrides.pop(k) for k in list(overrides) if k in _BACKBONE_FIELDS}
        names = list(overrides.get("dataset_names", DEFAULT_DATASETS))
        backbone_overrides.setdefault("num_experts", len(names) if len(names) > 1 else 1)
        backbone = backbone_config_for("tiny", **backbone_overrides)
        kwargs: dict[str, Any] = {"head_channels": 32, "embedding_deconv_channels": 32, **overrides}
        return cls(backbone_config=backbone, **kwargs)

    # ------------------------------------------------------------------------------------------- derived facts
    @property
    def num_datasets(self) -> int:
        return len(self.dataset_names)

    @property
    def prototype_skeleton_names(self) -> list[str]:
        """Skeletons owning prototype rows, in row order: the datasets, then the extra (head-less) skeletons."""
        return list(self.dataset_names) + list(self.extra_prototype_skeletons)

    @property
    def prototype_offsets(self) -> dict[str, tuple[int, int]]:
        """name -> [start, stop) prototype rows (official offsets 0, 17, 31, 47, 64, 81 for the default six)."""
        out, start = {}, 0
        for name in self.prototype_skeleton_names:
            stop = start + len(self.skeletons[name]["keypoints"])
            out[name] = (start, stop)
            start = stop
        return out

    @property
    def num_prototype_rows(self) -> int:
        """K, the total number of prototype rows (214 for the default six datasets)."""
        return sum(len(self.skeletons[n]["keypoints"]) for n in self.prototype_skeleton_names)

    def dataset_index_of(self, name: str) -> int:
        """The `dataset_index` (expert) of a dataset, or the expert an attached prototype skeleton routes through."""
        if name in self.dataset_names:
            return self.dataset_names.index(name)
        routing = self.extra_prototype_dataset_index or {}
        if name in routing:
            return int(routing[name])
        raise ValueError(f"unknown dataset {name!r}; this model has heads for {self.dataset_names} and attached "
                         f"skeletons {list(routing)}")

    def get_skeleton(self, name: str) -> Skeleton:
        """The `Skeleton` stored in this config for a dataset or extra prototype skeleton."""
        if name not in self.skeletons:
            raise ValueError(f"unknown skeleton {name!r}; this model knows {self.prototype_skeleton_names}")
        return Skeleton.from_dict(self.skeletons[name], source="PoseBHConfig.skeletons", name=name)
