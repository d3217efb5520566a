"""timm Vision Transformer -> PoseBH (ViTPose++) backbone (layer 3).

ViTPose and ViTPose++ start from ImageNet-pretrained plain ViTs (MAE in the papers); timm is where users get such
weights (MAE, DINOv2, DeiT, AugReg, ...). This module maps a timm `VisionTransformer` into the PoseBH backbone:

- patch embedding: the Conv2d kernel is copied; when the source patch is not the target patch (14 -> 16 for
  DINOv2) it is resized with the FlexiViT pseudo-inverse resize (bicubic, antialias; the same matrix as
  `timm.layers.resample_patch_embed`), which keeps a token's value for an image resized by the same factor.
  The ViTPose patch conv has padding 2 (spec §2.2): the kernel is the same, the windows start 2 px earlier.
- position embeddings: the class/register-token rows are dropped and the patch grid (e.g. 14x14 or 37x37) is
  resized to the pose grid (16x12 for 256x192) with bicubic `F.interpolate(align_corners=False)`, as the official
  ViTPose loader does. The extra slot of the ViTPose embedding (added to every token) starts at zero: the official
  loader copies the class token's position there instead, which is the same for MAE (whose class position is
  zero) but would add a learned offset to every token for DeiT/DINOv2.
- blocks: qkv is split into query/key/value (a missing qkv bias becomes zeros), the attention projection, both
  LayerNorms and fc1 are copied; LayerScale (DINOv2, CaiT-style `init_values`) is folded exactly into the rows of
  the attention projection and of fc2.
- MoE MLP: the official ViTPose++ recipe for a single-MLP checkpoint (`load_checkpoint(..., part_features=P)` of
  ViTPose's `mmcv_custom/checkpoint.py`): the shared fc2 gets the first C - P output rows of the pretrained fc2
  and EVERY expert gets a copy of the last P rows. So right after conversion all experts are equal and the MoE
  MLP computes the pretrained MLP for any `dataset_index`. P defaults to C / 4 (192 of 768 for ViT-B, 320 of
  1280 for ViT-H, as released).
- final norm: timm's `norm` (or `fc_norm` for global-average-pool models whose `norm` is an identity).
- heads, the keypoint-embedding head and the prototypes start fresh (listed in the report).

Dropped (reported): the class token, register tokens, the classifier head and attention-pool heads. Refused with
a `ConversionError` naming every reason: non-ViT models, qk-norm, scaled attention/MLP norms, pre-norm (CLIP),
a patch-embedding norm, parallel/post-norm blocks, gated (SwiGLU) MLPs, non-GELU activations, non-LayerNorm
norms, non-square or odd grids that do not reach the pose grid.

Where both models compute the same thing (no prefix tokens, same patch size, same grid), `timm_parity` checks
that the converted backbone's features equal timm's `forward_features` (timm is fed the image shifted by the
2-pixel padding of the ViTPose patch conv).

timm is needed only to build a model from a name or a timm folder (`load_timm_model`); the mapping itself works
on any `nn.Module` with timm's ViT layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import VitPoseBackboneConfig

from ..configuration_posebh import DEFAULT_DATASETS, PoseBHConfig
from ..modeling import PoseBHForPoseEstimation
from .common import (
    ConversionError,
    ConversionReport,
    MappedTensor,
    build_converted_model,
    check_destination,
    save_model_atomically,
)

__all__ = [
    "TIMM_INSTALL_HINT",
    "TimmViTLayout",
    "convert_timm",
    "import_timm",
    "inspect_timm_vit",
    "load_timm_model",
    "map_timm_state_dict",
    "posebh_config_from_timm",
    "resample_grid_pos_embed",
    "resample_patch_kernel",
    "timm_parity",
    "timm_to_posebh_model",
]

TIMM_INSTALL_HINT = ("install the optional extra: pip install -c constraints.txt -e '.[timm]' (timm needs an "
                     "importable torchvision; see README 'Starting from a timm ViT')")
_PADDING = 2  # the ViTPose patch conv pads 2 px on every side (spec §2.2)


def import_timm() -> Any:
    """The `timm` module, or a `ConversionError` that says how to install it (and why an import failed)."""
    try:
        import timm
    except ImportError as err:
        raise ConversionError(f"the timm converter needs timm ({err}); {TIMM_INSTALL_HINT}") from None
    except RuntimeError as err:  # e.g. a CUDA torchvision beside a CPU torch: "operator torchvision::nms ..."
        raise ConversionError(f"timm is installed but cannot be imported: {err}. Its torchvision does not match "
                              f"torch {torch.__version__}; {TIMM_INSTALL_HINT}") from None
    return timm


def load_timm_model(name_or_folder: str | Path, pretrained: bool = True) -> nn.Module:
    """A timm model in eval mode from a registry name (`vit_small_patch14_dinov2.lvd142m`, `hf-hub:org/name`) or a
    local timm folder (config.json + model.safetensors, as `timm.models.push_to_hf_hub` writes it).

    `pretrained=False` builds the architecture with random weights (no download). A folder is always loaded with
    its weights.
    """
    timm = import_timm()
    path = Path(name_or_folder)
    try:
        if path.is_dir():
            model = timm.create_model(f"local-dir:{path}", pretrained=True)
        else:
            model = timm.create_model(str(name_or_folder), pretrained=pretrained)
    except (RuntimeError, ValueError, OSError) as err:
        raise ConversionError(f"timm cannot create {str(name_or_folder)!r}: {err}") from None
    return model.eval()


@dataclass
class TimmViTLayout:
    """What the converter reads off a timm ViT (see `inspect_timm_vit`)."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    patch_size: tuple[int, int]
    grid: tuple[int, int]
    layer_norm_eps: float
    num_prefix_tokens: int
    pos_prefix_rows: int  # rows of pos_embed that belong to the class/register tokens (0 with no_embed_class)
    has_class_token: bool
    num_register_tokens: int
    layer_scale: bool
    final_norm: str  # "norm", "fc_norm" or "none"
    notes: list[str] = field(default_factory=list)


def _is_identity(module: Any) -> bool:
    return module is None or isinstance(module, nn.Identity)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _layer_norm_eps(module: nn.Module, where: str, problems: list[str]) -> float | None:
    if not isinstance(module, nn.LayerNorm):
        problems.append(f"{where} is {type(module).__name__}, not LayerNorm")
        return None
    if not module.elementwise_affine or module.weight is None or module.bias is None:
        problems.append(f"{where} is a LayerNorm without weight and bias")
        return None
    return float(module.eps)


def inspect_timm_vit(model: nn.Module) -> TimmViTLayout:
    """Read the layout of a timm ViT, or raise `ConversionError` listing everything that cannot map."""
    problems: list[str] = []
    for attr in ("patch_embed", "blocks", "pos_embed"):
        if not hasattr(model, attr):
            raise ConversionError(f"{type(model).__name__} is not a timm VisionTransformer (no '{attr}'); only "
                                  "plain ViTs (timm.models.vision_transformer) can be mapped")
    proj = getattr(model.patch_embed, "proj", None)
    if not isinstance(proj, nn.Conv2d) or proj.in_channels != 3:
        raise ConversionError("the patch embedding is not a single RGB Conv2d (hybrid/CNN stems cannot be mapped)")
    if tuple(proj.stride) != tuple(proj.kernel_size) or tuple(proj.padding) not in ((0, 0),):
        problems.append(f"the patch conv has kernel {tuple(proj.kernel_size)}, stride {tuple(proj.stride)}, padding "
                        f"{proj.padding}; only non-overlapping patches map")
    patch = _pair(tuple(proj.kernel_size))
    if patch[0] != patch[1]:
        problems.append(f"non-square patches {patch}")
    if not _is_identity(getattr(model.patch_embed, "norm", None)):
        problems.append("a norm inside the patch embedding (ViTPose has none)")
    if not _is_identity(getattr(model, "norm_pre", None)):
        problems.append("a pre-norm before the blocks (CLIP-style norm_pre; ViTPose has none)")
    grid = _pair(tuple(getattr(model.patch_embed, "grid_size", (0, 0))))
    embed_dim = int(proj.out_channels)
    blocks = list(model.blocks)
    if not blocks:
        problems.append("no transformer blocks")
    eps_values: set[float] = set()
    num_heads, mlp_hidden, layer_scale = 0, 0, False
    for i, block in enumerate(blocks):
        where = f"blocks.{i}"
        if type(block).__name__ != "Block":
            problems.append(f"{where} is a {type(block).__name__} (only the pre-norm timm Block maps)")
            continue
        for norm_name in ("norm1", "norm2"):
            eps = _layer_norm_eps(getattr(block, norm_name), f"{where}.{norm_name}", problems)
            if eps is not None:
                eps_values.add(eps)
        attn = block.attn
        if type(attn).__name__ != "Attention" or not isinstance(getattr(attn, "qkv", None), nn.Linear):
            problems.append(f"{where}.attn is a {type(attn).__name__} (only timm's fused-qkv Attention maps)")
            continue
        if attn.qkv.out_features != 3 * embed_dim:
            problems.append(f"{where}.attn has an attention width {attn.qkv.out_features // 3} != {embed_dim}")
        if not (_is_identity(getattr(attn, "q_norm", None)) and _is_identity(getattr(attn, "k_norm", None))):
            problems.append(f"{where}.attn uses qk-norm")
        if not _is_identity(getattr(attn, "norm", None)):
            problems.append(f"{where}.attn has a scale norm (scale_attn_norm)")
        head_dim = embed_dim // int(attn.num_heads)
        if not math.isclose(float(attn.scale), head_dim ** -0.5, rel_tol=1e-6):
            problems.append(f"{where}.attn scales by {attn.scale}, not head_dim ** -0.5")
        num_heads = int(attn.num_heads)
        mlp = block.mlp
        if type(mlp).__name__ != "Mlp" or not isinstance(getattr(mlp, "fc1", None), nn.Linear):
            problems.append(f"{where}.mlp is a {type(mlp).__name__} (gated/SwiGLU MLPs have no ViTPose form)")
            continue
        act = mlp.act
        if not (isinstance(act, nn.GELU) and act.approximate == "none"):
            problems.append(f"{where}.mlp activation is {act!r}; ViTPose uses exact GELU")
        if not _is_identity(getattr(mlp, "norm", None)):
            problems.append(f"{where}.mlp has a hidden norm (scale_mlp_norm)")
        mlp_hidden = int(mlp.fc1.out_features)
        for ls_name in ("ls1", "ls2"):
            ls = getattr(block, ls_name, None)
            if _is_identity(ls):
                continue
            if getattr(ls, "gamma", None) is None or ls.gamma.shape != (embed_dim,):
                problems.append(f"{where}.{ls_name} is a {type(ls).__name__} without a [C] gamma")
            layer_scale = True
    if embed_dim and mlp_hidden and mlp_hidden % embed_dim:
        problems.append(f"MLP width {mlp_hidden} is not a whole multiple of the width {embed_dim}")
    final = "none"
    if not _is_identity(getattr(model, "norm", None)):
        final = "norm"
        eps = _layer_norm_eps(model.norm, "norm", problems)
    elif not _is_identity(getattr(model, "fc_norm", None)):
        final = "fc_norm"
        eps = _layer_norm_eps(model.fc_norm, "fc_norm", problems)
    else:
        eps = None
    if eps is not None:
        eps_values.add(eps)
    if len(eps_values) > 1:
        problems.append(f"LayerNorms use different eps {sorted(eps_values)}")
    if problems:
        raise ConversionError(f"{type(model).__name__} cannot be mapped into the ViTPose++ backbone: "
                              + "; ".join(problems))
    has_cls = getattr(model, "cls_token", None) is not None
    reg = getattr(model, "reg_token", None)
    num_reg = int(reg.shape[1]) if reg is not None else 0
    num_prefix = int(getattr(model, "num_prefix_tokens", int(has_cls) + num_reg))
    pos = model.pos_embed
    pos_rows = 0 if pos is None else int(pos.shape[1]) - grid[0] * grid[1]
    if pos is not None and pos_rows not in (0, num_prefix):
        raise ConversionError(f"pos_embed has {pos.shape[1]} rows for a {grid[0]}x{grid[1]} grid and "
                              f"{num_prefix} prefix tokens")
    notes = []
    if has_cls:
        notes.append("class token dropped (ViTPose has none)")
    if num_reg:
        notes.append(f"{num_reg} register tokens dropped")
    if layer_scale:
        notes.append("LayerScale folded into attention.output.dense and fc2/experts")
    if final == "fc_norm":
        notes.append("fc_norm used as the final LayerNorm (the model's norm is an identity)")
    if final == "none":
        notes.append("no final norm in the source: the final LayerNorm starts at weight 1, bias 0")
    return TimmViTLayout(
        embed_dim=embed_dim, depth=len(blocks), num_heads=num_heads, mlp_hidden=mlp_hidden, patch_size=patch,
        grid=grid, layer_norm_eps=eps_values.pop() if eps_values else 1e-6, num_prefix_tokens=num_prefix,
        pos_prefix_rows=pos_rows, has_class_token=has_cls, num_register_tokens=num_reg, layer_scale=layer_scale,
        final_norm=final, notes=notes)


def _pose_grid(image_size: tuple[int, int], patch: int) -> tuple[int, int]:
    """Token grid of the ViTPose patch conv (padding 2) for `image_size`; it must equal image // patch."""
    conv = tuple((s + 2 * _PADDING - patch) // patch + 1 for s in image_size)
    plain = tuple(s // patch for s in image_size)
    if conv != plain:
        raise ConversionError(f"image size {list(image_size)} with patch {patch} gives a {conv[0]}x{conv[1]} token "
                              f"grid through the padded patch conv but {plain[0]}x{plain[1]} by division; choose an "
                              "image size that is a multiple of the patch size")
    return plain  # type: ignore[return-value]


def posebh_config_from_timm(layout: TimmViTLayout, dataset_names: Sequence[str] | None = None, *,
                            image_size: Sequence[int] = (256, 192), patch_size: int = 16,
                            part_features: int | None = None, **backbone_overrides: Any) -> PoseBHConfig:
    """The PoseBH config hosting the timm ViT: same width, depth, heads, MLP ratio and LayerNorm eps.

    One expert per dataset (the six PoseBH datasets by default); one dataset gives a plain (1-expert) MLP.
    """
    names = list(dataset_names) if dataset_names is not None else list(DEFAULT_DATASETS)
    if not names:
        raise ConversionError("at least one dataset name is needed")
    image = (int(image_size[0]), int(image_size[1]))
    _pose_grid(image, patch_size)
    experts = len(names) if len(names) > 1 else 1
    part = layout.embed_dim // 4 if part_features is None else int(part_features)
    if experts > 1 and not 0 < part < layout.embed_dim:
        raise ConversionError(f"part_features must be in 1..{layout.embed_dim - 1}, got {part}")
    if layout.embed_dim % layout.num_heads:
        raise ConversionError(f"width {layout.embed_dim} is not divisible by {layout.num_heads} heads")
    backbone = VitPoseBackboneConfig(**{
        "image_size": list(image), "patch_size": [patch_size, patch_size], "hidden_size": layout.embed_dim,
        "num_hidden_layers": layout.depth, "num_attention_heads": layout.num_heads,
        "mlp_ratio": layout.mlp_hidden // layout.embed_dim, "qkv_bias": True, "hidden_act": "gelu",
        "layer_norm_eps": layout.layer_norm_eps, "num_experts": experts, "part_features": part,
        "out_indices": [layout.depth], **backbone_overrides})
    try:
        return PoseBHConfig(backbone_config=backbone, dataset_names=names)
    except (TypeError, ValueError) as err:
        raise ConversionError(f"cannot build the PoseBH config: {err}") from None


def resample_patch_kernel(weight: torch.Tensor, new_size: Sequence[int]) -> torch.Tensor:
    """Resize a patch-embedding kernel [C, 3, p, p] to [C, 3, q, q] with the FlexiViT pseudo-inverse resize.

    With R the bicubic (antialiased) resize matrix from p x p to q x q pixels, the new kernel is w R^+ so that
    <R x, w R^+> = <x, w> for every p x p patch x: a token of the resized image equals the original token. This
    is the matrix of `timm.layers.resample_patch_embed(interpolation="bicubic", antialias=True)`.
    """
    old = (int(weight.shape[-2]), int(weight.shape[-1]))
    new = (int(new_size[0]), int(new_size[1]))
    if old == new:
        return weight.clone()
    basis = torch.eye(old[0] * old[1], dtype=torch.float32).reshape(-1, 1, *old)
    resized = F.interpolate(basis, size=new, mode="bicubic", antialias=True, align_corners=False)
    resize = resized.squeeze(1).permute(1, 2, 0).reshape(new[0] * new[1], old[0] * old[1])  # R: old -> new
    pinv = torch.linalg.pinv(resize)  # [old, new]
    out = weight.reshape(weight.shape[0], weight.shape[1], -1).float() @ pinv
    return out.reshape(weight.shape[0], weight.shape[1], *new).to(weight.dtype)


def resample_grid_pos_embed(pos: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int]) -> torch.Tensor:
    """Patch position embeddings [N_old, C] on `old_grid` (h, w) -> [N_new, C] on `new_grid`, bicubic with
    `align_corners=False` (the official ViTPose loader's interpolation); unchanged when the grids are equal."""
    old = (int(old_grid[0]), int(old_grid[1]))
    new = (int(new_grid[0]), int(new_grid[1]))
    if old == new:
        return pos.clone()
    grid = pos.float().reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    out = F.interpolate(grid, size=new, mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(new[0] * new[1], -1).to(pos.dtype)


@torch.no_grad()
def map_timm_state_dict(model: nn.Module, config: PoseBHConfig, layout: TimmViTLayout | None = None
                        ) -> dict[str, MappedTensor]:
    """PoseBH backbone tensors for `config` from the timm ViT `model` (see the module docstring)."""
    layout = layout or inspect_timm_vit(model)
    bb = config.backbone_config
    patch = _pair(bb.patch_size)
    grid = _pose_grid(_pair(bb.image_size), patch[0])
    c = layout.embed_dim
    out: dict[str, MappedTensor] = {}

    def put(key: str, source: str, tensor: torch.Tensor) -> None:
        out[f"backbone.{key}"] = MappedTensor(source, tensor.detach().float().clone().contiguous())

    proj = model.patch_embed.proj
    kernel_src = "patch_embed.proj.weight" + (f" (resized {layout.patch_size[0]}->{patch[0]})"
                                              if layout.patch_size != patch else "")
    put("embeddings.patch_embeddings.projection.weight", kernel_src, resample_patch_kernel(proj.weight, patch))
    put("embeddings.patch_embeddings.projection.bias", "patch_embed.proj.bias",
        proj.bias if proj.bias is not None else torch.zeros(c))
    if model.pos_embed is not None:
        grid_pos = model.pos_embed[0, layout.pos_prefix_rows:]
        resized = resample_grid_pos_embed(grid_pos, layout.grid, grid)
        source = "pos_embed" + (f" (grid {layout.grid[0]}x{layout.grid[1]} -> {grid[0]}x{grid[1]})"
                                if layout.grid != grid else "")
    else:
        resized, source = torch.zeros(grid[0] * grid[1], c), "none (no pos_embed)"
    put("embeddings.position_embeddings", source, torch.cat([torch.zeros(1, c), resized.float()])[None])
    experts, part = int(bb.num_experts), int(bb.part_features)
    for i, block in enumerate(model.blocks):
        src, dst = f"blocks.{i}", f"encoder.layer.{i}"
        qkv_w = block.attn.qkv.weight
        qkv_b = block.attn.qkv.bias if block.attn.qkv.bias is not None else torch.zeros(3 * c)
        for j, name in enumerate(("query", "key", "value")):
            put(f"{dst}.attention.attention.{name}.weight", f"{src}.attn.qkv.weight", qkv_w[j * c:(j + 1) * c])
            put(f"{dst}.attention.attention.{name}.bias", f"{src}.attn.qkv.bias", qkv_b[j * c:(j + 1) * c])
        gamma1 = block.ls1.gamma if not _is_identity(block.ls1) else None
        gamma2 = block.ls2.gamma if not _is_identity(block.ls2) else None
        proj_w, proj_b = _scaled(block.attn.proj, gamma1)
        ls1 = f" * {src}.ls1.gamma" if gamma1 is not None else ""
        put(f"{dst}.attention.output.dense.weight", f"{src}.attn.proj.weight{ls1}", proj_w)
        put(f"{dst}.attention.output.dense.bias", f"{src}.attn.proj.bias{ls1}", proj_b)
        for norm_src, norm_dst in (("norm1", "layernorm_before"), ("norm2", "layernorm_after")):
            put(f"{dst}.{norm_dst}.weight", f"{src}.{norm_src}.weight", getattr(block, norm_src).weight)
            put(f"{dst}.{norm_dst}.bias", f"{src}.{norm_src}.bias", getattr(block, norm_src).bias)
        put(f"{dst}.mlp.fc1.weight", f"{src}.mlp.fc1.weight", block.mlp.fc1.weight)
        put(f"{dst}.mlp.fc1.bias", f"{src}.mlp.fc1.bias",
            block.mlp.fc1.bias if block.mlp.fc1.bias is not None else torch.zeros(layout.mlp_hidden))
        fc2_w, fc2_b = _scaled(block.mlp.fc2, gamma2)
        ls2 = f" * {src}.ls2.gamma" if gamma2 is not None else ""
        if experts == 1:
            put(f"{dst}.mlp.fc2.weight", f"{src}.mlp.fc2.weight{ls2}", fc2_w)
            put(f"{dst}.mlp.fc2.bias", f"{src}.mlp.fc2.bias{ls2}", fc2_b)
            continue
        put(f"{dst}.mlp.fc2.weight", f"{src}.mlp.fc2.weight[:{c - part}]{ls2}", fc2_w[:c - part])
        put(f"{dst}.mlp.fc2.bias", f"{src}.mlp.fc2.bias[:{c - part}]{ls2}", fc2_b[:c - part])
        for e in range(experts):
            put(f"{dst}.mlp.experts.{e}.weight", f"{src}.mlp.fc2.weight[{c - part}:]{ls2}", fc2_w[c - part:])
            put(f"{dst}.mlp.experts.{e}.bias", f"{src}.mlp.fc2.bias[{c - part}:]{ls2}", fc2_b[c - part:])
    if layout.final_norm != "none":
        norm = getattr(model, layout.final_norm)
        put("layernorm.weight", f"{layout.final_norm}.weight", norm.weight)
        put("layernorm.bias", f"{layout.final_norm}.bias", norm.bias)
    return out


def _scaled(linear: nn.Linear, gamma: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of `gamma * linear(x)` (LayerScale folded into the output rows)."""
    weight = linear.weight.detach().float()
    bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(weight.shape[0])
    if gamma is None:
        return weight, bias
    g = gamma.detach().float()
    return weight * g[:, None], bias * g


def _dropped(model: nn.Module, layout: TimmViTLayout) -> dict[str, str]:
    used_prefixes = ("patch_embed.proj.", "pos_embed", "blocks.", f"{layout.final_norm}.")
    dropped = {}
    for key in model.state_dict():
        if key.startswith(used_prefixes):
            continue
        if key.startswith("cls_token"):
            dropped[key] = "class token (ViTPose has no prefix tokens)"
        elif key.startswith("reg_token"):
            dropped[key] = "register tokens (ViTPose has no prefix tokens)"
        else:
            dropped[key] = "classifier / pooling head (replaced by the pose heads)"
    return dropped


def timm_to_posebh_model(model: nn.Module | str | Path, dataset_names: Sequence[str] | None = None, *,
                         image_size: Sequence[int] = (256, 192), patch_size: int = 16,
                         part_features: int | None = None, pretrained: bool = True, seed: int = 0,
                         **backbone_overrides: Any) -> tuple[PoseBHForPoseEstimation, ConversionReport]:
    """Build the PoseBH model from a timm ViT (a module, a timm name or a timm folder), in memory.

    Heads, the embedding head and the prototypes are freshly initialised with `seed` (global RNG untouched).
    """
    source_name = type(model).__name__ if isinstance(model, nn.Module) else str(model)
    if not isinstance(model, nn.Module):
        model = load_timm_model(model, pretrained=pretrained)
    model = model.eval()
    layout = inspect_timm_vit(model)
    config = posebh_config_from_timm(layout, dataset_names, image_size=image_size, patch_size=patch_size,
                                     part_features=part_features, **backbone_overrides)
    mapped = map_timm_state_dict(model, config, layout)
    fresh = ["heads.", "embedding_head.", "keypoint_prototypes."]
    if layout.final_norm == "none":
        fresh.append("backbone.layernorm.")
    posebh, initialised = build_converted_model(config, mapped, fresh, seed=seed, hint=f" (source {source_name})")
    bb = config.backbone_config
    summary = (f"timm {source_name}: ViT {layout.depth}x{layout.embed_dim} ({layout.num_heads} heads), patch "
               f"{layout.patch_size[0]}->{_pair(bb.patch_size)[0]}, grid {layout.grid[0]}x{layout.grid[1]}->"
               f"{'x'.join(map(str, _pose_grid(_pair(bb.image_size), _pair(bb.patch_size)[0])))}, "
               f"{bb.num_experts} expert(s) (part_features {bb.part_features}) for {config.dataset_names}"
               + (f"; {'; '.join(layout.notes)}" if layout.notes else ""))
    report = ConversionReport(destination=Path(), config_summary=summary,
                              mapped={k: v.source for k, v in mapped.items()}, dropped=_dropped(model, layout),
                              initialised=initialised)
    return posebh, report


def parity_blockers(model: nn.Module, posebh: PoseBHForPoseEstimation) -> list[str]:
    """Why the two models do not compute the same features (empty when `timm_parity` applies)."""
    layout = inspect_timm_vit(model)
    bb = posebh.config.backbone_config
    reasons = []
    if layout.num_prefix_tokens:
        reasons.append(f"the timm model has {layout.num_prefix_tokens} prefix token(s) that attention sees")
    if layout.patch_size != _pair(bb.patch_size):
        reasons.append(f"patch {layout.patch_size[0]} was resized to {_pair(bb.patch_size)[0]}")
    grid = _pose_grid(_pair(bb.image_size), _pair(bb.patch_size)[0])
    if layout.grid != grid:
        reasons.append(f"grid {layout.grid[0]}x{layout.grid[1]} was resized to {grid[0]}x{grid[1]}")
    if layout.final_norm == "none":
        reasons.append("the timm model has no final norm")
    return reasons


@torch.no_grad()
def timm_parity(model: nn.Module, posebh: PoseBHForPoseEstimation, batch_size: int = 1, seed: int = 0
                ) -> dict[int, float]:
    """Max |feature difference| per dataset_index between timm's `forward_features` (patch tokens, after the
    final norm) and the converted backbone's last feature map, on one random fp32 batch.

    timm gets the image shifted down/right by 2 px (zeros enter at the top/left), which is what the ViTPose patch
    conv's padding of 2 does. Raises `ConversionError` when the two do not compute the same thing
    (`parity_blockers`).
    """
    reasons = parity_blockers(model, posebh)
    if reasons:
        raise ConversionError("features are not comparable: " + "; ".join(reasons))
    model, posebh = model.eval(), posebh.eval()
    height, width = _pair(posebh.config.backbone_config.image_size)
    experts = max(1, int(posebh.config.backbone_config.num_experts))
    index = torch.arange(experts).repeat_interleave(batch_size)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(index.numel(), 3, height, width, generator=generator)
    shifted = F.pad(pixels, (_PADDING, 0, _PADDING, 0))[..., :height, :width]
    expected = model.forward_features(shifted)
    if _is_identity(getattr(model, "norm", None)) and not _is_identity(getattr(model, "fc_norm", None)):
        expected = model.fc_norm(expected)
    got = posebh.backbone(pixels, dataset_index=index).feature_maps[-1]
    if got.shape != expected.shape:
        raise ConversionError(f"feature shapes differ: timm {list(expected.shape)}, PoseBH {list(got.shape)}")
    diff = (got - expected).abs().flatten(1).amax(dim=1)
    return {e: diff[index == e].max().item() for e in range(experts)}


def convert_timm(model: nn.Module | str | Path, dst: str | Path, dataset_names: Sequence[str] | None = None, *,
                 image_size: Sequence[int] = (256, 192), patch_size: int = 16, part_features: int | None = None,
                 pretrained: bool = True, overwrite: bool = False, seed: int = 0) -> ConversionReport:
    """Convert a timm ViT into a PoseBH folder (`save_pretrained` layout)."""
    dst = Path(dst)
    check_destination(dst, overwrite)
    posebh, report = timm_to_posebh_model(model, dataset_names, image_size=image_size, patch_size=patch_size,
                                          part_features=part_features, pretrained=pretrained, seed=seed)
    save_model_atomically(posebh, dst, overwrite)
    report.destination = dst
    return report
