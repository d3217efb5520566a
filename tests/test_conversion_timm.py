"""timm ViT -> PoseBH backbone: feature parity where both compute the same thing, the ViTPose++ expert recipe,
patch/position resizing, refusals, the CLI and `model.init: timm:...`. Random timm weights only (no download).

Needs the optional `timm` extra; without an importable timm (or with a torchvision that does not match torch)
the whole module is skipped with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

try:
    import timm
    from timm.layers import resample_patch_embed
    from timm.models._hub import save_for_hf
except (ImportError, RuntimeError) as _err:  # RuntimeError: a CUDA torchvision beside a CPU torch
    pytest.skip(f"needs the optional timm extra (make venv-timm; make test-timm runs these): import timm failed: {_err}",
                allow_module_level=True)

from posebh_hf.cli import main
from posebh_hf.conversion import ConversionError
from posebh_hf.conversion.timm import (
    inspect_timm_vit,
    parity_blockers,
    resample_grid_pos_embed,
    resample_patch_kernel,
    timm_parity,
    timm_to_posebh_model,
)
from posebh_hf.modeling import PoseBHForPoseEstimation
from posebh_hf.skeletons import get_skeleton
from posebh_hf.training import ConfigError, build_model, load_train_config

TOL = 1e-5
SMALL = {"embed_dim": 64, "num_heads": 2, "depth": 2}  # a ViT-S layout, narrowed for CPU tests


def _vit(name: str = "vit_small_patch16_224", **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    args = {"pretrained": False, "class_token": False, "global_pool": "avg", "fc_norm": False,
            "img_size": (256, 192), **SMALL, **kwargs}
    return timm.create_model(name, **args).eval()


def _randomise_layer_scale(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for block in model.blocks:
            block.ls1.gamma.uniform_(0.2, 2.0)
            block.ls2.gamma.uniform_(0.2, 2.0)


@pytest.mark.parametrize("datasets", [None, ["coco"]], ids=["6-experts", "plain-mlp"])
def test_vit16_features_equal_timm(datasets) -> None:
    source = _vit()
    model, report = timm_to_posebh_model(source, datasets)
    diffs = timm_parity(source, model, batch_size=2)
    assert len(diffs) == (6 if datasets is None else 1)
    assert max(diffs.values()) <= TOL, diffs
    assert {k.split(".")[0] for k in report.initialised} == {"heads", "embedding_head", "keypoint_prototypes"}


def test_dinov2_style_patch14_layer_scale_no_qkv_bias_equal_timm() -> None:
    source = _vit("vit_small_patch14_dinov2", img_size=(224, 168), init_values=1e-5, qkv_bias=False)
    _randomise_layer_scale(source)
    layout = inspect_timm_vit(source)
    assert layout.layer_scale and layout.patch_size == (14, 14) and layout.grid == (16, 12)
    model, _ = timm_to_posebh_model(source, image_size=(224, 168), patch_size=14)
    diffs = timm_parity(source, model)
    assert max(diffs.values()) <= TOL, diffs


def test_fc_norm_model_uses_fc_norm_as_final_norm() -> None:
    source = _vit(fc_norm=True)  # global-average-pool model: norm is an identity, fc_norm a LayerNorm
    layout = inspect_timm_vit(source)
    assert layout.final_norm == "fc_norm"
    model, _ = timm_to_posebh_model(source, ["coco", "mpii"])
    assert max(timm_parity(source, model).values()) <= TOL


def test_experts_follow_the_vitpose_plus_recipe() -> None:
    """fc2 = first C - P rows of the pretrained fc2; every expert = its last P rows (ViTPose's load_checkpoint)."""
    source = _vit()
    model, _ = timm_to_posebh_model(source, part_features=16)
    c, p = SMALL["embed_dim"], 16
    for block, layer in zip(source.blocks, model.backbone.encoder.layer, strict=True):
        torch.testing.assert_close(layer.mlp.fc2.weight, block.mlp.fc2.weight[: c - p])
        torch.testing.assert_close(layer.mlp.fc2.bias, block.mlp.fc2.bias[: c - p])
        for expert in layer.mlp.experts:
            torch.testing.assert_close(expert.weight, block.mlp.fc2.weight[c - p:])
            torch.testing.assert_close(expert.bias, block.mlp.fc2.bias[c - p:])
    assert model.backbone.embeddings.position_embeddings[0, 0].abs().max() == 0  # the extra slot starts at zero


def test_patch_kernel_resize_equals_timm_and_keeps_tokens() -> None:
    torch.manual_seed(0)
    weight = torch.randn(8, 3, 14, 14)
    resized = resample_patch_kernel(weight, (16, 16))
    torch.testing.assert_close(resized, resample_patch_embed(weight, [16, 16]), rtol=1e-5, atol=1e-5)
    # FlexiViT property: a 14x14 patch and its bicubic 16x16 upsampling give the same token
    patch = torch.randn(4, 3, 14, 14)
    up = F.interpolate(patch, size=(16, 16), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(torch.einsum("bchw,ochw->bo", up, resized),
                               torch.einsum("bchw,ochw->bo", patch, weight), rtol=1e-4, atol=1e-4)


def test_position_grid_interpolation() -> None:
    torch.manual_seed(0)
    pos = torch.randn(37 * 37, 8)
    out = resample_grid_pos_embed(pos, (37, 37), (16, 12))
    expected = F.interpolate(pos.reshape(1, 37, 37, 8).permute(0, 3, 1, 2), size=(16, 12), mode="bicubic",
                             align_corners=False).permute(0, 2, 3, 1).reshape(-1, 8)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(resample_grid_pos_embed(pos, (37, 37), (37, 37)), pos)


def test_dinov2_with_class_and_register_tokens_converts_and_says_why_no_parity() -> None:
    source = _vit("vit_small_patch14_reg4_dinov2", class_token=True, global_pool="token", img_size=518)
    model, report = timm_to_posebh_model(source)
    bb = model.config.backbone_config
    assert list(bb.patch_size) == [16, 16] and list(bb.image_size) == [256, 192]
    assert model.backbone.embeddings.position_embeddings.shape == (1, 16 * 12 + 1, SMALL["embed_dim"])
    reasons = set(report.dropped.values())
    assert any("class token" in r for r in reasons) and any("register" in r for r in reasons)
    blockers = " ".join(parity_blockers(source, model))
    assert "prefix token" in blockers and "patch 14" in blockers and "37x37" in blockers
    with pytest.raises(ConversionError, match="not comparable"):
        timm_parity(source, model)
    out = model(torch.randn(1, 3, 256, 192), dataset_index=0, heads=["coco"])
    assert out.heatmaps["coco"].shape == (1, 17, 64, 48)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"qk_norm": True}, "qk-norm"),
    ({"act_layer": "gelu_tanh"}, "exact GELU"),
    ({"pre_norm": True}, "pre-norm"),
])
def test_unmappable_variants_are_refused(kwargs, message) -> None:
    with pytest.raises(ConversionError, match=message):
        timm_to_posebh_model(_vit(**kwargs))


def test_non_vit_is_refused() -> None:
    with pytest.raises(ConversionError, match="not a timm VisionTransformer"):
        timm_to_posebh_model(torch.nn.Linear(2, 2))


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local timm folder (config.json with model_args + model.safetensors), as push_to_hf_hub writes it."""
    args = {"class_token": False, "global_pool": "avg", "fc_norm": False, "img_size": [128, 96], **SMALL}
    model = _vit(**{**args, "img_size": (128, 96)})
    folder = tmp_path_factory.mktemp("timm") / "vit"
    save_for_hf(model, folder, model_args=args)
    return folder


def test_cli_convert_timm_folder(timm_folder: Path, tmp_path: Path, capsys) -> None:
    dst = tmp_path / "posebh"
    code = main(["convert", "timm", "--model", str(timm_folder), "--dst", str(dst), "--image-size", "128", "96",
                 "--datasets", "coco", "ap10k"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "feature parity vs timm" in out and "dataset_index=1 [ap10k expert]" in out
    loaded = PoseBHForPoseEstimation.from_pretrained(dst)
    source = timm.create_model(f"local-dir:{timm_folder}", pretrained=True).eval()
    assert max(timm_parity(source, loaded).values()) <= TOL


def test_cli_refuses_unknown_model(tmp_path: Path, capsys) -> None:
    code = main(["convert", "timm", "--model", "no_such_vit_xyz", "--random-init", "--dst", str(tmp_path / "x")])
    assert code == 2
    assert "timm cannot create 'no_such_vit_xyz'" in capsys.readouterr().err


def test_training_init_from_timm(timm_folder: Path) -> None:
    overrides = [f"model.init=timm:{timm_folder}", "data.datasets=[]",
                 "data.datasets.0={name: coco, train: x.json}", "data.datasets.1={name: mpii, train: x.json}",
                 "model.config_overrides={image_size: [128, 96]}"]
    cfg = load_train_config(None, overrides)
    model, text = build_model(cfg, {"coco": get_skeleton("coco"), "mpii": get_skeleton("mpii")})
    assert "backbone from timm" in text
    assert model.config.dataset_names == ["coco", "mpii"] and model.config.backbone_config.num_experts == 2
    source = timm.create_model(f"local-dir:{timm_folder}", pretrained=True).eval()
    assert max(timm_parity(source, model.eval()).values()) <= TOL


def test_training_init_from_unknown_timm_name_is_a_config_error() -> None:
    cfg = load_train_config(None, ["model.init=timm:no_such_vit_xyz", "data.datasets=[]",
                                   "data.datasets.0={name: coco, train: x.json}"])
    with pytest.raises(ConfigError, match="no_such_vit_xyz"):
        build_model(cfg, {"coco": get_skeleton("coco")})
