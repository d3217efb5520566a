"""`posebh convert official` on the checkpoint layouts found in the wild, at true ViT-S shapes (B/L/H: slow).

Every layout is built from the key table of spec §7.2 with random tensors: the unsplit ViTPose++ / PoseBH MDT
checkpoint, `tools/model_split.py` outputs (PoseBH's: experts left in every file, associate heads left in
`coco.pth`; ViTAE's: experts removed from the five associate files), a ViTPose simple-decoder file, a classic
single-dataset ViTPose file and a one-MLP three-head `vitpose_*_coco_aic_mpii.pth`. No size is passed: the converter
infers it. A split file converted alone must give the unsplit checkpoint's matching head to 1e-5.

`pytest tests/test_conversion_layouts.py -s` prints the conversion table rows (`[conversion table] ...`).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from test_conversion import make_official_state_dict, reference_backbone, reference_head
from transformers import AutoModel, VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

import posebh_hf  # noqa: F401  (registers the Auto classes)
from posebh_hf.cli import main as cli_main
from posebh_hf.configuration_posebh import DEFAULT_DATASETS
from posebh_hf.conversion import (
    ConversionError,
    official_to_posebh_model,
    vitpose_parity,
    vitpose_to_posebh_model,
)
from posebh_hf.conversion.layout import OFFICIAL_SIZES, datasets_from_filename, detect_layout
from posebh_hf.modeling import PoseBHForPoseEstimation

TOLERANCE = 1e-5
SPLIT_NAMES = ("coco", "aic", "mpii", "ap10k", "apt36k", "wholebody")  # model_split.py file names, expert order
SHAPES = {name: {"C": s.hidden_size, "depth": s.num_hidden_layers, "P": s.part_features}
          for name, s in OFFICIAL_SIZES.items()}


# ----------------------------------------------------------------------------------------------- layouts
def mdt_state_dict(size: str, proto: bool = True) -> OrderedDict[str, torch.Tensor]:
    """The unsplit ViTPose++ / PoseBH MDT checkpoint at `size` (spec §7.2 keys, 6 experts, 6 heads)."""
    s = SHAPES[size]
    return make_official_state_dict(C=s["C"], depth=s["depth"], P=s["P"], deconv=256, clusters=96 if proto else 0,
                                    proto=proto)


def model_split(sd: dict, d: int, remove_experts: bool = False) -> OrderedDict[str, torch.Tensor]:
    """`tools/model_split.py` (spec §7.3): fc2 <- [fc2; experts.d]; for d > 0 keypoint_head <- associate head d-1
    and every associate head removed. PoseBH's script leaves the experts in every file (Q12); ViTAE's fixed script
    removes them from the five associate files (`remove_experts`). coco.pth keeps everything else."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in sd.items():
        if ".mlp.fc2." in key:
            value = torch.cat([value, sd[key.replace("fc2", f"experts.{d}")]], dim=0)
        out[key] = value
    if d > 0:
        for key in [k for k in out if k.startswith("keypoint_head.")]:
            out[key] = sd[key.replace("keypoint_head.", f"associate_keypoint_heads.{d - 1}.")]
        for key in [k for k in out if k.startswith("associate_keypoint_heads.")]:
            del out[key]
        if remove_experts:
            for key in [k for k in out if ".mlp.experts." in k]:
                del out[key]
    return out


def plain_state_dict(sd: dict, heads: int = 1) -> OrderedDict[str, torch.Tensor]:
    """A plain ViTPose (expert 0 merged, no experts, no proto_head) with the first `heads` heads."""
    out = model_split(sd, 0)
    keep = ("keypoint_head.",) + tuple(f"associate_keypoint_heads.{j}." for j in range(heads - 1))
    return OrderedDict((k, v) for k, v in out.items() if ".mlp.experts." not in k and (
        k.startswith("backbone.") or k.startswith(keep)))


def simple_decoder_state_dict(sd: dict, keypoints: int = 17) -> OrderedDict[str, torch.Tensor]:
    """A ViTPose simple-decoder file: plain backbone + `keypoint_head.final_layer` 3x3 only (no deconvs)."""
    out = OrderedDict((k, v) for k, v in plain_state_dict(sd).items() if k.startswith("backbone."))
    gen = torch.Generator().manual_seed(11)
    width = sd["backbone.pos_embed"].shape[-1]
    out["keypoint_head.final_layer.weight"] = torch.randn(keypoints, width, 3, 3, generator=gen) / (9 * width) ** 0.5
    out["keypoint_head.final_layer.bias"] = 0.1 * torch.randn(keypoints, generator=gen)
    return out


def reference_simple_head(sd: dict, features: torch.Tensor) -> torch.Tensor:
    """mmpose's TopdownHeatmapSimpleHead with num_deconv_layers=0, upsample=4, final_conv_kernel=3."""
    x = F.interpolate(F.relu(features), scale_factor=4, mode="bilinear", align_corners=False)
    return F.conv2d(x, sd["keypoint_head.final_layer.weight"], sd["keypoint_head.final_layer.bias"], padding=1)


def _row(layout: str, command: str, size: str, diff: float, against: str) -> None:
    print(f"\n[conversion table] {layout} | `{command}` | {size} | {diff:.2e} ({against})")


def _image(seed: int = 21) -> torch.Tensor:
    return torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(seed))


def _sources_accounted_for(sd: dict, report) -> None:
    assert set(report.mapped.values()) | set(report.dropped) == set(sd)


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def small_mdt() -> OrderedDict[str, torch.Tensor]:
    return mdt_state_dict("small")


@pytest.fixture(scope="module")
def small_unsplit(small_mdt):
    """(converted unsplit model, its heatmaps per dataset index for `_image()`, reference features per index)."""
    model, report = official_to_posebh_model(small_mdt)
    x = _image().expand(6, -1, -1, -1)
    index = torch.arange(6)
    with torch.no_grad():
        features = model.backbone_features(x, index)
        heatmaps = [model.heads[d](features[d:d + 1]) for d in range(6)]
        reference = reference_backbone(small_mdt, x, index, heads=12)
    assert (features[0] - features[5]).abs().max() > 1e-2  # the experts matter: a wrong merge would show
    assert (model.heads[3](features[3:4]) - model.heads[3](features[4:5])).abs().max() > 1e-3
    return model, report, heatmaps, reference


# ----------------------------------------------------------------------------------------------- ViT-S
def test_filename_datasets() -> None:
    assert datasets_from_filename("split_weights/base_coco.pth") == ["coco"]
    assert datasets_from_filename("wholebody.pth") == ["coco_wholebody"]
    assert datasets_from_filename("vitpose_small_coco_wholebody_256x192.pth") == ["coco_wholebody"]
    assert datasets_from_filename("vitpose_base_coco_aic_mpii.pth") == ["coco", "aic", "mpii"]
    assert datasets_from_filename("apt36k.pth") == ["apt36k"] and datasets_from_filename("epoch_100.pth") == []


@torch.no_grad()
def test_unsplit_small_mdt_is_inferred_and_matches_reference(small_mdt, small_unsplit) -> None:
    model, report, heatmaps, reference = small_unsplit
    backbone = model.config.backbone_config
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads) == (384, 12, 12)
    assert (backbone.num_experts, backbone.part_features, backbone.layer_norm_eps) == (6, 96, 1e-6)
    assert model.config.dataset_names == list(DEFAULT_DATASETS) and "ViT-S" in report.layout
    _sources_accounted_for(small_mdt, report)
    assert report.dropped == {} and report.initialised == []
    worst = 0.0
    for d in range(6):
        prefix = "keypoint_head." if d == 0 else f"associate_keypoint_heads.{d - 1}."
        want = reference_head(small_mdt, prefix)(reference[d:d + 1])
        assert want.abs().max() > 0.1
        worst = max(worst, (heatmaps[d] - want).abs().max().item())
    _row("unsplit ViTPose++-S / PoseBH MDT (6 experts, 6 heads, proto_head)",
         "posebh convert official --src vitpose+_small.pth --dst out/", "ViT-S, 6 experts", worst,
         "reference forward from the spec, all six heads")
    assert worst <= TOLERANCE


@pytest.mark.parametrize("d", range(6), ids=SPLIT_NAMES)
@torch.no_grad()
def test_posebh_split_file_equals_unsplit_head(small_mdt, small_unsplit, d) -> None:
    """PoseBH's split files: experts left in; coco.pth also keeps the five associate heads."""
    _, _, heatmaps, _ = small_unsplit
    split = model_split(small_mdt, d)
    filename = ("base_" if d == 0 else "") + f"{SPLIT_NAMES[d]}.pth"
    model, report = official_to_posebh_model(split, source=filename)
    name = DEFAULT_DATASETS[d]
    assert model.config.dataset_names == [name] and model.config.backbone_config.num_experts == 1
    assert model.config.backbone_config.hidden_size == 384
    _sources_accounted_for(split, report)
    dropped_experts = [k for k in report.dropped if ".mlp.experts." in k]
    assert len(dropped_experts) == 12 * 6 * 2
    assert any(k.startswith("associate_keypoint_heads.") for k in report.dropped) == (d == 0)
    assert f"expert {d} merged" in report.layout and report.initialised == []
    k = model.config.num_keypoints[0]
    start = sum(model_k for model_k in (17, 14, 16, 17, 17, 133)[:d])
    assert torch.equal(model.keypoint_prototypes.prototypes,
                       small_mdt["proto_head.kpt_prototype.prototypes"][start:start + k])
    got = model(_image()).heatmaps[name]
    diff = (got - heatmaps[d]).abs().max().item()
    _row(f"PoseBH split `{filename}` (fc2 + expert {d}, experts left in"
         + (", 5 associate heads left in)" if d == 0 else ", its head in keypoint_head)"),
         f"posebh convert official --src {filename} --dst out/", "ViT-S, 1 expert", diff,
         f"unsplit head {name!r}, dataset_index {d}")
    assert diff <= TOLERANCE


@torch.no_grad()
def test_vitae_split_file_through_the_cli(tmp_path, small_mdt, small_unsplit, capsys) -> None:
    """ViTAE's split file (experts removed, no proto_head): the dataset comes from the file name."""
    _, _, heatmaps, _ = small_unsplit
    no_proto = OrderedDict((k, v) for k, v in small_mdt.items() if not k.startswith("proto_head."))
    path = tmp_path / "ap10k.pth"
    torch.save({"state_dict": model_split(no_proto, 3, remove_experts=True), "meta": {}}, path)
    dst = tmp_path / "out"
    assert cli_main(["convert", "official", "--src", str(path), "--dst", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "ViT-S (384 wide, 12 layers, 12 attention heads), plain MLP" in out
    model = AutoModel.from_pretrained(dst).eval()
    assert model.config.dataset_names == ["ap10k"]
    diff = (model(_image()).heatmaps["ap10k"] - heatmaps[3]).abs().max().item()
    _row("ViTAE split `ap10k.pth` (fc2 + expert 3, experts removed)", "posebh convert official --src ap10k.pth "
         "--dst out/", "ViT-S, 1 expert", diff, "unsplit head 'ap10k', dataset_index 3")
    assert diff <= TOLERANCE


@torch.no_grad()
def test_coco_pth_through_the_cli_reports_what_it_dropped(tmp_path, small_mdt, small_unsplit, capsys) -> None:
    _, _, heatmaps, _ = small_unsplit
    path = tmp_path / "coco.pth"
    torch.save({"state_dict": model_split(small_mdt, 0), "meta": {}}, path)
    dst = tmp_path / "out"
    assert cli_main(["convert", "official", "--src", str(path), "--dst", str(dst), "--variant", "small"]) == 0
    out = capsys.readouterr().out
    assert "144 x leftover expert of a split file" in out and "70 x associate head left in a split file" in out
    model = AutoModel.from_pretrained(dst).eval()
    assert model.config.dataset_names == ["coco"]
    diff = (model(_image()).heatmaps["coco"] - heatmaps[0]).abs().max().item()
    assert diff <= TOLERANCE


@torch.no_grad()
def test_classic_single_dataset_vitpose_file(small_mdt, small_unsplit) -> None:
    _, _, heatmaps, _ = small_unsplit
    plain = plain_state_dict(small_mdt)
    model, report = official_to_posebh_model(plain, source="vitpose_small_coco_256x192.pth")
    assert model.config.dataset_names == ["coco"] and model.config.head_type == "classic"
    _sources_accounted_for(plain, report)
    diff = (model(_image()).heatmaps["coco"] - heatmaps[0]).abs().max().item()
    _row("classic single-dataset ViTPose-S (`vitpose_small_coco_256x192.pth`)",
         "posebh convert official --src vitpose_small_coco_256x192.pth --dst out/", "ViT-S, 1 expert", diff,
         "unsplit head 'coco' (the file is expert 0 merged)")
    assert diff <= TOLERANCE


@torch.no_grad()
def test_simple_decoder_file(small_mdt) -> None:
    sd = simple_decoder_state_dict(small_mdt)
    layout = detect_layout(sd)
    assert layout.head_type == "simple" and layout.kind == "plain" and layout.size.name == "small"
    model, report = official_to_posebh_model(sd, source="vitpose_small_simple_coco.pth")
    assert model.config.head_type == "simple" and model.config.dataset_names == ["coco"]
    _sources_accounted_for(sd, report)
    x = _image()
    want = reference_simple_head(sd, reference_backbone(sd, x, torch.zeros(1, dtype=torch.long), heads=12))
    diff = (model(x).heatmaps["coco"] - want).abs().max().item()
    assert want.abs().max() > 0.1
    _row("ViTPose-S simple decoder (`keypoint_head.final_layer` 3x3 only)",
         "posebh convert official --src vitpose_small_simple_coco.pth --dst out/", "ViT-S, 1 expert, simple", diff,
         "reference forward (ReLU, bilinear x4, 3x3 conv); no unsplit head exists")
    assert diff <= TOLERANCE


@torch.no_grad()
def test_one_mlp_three_head_file(small_mdt, small_unsplit) -> None:
    """vitpose_*_coco_aic_mpii.pth: one shared MLP, keypoint_head + two associate heads."""
    _, _, heatmaps, _ = small_unsplit
    sd = plain_state_dict(small_mdt, heads=3)
    model, report = official_to_posebh_model(sd, source="vitpose_small_coco_aic_mpii.pth")
    assert model.config.dataset_names == ["coco", "aic", "mpii"]
    assert model.config.backbone_config.num_experts == 3 and any("identical experts" in n for n in report.notes)
    _sources_accounted_for(sd, report)
    x = _image().expand(3, -1, -1, -1)
    out = model(x, torch.arange(3), heads="all").heatmaps
    reference = reference_backbone(sd, x[:1], torch.zeros(1, dtype=torch.long), heads=12)
    worst = 0.0
    for d, name in enumerate(("coco", "aic", "mpii")):
        prefix = "keypoint_head." if d == 0 else f"associate_keypoint_heads.{d - 1}."
        want = reference_head(sd, prefix)(reference)
        for e in range(3):  # every expert is the same MLP, so every dataset_index gives the same heatmaps
            worst = max(worst, (out[name][e:e + 1] - want).abs().max().item())
    assert (out["coco"][:1] - heatmaps[0]).abs().max().item() <= TOLERANCE  # expert 0 merged = unsplit coco head
    _row("one MLP, three heads (`vitpose_small_coco_aic_mpii.pth`)",
         "posebh convert official --src vitpose_small_coco_aic_mpii.pth --dst out/",
         "ViT-S, 3 identical experts", worst, "reference forward, heads coco/aic/mpii, every dataset_index")
    assert worst <= TOLERANCE


def test_split_file_errors(small_mdt) -> None:
    split = model_split(small_mdt, 2)  # mpii
    with pytest.raises(ConversionError, match=r"'aic' \(--dataset or the file name\) but the file's fc2 holds "
                                              r"expert 2 \('mpii'\)"):
        official_to_posebh_model(split, source="aic.pth")
    model, _ = official_to_posebh_model(split, source="epoch_100_split.pth")  # no name: the merged expert tells
    assert model.config.dataset_names == ["mpii"]
    model, _ = official_to_posebh_model(split, dataset="mpii", source="aic.pth")  # explicit name agrees with expert
    assert model.config.dataset_names == ["mpii"]
    with pytest.raises(ConversionError, match="'backbone.pos_embed' has shape \\[1, 193, 384\\] but --variant "
                                              "'base' expects \\[1, 193, 768\\]"):
        official_to_posebh_model(split, variant="base")
    with pytest.raises(ConversionError, match="keypoint_head predicts 16 keypoints but dataset 'coco' has 17"):
        official_to_posebh_model(model_split(small_mdt, 2, remove_experts=True), dataset="coco")
    with pytest.raises(ConversionError, match="use --datasets"):
        official_to_posebh_model(small_mdt, dataset="coco")


# ----------------------------------------------------------------------------------------------- LayerNorm eps
@pytest.mark.parametrize("eps", [1e-12, 1e-6])
def test_convert_vitpose_keeps_the_folders_layer_norm_eps(tmp_path, eps) -> None:
    """transformers' ViTPose folders say 1e-12 (its default; its converter never sets 1e-6): `convert vitpose` keeps
    whatever the folder says, so the converted model computes exactly what that folder computes in transformers."""
    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, out_indices=[2],
                                     layer_norm_eps=eps)
    folder = tmp_path / "vitpose"
    VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17)).save_pretrained(folder)
    model, _ = vitpose_to_posebh_model(folder)
    assert model.config.backbone_config.layer_norm_eps == eps
    assert max(vitpose_parity(folder, model, batch_size=1).values()) == 0.0


@torch.no_grad()
def test_layer_norm_eps_difference_is_measured(small_unsplit) -> None:
    """`convert official` uses the original 1e-6. The same ViT-S weights run with transformers' 1e-12 differ by
    the printed amount (random weights; real checkpoints have larger token variances, hence smaller differences)."""
    model = small_unsplit[0]
    assert model.config.backbone_config.layer_norm_eps == 1e-6
    config = copy.deepcopy(model.config)
    config.backbone_config.layer_norm_eps = 1e-12
    other = PoseBHForPoseEstimation(config).eval()
    other.load_state_dict(model.state_dict())
    x = _image().expand(6, -1, -1, -1)
    index = torch.arange(6)
    features = (model.backbone_features(x, index), other.backbone_features(x, index))
    feature_diff = (features[0] - features[1]).abs().max().item()
    heat_diff = max((model.heads[d](features[0][d:d + 1]) - other.heads[d](features[1][d:d + 1])).abs().max().item()
                    for d in range(6))
    print(f"\n[layer norm eps] ViT-S, eps 1e-6 vs 1e-12: backbone features max|diff| {feature_diff:.2e}, "
          f"heatmaps (6 heads) max|diff| {heat_diff:.2e}, heatmap max|value| "
          f"{max(model.heads[d](features[0][d:d + 1]).abs().max().item() for d in range(6)):.2f}")
    assert 0 < heat_diff < 1e-3


# ----------------------------------------------------------------------------------------------- ViT-B/L/H (slow)
@pytest.mark.slow
@pytest.mark.parametrize("size", ["base", "large", "huge"])
@torch.no_grad()
def test_large_sizes_split_equals_unsplit(size) -> None:
    sd = mdt_state_dict(size, proto=size == "base")
    s = OFFICIAL_SIZES[size]
    unsplit, report = official_to_posebh_model(sd)
    backbone = unsplit.config.backbone_config
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads,
            backbone.part_features, backbone.num_experts) == (s.hidden_size, s.num_hidden_layers,
                                                                s.num_attention_heads, s.part_features, 6)
    assert s.label in report.layout
    for plain, head_type in ((plain_state_dict(sd, heads=3), "classic"), (simple_decoder_state_dict(sd), "simple")):
        layout = detect_layout(plain)
        assert (layout.size, layout.kind, layout.head_type) == (s, "plain", head_type)
    x = _image()
    for d in (0, 5):
        name = DEFAULT_DATASETS[d]
        want = unsplit(x, d, heads=[name]).heatmaps[name]
        model, _ = official_to_posebh_model(model_split(sd, d), source=f"{SPLIT_NAMES[d]}.pth")
        assert model.config.dataset_names == [name]
        diff = (model(x).heatmaps[name] - want).abs().max().item()
        _row(f"PoseBH split `{SPLIT_NAMES[d]}.pth`, {s.label}", f"posebh convert official --src "
             f"{SPLIT_NAMES[d]}.pth --dst out/", f"{s.label}, 1 expert", diff, f"unsplit head {name!r}")
        assert diff <= TOLERANCE
        del model
