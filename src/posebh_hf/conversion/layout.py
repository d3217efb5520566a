"""What an official ViTPose / ViTPose++ / PoseBH `.pth` holds, read from its tensors alone (layer 3).

`detect_layout` infers the backbone size (S/B/L/H from width and depth), the number of experts and heatmap heads,
the head type (classic deconv head or the 3x3 simple decoder) and whether the file is a *split* file written by
`tools/model_split.py` (spec §7.3): `mlp.fc2` already holds one expert merged in (shape [C, 4C]) while the expert
tensors, and in `coco.pth` the associate heads, are left in the file. `dataset_from_filename` reads the dataset of a
split file from its name (`coco.pth`, `base_coco.pth`, `aic.pth`, `wholebody.pth`, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..configuration_posebh import DEFAULT_DATASETS
from ..skeletons import get_skeleton
from .common import ConversionError

__all__ = [
    "OFFICIAL_SIZES",
    "BackboneSize",
    "CheckpointLayout",
    "dataset_from_filename",
    "datasets_from_filename",
    "default_datasets_for",
    "detect_layout",
    "infer_size",
]


@dataclass(frozen=True)
class BackboneSize:
    """One ViTPose backbone size. `part_features` is the ViTPose++ expert width (used when a one-MLP checkpoint with
    several heads is hosted by a PoseBH model, see `official.py`)."""

    name: str
    label: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    part_features: int

    def describe(self) -> str:
        return (f"{self.label} ({self.hidden_size} wide, {self.num_hidden_layers} layers, "
                f"{self.num_attention_heads} attention heads)")


# ViTPose / ViTPose++ sizes (ViTPose configs; part features of the ViTPose++ configs and transformers' converter).
# The attention head count cannot be read from the tensors; it follows from (width, depth). `tiny` is the test preset
# of `PoseBHConfig.tiny()`.
OFFICIAL_SIZES: dict[str, BackboneSize] = {
    size.name: size for size in (
        BackboneSize("small", "ViT-S", 384, 12, 12, 96),
        BackboneSize("base", "ViT-B", 768, 12, 12, 192),
        BackboneSize("large", "ViT-L", 1024, 24, 16, 256),
        BackboneSize("huge", "ViT-H", 1280, 32, 16, 320),
        BackboneSize("tiny", "tiny test preset", 64, 2, 2, 16),
    )
}

# file-name token -> skeleton name (split files: coco.pth, aic.pth, mpii.pth, ap10k.pth, apt36k.pth, wholebody.pth,
# and the '8dset' interhand.pth / pw3d.pth)
_FILENAME_DATASETS: dict[str, str] = {
    "coco": "coco", "aic": "aic", "mpii": "mpii", "ap10k": "ap10k", "apt36k": "apt36k", "ap36k": "apt36k",
    "wholebody": "coco_wholebody", "interhand": "interhand", "pw3d": "smpl24", "3dpw": "smpl24",
    "crowdpose": "crowdpose", "ochuman": "ochuman",
}
_HEAD_KEY = re.compile(r"(keypoint_head|associate_keypoint_heads\.(\d+))\.final_layer\.weight")


@dataclass
class CheckpointLayout:
    """The layout of an official state dict, inferred from its tensors.

    kind: "moe" (fc2 [C-P, 4C] + experts, the unsplit ViTPose++ / PoseBH MDT checkpoint), "split" (fc2 [C, 4C] with
    leftover expert tensors: a `model_split.py` output) or "plain" (fc2 [C, 4C], no experts: ViTPose, ViTAE's split
    files, one-MLP multi-head files such as `vitpose_base_coco_aic_mpii.pth`).
    """

    size: BackboneSize
    kind: str
    num_experts: int  # expert tensors per block in the file (leftovers included)
    part_features: int | None  # rows of one expert tensor, when there are experts
    heads: list[str]  # head prefixes in PoseBH order: keypoint_head, associate_keypoint_heads.0, ...
    head_keypoints: list[int]
    head_type: str  # "classic" | "simple"
    has_proto: bool
    merged_expert: int | None = None  # split files: the expert whose tensors equal fc2's last rows
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        what = {"moe": f"unsplit, {self.num_experts} experts",
                "split": f"split file, fc2 holds expert {self.merged_expert if self.merged_expert is not None else '?'}"
                         f" merged ({self.num_experts} leftover experts)",
                "plain": "plain MLP (no experts)"}[self.kind]
        proto = ", proto_head" if self.has_proto else ""
        return (f"{self.size.describe()}, {what}, {len(self.heads)} {self.head_type} head(s) "
                f"{self.head_keypoints}{proto}")


def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ConversionError(f"the checkpoint has no {key!r}; is this a PoseBH / ViTPose(++) checkpoint?")
    return tuple(state_dict[key].shape)


def _indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state_dict if (m := regex.fullmatch(k))})


def infer_size(state_dict: Mapping[str, torch.Tensor], variant: str | None = None) -> BackboneSize:
    """The backbone size from `backbone.pos_embed` (width) and the number of `backbone.blocks.*` (depth).

    `variant`, when given, is a check: a mismatch is an error naming the tensor and both shapes.
    """
    pos_shape = _shape(state_dict, "backbone.pos_embed")
    width = pos_shape[-1]
    depth = len(_indices(state_dict, r"backbone\.blocks\.(\d+)\..*"))
    found = next((s for s in OFFICIAL_SIZES.values() if (s.hidden_size, s.num_hidden_layers) == (width, depth)), None)
    if variant is not None:
        if variant not in OFFICIAL_SIZES:
            raise ConversionError(f"unknown variant {variant!r}; expected one of {list(OFFICIAL_SIZES)}")
        want = OFFICIAL_SIZES[variant]
        if want is not found:
            looks = found.describe() if found else f"{width} wide with {depth} blocks"
            expected = [*pos_shape[:-1], want.hidden_size]
            raise ConversionError(f"source key 'backbone.pos_embed' has shape {list(pos_shape)} but --variant "
                                  f"{variant!r} expects {expected} and {want.num_hidden_layers} blocks; the "
                                  f"checkpoint is {looks} (omit --variant to infer the size)")
    if found is None:
        known = ", ".join(f"{s.name} {s.hidden_size}/{s.num_hidden_layers}" for s in OFFICIAL_SIZES.values())
        raise ConversionError(f"cannot infer the backbone size: 'backbone.pos_embed' is {width} wide and the "
                              f"checkpoint has {depth} blocks; known sizes (width/depth): {known}")
    return found


def _merged_expert(state_dict: Mapping[str, torch.Tensor], depth: int, experts: list[int], part: int
                   ) -> int | None:
    """The expert e with fc2[-P:] == experts.e in every block (weights and biases), or None."""
    def same(i: int, e: int, kind: str) -> bool:
        fc2 = state_dict.get(f"backbone.blocks.{i}.mlp.fc2.{kind}")
        expert = state_dict.get(f"backbone.blocks.{i}.mlp.experts.{e}.{kind}")
        return fc2 is not None and expert is not None and fc2.shape[0] >= part and \
            fc2[-part:].shape == expert.shape and torch.equal(fc2[-part:], expert)

    for e in experts:
        if all(same(i, e, kind) for i in range(depth) for kind in ("weight", "bias")):
            return e
    return None


def detect_layout(state_dict: Mapping[str, torch.Tensor], variant: str | None = None) -> CheckpointLayout:
    """Infer size, experts, heads, head type and split status from the tensors (no config needed)."""
    size = infer_size(state_dict, variant)
    width = size.hidden_size
    fc2_out = _shape(state_dict, "backbone.blocks.0.mlp.fc2.weight")[0]
    experts = _indices(state_dict, r"backbone\.blocks\.0\.mlp\.experts\.(\d+)\.weight")
    part = _shape(state_dict, f"backbone.blocks.0.mlp.experts.{experts[0]}.weight")[0] if experts else None
    notes: list[str] = []
    merged = None
    if fc2_out == width:
        kind = "split" if experts else "plain"
        if experts:
            merged = _merged_expert(state_dict, size.num_hidden_layers, experts, part or 0)
    elif experts and part is not None and fc2_out + part == width:
        kind = "moe"
    else:
        raise ConversionError(f"source key 'backbone.blocks.0.mlp.fc2.weight' has {fc2_out} rows; expected {width} "
                              f"(plain or split) or {width} - part_features with experts (found {len(experts)} "
                              f"experts{f' of {part} rows' if part else ''})")

    head_ids: list[tuple[int, str]] = []
    for key in state_dict:
        match = _HEAD_KEY.fullmatch(key)
        if match:
            head_ids.append((0 if match.group(2) is None else int(match.group(2)) + 1, match.group(1)))
    head_ids.sort()
    if not head_ids or head_ids[0][0] != 0:
        raise ConversionError("the checkpoint has no keypoint_head.final_layer.weight; is this a PoseBH / ViTPose(++) "
                              "checkpoint?")
    if [i for i, _ in head_ids] != list(range(len(head_ids))):
        raise ConversionError(f"the associate heads are not numbered 0..n-1: {[p for _, p in head_ids[1:]]}")
    heads = [prefix for _, prefix in head_ids]
    keypoints = [_shape(state_dict, f"{p}.final_layer.weight")[0] for p in heads]
    types = {p: ("classic" if f"{p}.deconv_layers.0.weight" in state_dict else "simple") for p in heads}
    for prefix, kind_of in types.items():
        kernel = _shape(state_dict, f"{prefix}.final_layer.weight")[2:]
        if kind_of == "simple" and kernel != (3, 3):
            raise ConversionError(f"{prefix} has no deconv_layers and a {list(kernel)} final_layer; expected the "
                                  "classic head (deconv_layers + 1x1 final_layer) or the simple decoder (3x3 "
                                  "final_layer only)")
    head_type = types[heads[0]]
    if kind == "split":
        # only keypoint_head is this dataset's head; leftover associate heads (coco.pth) are dropped
        head_type = types["keypoint_head"]
    elif len(set(types.values())) > 1:
        raise ConversionError(f"the heads mix classic and simple decoders: {types}")
    has_proto = any(k.startswith("proto_head.") for k in state_dict)
    if kind == "split" and merged is None:
        notes.append("fc2 matches none of the leftover experts (fine-tuned after splitting?)")
    return CheckpointLayout(size=size, kind=kind, num_experts=len(experts), part_features=part, heads=heads,
                            head_keypoints=keypoints, head_type=head_type, has_proto=has_proto,
                            merged_expert=merged, notes=notes)


def datasets_from_filename(path: str | Path | None) -> list[str]:
    """Skeleton names mentioned in a file name, in order (`vitpose_base_coco_aic_mpii.pth` -> coco, aic, mpii;
    `base_coco.pth` -> coco; `wholebody.pth` / `coco_wholebody.pth` -> coco_wholebody)."""
    if path is None:
        return []
    tokens = [t for t in re.split(r"[^a-z0-9]+", Path(path).name.lower().removesuffix(".pth")) if t]
    names: list[str] = []
    for i, token in enumerate(tokens):
        if token == "coco" and i + 1 < len(tokens) and tokens[i + 1] == "wholebody":
            continue
        name = _FILENAME_DATASETS.get(token)
        if name and name not in names:
            names.append(name)
    return names


def dataset_from_filename(path: str | Path | None) -> str | None:
    """The one dataset a split file's name names, or None (no name, or several)."""
    names = datasets_from_filename(path)
    return names[0] if len(names) == 1 else None


def default_datasets_for(num_heads: int, keypoints: list[int]) -> list[str] | None:
    """The PoseBH order (coco, aic, mpii, ap10k, apt36k, coco_wholebody) cut to `num_heads` when the keypoint counts
    match (six heads: ViTPose++/PoseBH; coco, aic, mpii: ViTPose's multi-task files)."""
    names = list(DEFAULT_DATASETS[:num_heads])
    if len(names) == num_heads and [get_skeleton(n).num_keypoints for n in names] == keypoints:
        return names
    return None
