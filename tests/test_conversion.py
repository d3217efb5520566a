"""Checkpoint converters: transformers ViTPose(++) folders and official PoseBH / ViTPose++ `.pth` files.

ViTPose parity is checked against transformers' own `VitPoseForPoseEstimation`; the official converter against an
independent reference forward written here from the spec (§2.2-§2.5, key table §7.2), on synthetic state dicts.
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

import posebh_hf  # noqa: F401  (registers the Auto classes)
from posebh_hf.cli import main as cli_main
from posebh_hf.configuration_posebh import DEFAULT_DATASETS
from posebh_hf.conversion import (
    PARITY_TOLERANCE,
    ConversionError,
    format_parity,
    load_official_state_dict,
    official_to_posebh_model,
    vitpose_parity,
    vitpose_to_posebh_model,
)
from posebh_hf.modeling import PoseBHForPoseEstimation

KEYPOINTS = (17, 14, 16, 17, 17, 133)
TINY = {"C": 64, "depth": 2, "heads": 2, "P": 16}


# =============================================================================================== transformers ViTPose
def _tiny_vitpose(tmp_path, num_experts: int, simple: bool = False, seed: int = 0) -> str:
    """Save a random tiny transformers ViTPose(++) with non-trivial BN statistics; return its folder."""
    torch.manual_seed(seed)
    backbone = VitPoseBackboneConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     num_experts=num_experts, part_features=16, out_indices=[2])
    model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, use_simple_decoder=simple,
                                                   num_labels=17)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    folder = tmp_path / f"vitpose_e{num_experts}{'_simple' if simple else ''}"
    model.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize(("num_experts", "simple"), [(1, False), (6, False), (1, True)],
                         ids=["vitpose", "vitpose++", "vitpose-simple"])
def test_vitpose_conversion_parity_per_dataset_index(tmp_path, capsys, num_experts, simple) -> None:
    src = _tiny_vitpose(tmp_path, num_experts, simple)
    dst = tmp_path / "posebh"
    check = [] if num_experts == 1 else ["--no-check"]  # the CLI check repeats vitpose_parity below
    assert cli_main(["convert", "vitpose", "--src", src, "--dst", str(dst), *check]) == 0
    cli_out = capsys.readouterr().out
    assert ("parity vs transformers" in cli_out and "dataset_index=0 " in cli_out) == (not check)

    converted = AutoModel.from_pretrained(dst).eval()
    assert isinstance(converted, PoseBHForPoseEstimation)
    assert converted.config.head_type == ("simple" if simple else "classic")
    expected_names = list(DEFAULT_DATASETS) if num_experts == 6 else ["coco"]
    assert converted.config.dataset_names == expected_names
    diffs = vitpose_parity(src, converted, batch_size=1, seed=1)
    assert sorted(diffs) == list(range(num_experts))
    label = {(1, False): "ViTPose", (6, False): "ViTPose++", (1, True): "ViTPose simple"}[(num_experts, simple)]
    with capsys.disabled():  # the numbers the lead reports
        print(f"\n[parity] {label} -> PoseBH, heatmaps['coco'] vs VitPoseForPoseEstimation:")
        print(format_parity(diffs, converted.config.dataset_names))
    assert max(diffs.values()) <= PARITY_TOLERANCE

    # the comparison is not vacuous: outputs are O(1) and, for ViTPose++, depend on the expert
    reference = VitPoseForPoseEstimation.from_pretrained(src).eval()
    x = torch.randn(1, 3, 256, 192).expand(2, -1, -1, -1)
    with torch.no_grad():
        out = reference(x, dataset_index=torch.tensor([0, num_experts - 1])).heatmaps
    assert out.abs().max() > 1e-2
    if num_experts > 1:
        assert (out[0] - out[1]).abs().max() > 1e-3


def test_vitpose_plus_report_lists_fresh_parts(tmp_path) -> None:
    src = _tiny_vitpose(tmp_path, 6)
    model, report = vitpose_to_posebh_model(src)
    fresh = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("heads.") else "") for k in report.initialised}
    assert fresh == {"heads.1", "heads.2", "heads.3", "heads.4", "heads.5", "embedding_head", "keypoint_prototypes"}
    assert report.mapped["heads.0.conv.weight"] == "head.conv.weight"
    protos = model.keypoint_prototypes.prototypes
    assert torch.allclose(protos.norm(dim=-1), torch.ones(())) and protos.std() > 0.1


def test_vitpose_cli_errors_are_one_line(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["convert", "vitpose", "--src", str(empty), "--dst", str(tmp_path / "o1")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a ViTPose or PoseBH checkpoint folder" in err

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    assert cli_main(["convert", "vitpose", "--src", str(other), "--dst", str(tmp_path / "o2")]) != 0
    assert "model_type 'bert'" in capsys.readouterr().err

    posebh_dir = tmp_path / "already"
    PoseBHForPoseEstimation(posebh_hf.PoseBHConfig.tiny(dataset_names=["coco"])).save_pretrained(posebh_dir)
    assert cli_main(["convert", "vitpose", "--src", str(posebh_dir), "--dst", str(tmp_path / "o3")]) != 0
    assert "already a PoseBH checkpoint" in capsys.readouterr().err

    src = _tiny_vitpose(tmp_path, 1)
    assert cli_main(["convert", "vitpose", "--src", src, "--dst", str(posebh_dir), "--no-check"]) != 0
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert cli_main(["convert", "vitpose", "--src", src, "--dst", str(tmp_path / "o4"),
                     "--datasets", "mpii"]) != 0
    assert "predicts 17 keypoints but the first dataset 'mpii' has 16" in capsys.readouterr().err


# =============================================================================================== official .pth
def _bn(sd: dict, prefix: str, n: int, gen: torch.Generator) -> None:
    sd[f"{prefix}.weight"] = 0.5 + torch.rand(n, generator=gen)
    sd[f"{prefix}.bias"] = 0.1 * torch.randn(n, generator=gen)
    sd[f"{prefix}.running_mean"] = 0.1 * torch.randn(n, generator=gen)
    sd[f"{prefix}.running_var"] = 0.5 + torch.rand(n, generator=gen)
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)


def make_official_state_dict(C: int = 64, depth: int = 2, P: int = 16, experts: int = 6,
                             keypoints: tuple[int, ...] = KEYPOINTS, deconv: int = 32, proto: bool = True,
                             clusters: int = 5, embed_ch: int = 64, D: int = 64, M: int = 3, seed: int = 0
                             ) -> OrderedDict[str, torch.Tensor]:
    """A random state dict with exactly the keys of spec §7.2 (ViT-B shapes with C=768, depth=12, P=192,
    deconv=256). Weights ~ N(0, 1/fan_in) so activations stay O(1)."""
    gen = torch.Generator().manual_seed(seed)

    def w(*shape: int, fan_in: int | None = None) -> torch.Tensor:
        fan = fan_in if fan_in is not None else (shape[1] if len(shape) > 1 else 1)
        return torch.randn(*shape, generator=gen) / fan**0.5

    hidden = 4 * C
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    sd["backbone.pos_embed"] = 0.02 * torch.randn(1, 16 * 12 + 1, C, generator=gen)
    sd["backbone.patch_embed.proj.weight"] = w(C, 3, 16, 16, fan_in=3 * 256)
    sd["backbone.patch_embed.proj.bias"] = 0.02 * torch.randn(C, generator=gen)
    for i in range(depth):
        b = f"backbone.blocks.{i}."
        sd[b + "norm1.weight"], sd[b + "norm1.bias"] = 1 + 0.1 * torch.randn(C, generator=gen), w(C) * 0.1
        sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"] = w(3 * C, C), 0.02 * w(3 * C)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = w(C, C), 0.02 * w(C)
        sd[b + "norm2.weight"], sd[b + "norm2.bias"] = 1 + 0.1 * torch.randn(C, generator=gen), w(C) * 0.1
        sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"] = w(hidden, C), 0.02 * w(hidden)
        out = C - P if experts > 1 else C
        sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"] = w(out, hidden), 0.02 * w(out)
        for e in range(experts if experts > 1 else 0):
            sd[b + f"mlp.experts.{e}.weight"], sd[b + f"mlp.experts.{e}.bias"] = w(P, hidden), 0.02 * w(P)
    sd["backbone.last_norm.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
    sd["backbone.last_norm.bias"] = 0.1 * w(C)

    def upsampler(prefix: str) -> None:
        sd[prefix + "deconv_layers.0.weight"] = w(C, deconv, 4, 4, fan_in=C * 4)
        _bn(sd, prefix + "deconv_layers.1", deconv, gen)
        sd[prefix + "deconv_layers.3.weight"] = w(deconv, deconv, 4, 4, fan_in=deconv * 4)
        _bn(sd, prefix + "deconv_layers.4", deconv, gen)

    for j, k in enumerate(keypoints):
        prefix = "keypoint_head." if j == 0 else f"associate_keypoint_heads.{j - 1}."
        upsampler(prefix)
        sd[prefix + "final_layer.weight"] = w(k, deconv, 1, 1)
        sd[prefix + "final_layer.bias"] = 0.1 * w(k)
    if proto:
        p = "proto_head."
        upsampler(p)
        sd[p + "neck.conv1.weight"], sd[p + "neck.conv1.bias"] = w(embed_ch, deconv, 3, 3, fan_in=9 * deconv), \
            0.1 * w(embed_ch)
        _bn(sd, p + "neck.bn1", embed_ch, gen)
        sd[p + "neck.conv2.weight"], sd[p + "neck.conv2.bias"] = w(embed_ch, embed_ch, 3, 3, fan_in=9 * embed_ch), \
            0.1 * w(embed_ch)
        _bn(sd, p + "neck.bn2", embed_ch, gen)
        sd[p + "neck.downsample.0.weight"] = w(embed_ch, deconv, 1, 1)
        _bn(sd, p + "neck.downsample.1", embed_ch, gen)
        sd[p + "head.0.weight"], sd[p + "head.0.bias"] = w(embed_ch, embed_ch, 3, 3, fan_in=9 * embed_ch), \
            0.1 * w(embed_ch)
        _bn(sd, p + "head.1", embed_ch, gen)
        sd[p + "head.3.weight"], sd[p + "head.3.bias"] = w(D, embed_ch, 1, 1), 0.1 * w(D)
        sd[p + "kpt_prototype.prototypes"] = F.normalize(torch.randn(sum(keypoints), M, D, generator=gen), dim=-1)
        if clusters:
            sd[p + "cluster_prototype.prototypes"] = F.normalize(torch.randn(clusters, M, D, generator=gen), dim=-1)
    return sd


# ----------------------------------------------------------------------------------------------- reference forward
def reference_backbone(sd: dict, x: torch.Tensor, dataset_index: torch.Tensor, heads: int) -> torch.Tensor:
    """ViTMoE forward from spec §2.2: [B, 3, 256, 192] -> [B, C, 16, 12]."""
    tokens = F.conv2d(x, sd["backbone.patch_embed.proj.weight"], sd["backbone.patch_embed.proj.bias"],
                      stride=16, padding=2)  # padding 2 -> 16 x 12
    batch, C, h, w = tokens.shape
    tokens = tokens.flatten(2).transpose(1, 2)  # row-major (H then W)
    pos = sd["backbone.pos_embed"]
    tokens = tokens + pos[:, 1:] + pos[:, :1]
    depth = len({k.split(".")[2] for k in sd if k.startswith("backbone.blocks.")})
    for i in range(depth):
        b = f"backbone.blocks.{i}."
        y = F.layer_norm(tokens, (C,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(batch, -1, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        attn = ((q * (C // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(batch, -1, C)
        tokens = tokens + F.linear(y, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        y = F.layer_norm(tokens, (C,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps=1e-6)
        y = F.gelu(F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
        shared = F.linear(y, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        if b + "mlp.experts.0.weight" in sd:  # concat(fc2(h), experts[e](h)), e per sample
            expert = torch.stack([F.linear(y[n], sd[b + f"mlp.experts.{int(e)}.weight"],
                                           sd[b + f"mlp.experts.{int(e)}.bias"])
                                  for n, e in enumerate(dataset_index)])
            shared = torch.cat([shared, expert], dim=-1)
        tokens = tokens + shared
    tokens = F.layer_norm(tokens, (C,), sd["backbone.last_norm.weight"], sd["backbone.last_norm.bias"], eps=1e-6)
    return tokens.transpose(1, 2).reshape(batch, C, h, w)


def _load(module: nn.Module, sd: dict, mapping: dict[str, str]) -> nn.Module:
    module.load_state_dict({dst: sd[src] for dst, src in mapping.items()}, strict=True)
    return module.eval()


def _upsampler_sequential(sd: dict, prefix: str) -> nn.Sequential:
    """The official `deconv_layers` Sequential (indices 0..5) built from the source keys."""
    c_in, ch = sd[prefix + "deconv_layers.0.weight"].shape[:2]
    seq = nn.Sequential(nn.ConvTranspose2d(c_in, ch, 4, 2, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(),
                        nn.ConvTranspose2d(ch, ch, 4, 2, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU())
    mapping = {k[len(prefix) + len("deconv_layers."):]: k for k in sd if k.startswith(prefix + "deconv_layers.")}
    return _load(seq, sd, mapping)


def reference_head(sd: dict, prefix: str) -> nn.Sequential:
    """TopdownHeatmapSimpleHead as a plain Sequential: deconv_layers + final 1x1 conv."""
    seq = _upsampler_sequential(sd, prefix)
    k, ch = sd[prefix + "final_layer.weight"].shape[:2]
    final = _load(nn.Conv2d(ch, k, 1), sd, {"weight": prefix + "final_layer.weight",
                                            "bias": prefix + "final_layer.bias"})
    return nn.Sequential(*seq, final).eval()


def reference_embedding(sd: dict, features: torch.Tensor) -> torch.Tensor:
    """KptProtoHead from spec §2.4, functionally: upsampler -> residual neck (SiLU) -> conv-BN-SiLU-conv."""
    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                            training=False, eps=1e-5)

    p = "proto_head."
    x = _upsampler_sequential(sd, p)(features)
    main = F.silu(bn(F.conv2d(x, sd[p + "neck.conv1.weight"], sd[p + "neck.conv1.bias"], padding=1), p + "neck.bn1"))
    main = bn(F.conv2d(main, sd[p + "neck.conv2.weight"], sd[p + "neck.conv2.bias"], padding=1), p + "neck.bn2")
    short = bn(F.conv2d(x, sd[p + "neck.downsample.0.weight"]), p + "neck.downsample.1")
    x = F.silu(main + short)
    x = F.silu(bn(F.conv2d(x, sd[p + "head.0.weight"], sd[p + "head.0.bias"], padding=1), p + "head.1"))
    return F.conv2d(x, sd[p + "head.3.weight"], sd[p + "head.3.bias"])


def reference_prototype_heatmap(emb: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """|cos| between normalised pixels and prototypes, max over M, clamped (spec §2.5)."""
    e = F.normalize(emb, dim=1)
    p = F.normalize(protos, dim=-1)
    sims = torch.einsum("bdhw,kmd->bkmhw", e, p).abs()
    return sims.amax(dim=2).clamp(1e-4, 1 - 1e-4)


# ----------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def official_sd() -> OrderedDict[str, torch.Tensor]:
    return make_official_state_dict()


@pytest.fixture(scope="module")
def official_model(official_sd) -> PoseBHForPoseEstimation:
    model, _ = official_to_posebh_model(official_sd, variant="tiny")
    return model


def test_every_source_key_is_mapped_or_dropped(official_sd) -> None:
    sd = dict(official_sd, **{"backbone.cls_token": torch.zeros(1, 1, 64)})
    model, report = official_to_posebh_model(sd, variant="tiny")
    sources = set(report.mapped.values()) | set(report.dropped)
    assert sources == set(sd)
    assert list(report.dropped) == ["backbone.cls_token"]
    assert report.initialised == []  # nothing left to chance: every PoseBH tensor came from the checkpoint
    assert len(report.mapped) == len(model.state_dict())
    assert report.mapped["backbone.encoder.layer.1.attention.attention.value.bias"] == "backbone.blocks.1.attn.qkv.bias"
    assert report.mapped["heads.5.conv.weight"] == "associate_keypoint_heads.4.final_layer.weight"
    assert report.mapped["embedding_head.neck.shortcut_batchnorm.running_var"] == \
        "proto_head.neck.downsample.1.running_var"
    assert model.config.num_cluster_prototypes == 5 and model.config.dataset_names == list(DEFAULT_DATASETS)


@torch.no_grad()
def test_official_backbone_matches_reference_forward(official_sd, official_model, capsys) -> None:
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(5)).expand(6, -1, -1, -1)
    index = torch.tensor([0, 1, 2, 3, 4, 5])  # one sample per expert, same image
    expected = reference_backbone(official_sd, x, index, heads=TINY["heads"])
    got = official_model.backbone_features(x, index)
    assert expected.abs().max() > 0.5 and (expected[0] - expected[5]).abs().max() > 1e-2  # experts matter
    diffs = (got - expected).abs().flatten(1).amax(dim=1)
    with capsys.disabled():
        print(f"\n[official tiny] backbone max|diff| per dataset_index: {[f'{d:.2e}' for d in diffs.tolist()]}")
    assert diffs.max().item() <= 1e-5


@torch.no_grad()
def test_official_heads_embedding_and_prototypes_match_reference(official_sd, official_model) -> None:
    gen = torch.Generator().manual_seed(6)
    features = torch.randn(2, 64, 16, 12, generator=gen)
    for j in range(6):
        prefix = "keypoint_head." if j == 0 else f"associate_keypoint_heads.{j - 1}."
        expected = reference_head(official_sd, prefix)(features)
        got = official_model.heads[j](features)
        assert got.shape == (2, KEYPOINTS[j], 64, 48) and expected.abs().max() > 0.1
        assert (got - expected).abs().max().item() <= 1e-5
    emb = official_model.embedding_head(features)
    expected_emb = reference_embedding(official_sd, features)
    assert expected_emb.abs().max() > 0.1 and (emb - expected_emb).abs().max().item() <= 1e-5
    protos = official_sd["proto_head.kpt_prototype.prototypes"]
    assert torch.equal(official_model.keypoint_prototypes.prototypes, protos)
    assert torch.equal(official_model.keypoint_prototypes.cluster_prototypes,
                       official_sd["proto_head.cluster_prototype.prototypes"])
    for name, (start, stop) in official_model.config.prototype_offsets.items():
        want = reference_prototype_heatmap(expected_emb, protos[start:stop])
        got = official_model.prototype_heatmaps(emb, name)
        assert (got - want).abs().max().item() <= 1e-5


@torch.no_grad()
def test_official_full_forward_matches_reference(official_sd, official_model) -> None:
    x = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(7))
    index = torch.tensor([3, 5])
    out = official_model(x, index, heads="all", output_embeddings=True)
    features = reference_backbone(official_sd, x, index, heads=TINY["heads"])
    for j, name in enumerate(DEFAULT_DATASETS):
        prefix = "keypoint_head." if j == 0 else f"associate_keypoint_heads.{j - 1}."
        assert (out.heatmaps[name] - reference_head(official_sd, prefix)(features)).abs().max().item() <= 1e-5
    assert (out.embeddings - reference_embedding(official_sd, features)).abs().max().item() <= 1e-5


@torch.no_grad()
def test_split_plain_checkpoint_equals_moe_expert(official_sd, official_model) -> None:
    """Spec §7.3/§7.5: a plain ViT with fc2 = [fc2; experts[e]] + head e equals the MoE model routed to e."""
    e = 3
    plain = OrderedDict()
    for key, value in official_sd.items():
        if ".mlp.experts." in key or key.startswith(("associate_keypoint_heads.", "proto_head.")):
            continue
        if ".mlp.fc2." in key:
            value = torch.cat([value, official_sd[key.replace("fc2", f"experts.{e}")]], dim=0)
        plain[key] = value
    for key in [k for k in plain if k.startswith("keypoint_head.")]:  # head e into the keypoint_head slot
        plain[key] = official_sd[key.replace("keypoint_head.", f"associate_keypoint_heads.{e - 1}.")]
    model, report = official_to_posebh_model(plain, variant="tiny", dataset_names=["ap10k"])
    assert model.backbone.config.num_experts == 1 and model.config.dataset_names == ["ap10k"]
    assert {k.split(".")[0] for k in report.initialised} == {"embedding_head", "keypoint_prototypes"}
    x = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(8))
    got = model(x).heatmaps["ap10k"]
    want = official_model(x, e, heads=["ap10k"]).heatmaps["ap10k"]
    assert (got - want).abs().max().item() <= 1e-5


def test_vitpose_plus_pth_without_proto_head(official_sd) -> None:
    sd = OrderedDict((k, v) for k, v in official_sd.items() if not k.startswith("proto_head."))
    model, report = official_to_posebh_model(sd, variant="tiny")
    assert {k.split(".")[0] for k in report.initialised} == {"embedding_head", "keypoint_prototypes"}
    protos = model.keypoint_prototypes.prototypes
    assert protos.shape == (214, 3, 64) and torch.allclose(protos.norm(dim=-1), torch.ones(()))
    assert model.keypoint_prototypes.cluster_prototypes is None


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "module", "bare"])
def test_official_file_wrappers_and_module_prefix(tmp_path, official_sd, official_model, wrapper) -> None:
    sd = OrderedDict((("module." + k) if wrapper == "module" else k, v) for k, v in official_sd.items())
    payload = sd if wrapper == "bare" else {wrapper: sd, "meta": {"epoch": 100, "mmcv_version": "1.4.8"}}
    path = tmp_path / "ckpt.pth"
    torch.save(payload, path)
    loaded = load_official_state_dict(path)
    assert list(loaded) == list(official_sd)
    dst = tmp_path / "out"
    assert cli_main(["convert", "official", "--src", str(path), "--dst", str(dst), "--variant", "tiny"]) == 0
    converted = AutoModel.from_pretrained(dst)
    for key, value in official_model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key


def _convert_error(tmp_path, sd: dict, capsys, *extra: str) -> str:
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, path)
    code = cli_main(["convert", "official", "--src", str(path), "--dst", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
    return err


def test_official_errors_name_the_key_and_shapes(tmp_path, official_sd, capsys) -> None:
    missing = OrderedDict((k, v) for k, v in official_sd.items() if k != "backbone.blocks.1.norm2.bias")
    err = _convert_error(tmp_path, missing, capsys, "--variant", "tiny")
    assert "backbone.encoder.layer.1.layernorm_after.bias" in err and "lacks" in err

    bad_shape = OrderedDict(official_sd)
    bad_shape["associate_keypoint_heads.1.final_layer.bias"] = torch.zeros(15)
    err = _convert_error(tmp_path, bad_shape, capsys, "--variant", "tiny")
    assert "'associate_keypoint_heads.1.final_layer.bias' has shape [15]" in err and "expects [16]" in err

    bad_protos = OrderedDict(official_sd)
    bad_protos["proto_head.kpt_prototype.prototypes"] = torch.zeros(200, 3, 64)
    err = _convert_error(tmp_path, bad_protos, capsys, "--variant", "tiny")
    assert "proto_head.kpt_prototype.prototypes" in err and "[200, 3, 64]" in err and "[214, 3, 64]" in err

    unknown = OrderedDict(official_sd, **{"backbone.blocks.0.attn.rel_pos": torch.zeros(3)})
    err = _convert_error(tmp_path, unknown, capsys, "--variant", "tiny")
    assert "backbone.blocks.0.attn.rel_pos" in err and "not part of the PoseBH/ViTPose++ layout" in err

    err = _convert_error(tmp_path, official_sd, capsys, "--variant", "base")
    assert re.search(r"'backbone\.pos_embed' has shape \[1, 193, 64\] .* expects \[1, 193, 768\]", err)
    assert "--variant 'base'" in err

    err = _convert_error(tmp_path, official_sd, capsys, "--variant", "tiny", "--datasets", "coco", "aic")
    assert "has 6 heatmap heads" in err


def test_official_refuses_pickled_objects_and_missing_files(tmp_path, capsys) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": {"x": OrderedDict}}, fh, protocol=2)  # a class reference: unsafe
    with pytest.raises(ConversionError, match="weights_only=True"):
        load_official_state_dict(path)
    code = cli_main(["convert", "official", "--src", str(tmp_path / "nope.pth"), "--dst", str(tmp_path / "o")])
    assert code != 0 and "does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- true ViT-B shapes
@pytest.mark.slow
def test_official_vit_b_shapes_end_to_end(tmp_path) -> None:
    sd = make_official_state_dict(C=768, depth=12, P=192, deconv=256, clusters=96)
    assert len(sd) == 420  # spec §7.2
    params = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert params == 150_920_022  # spec §7.2 parameter total incl. prototypes
    path = tmp_path / "posebh_vitb.pth"
    torch.save({"state_dict": sd, "meta": {"epoch": 100}}, path)
    dst = tmp_path / "posebh-vit-b"
    assert cli_main(["convert", "official", "--src", str(path), "--dst", str(dst), "--variant", "base"]) == 0
    model = AutoModel.from_pretrained(dst).eval()
    assert sum(p.numel() for p in model.backbone.parameters()) == 121_195_776
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(9)).expand(6, -1, -1, -1)
    index = torch.arange(6)  # one sample per expert
    with torch.no_grad():
        features = reference_backbone(sd, x, index, heads=12)
        diffs = (model.backbone_features(x, index) - features).abs().flatten(1).amax(dim=1)
        print(f"\n[official ViT-B] backbone max|diff| per dataset_index: {[f'{d:.2e}' for d in diffs.tolist()]}")
        assert diffs.max().item() <= 1e-5
        for e in range(6):
            prefix = "keypoint_head." if e == 0 else f"associate_keypoint_heads.{e - 1}."
            head_out = model.heads[e](features[e:e + 1])
            assert (head_out - reference_head(sd, prefix)(features[e:e + 1])).abs().max().item() <= 1e-5
