"""`posebh hub publish-official`: a synthetic official PoseBH .pth (the key layout of spec §7.2 at tiny size) is
converted and written as a model repo + one prototype-pack repo per skeleton (--dry-run), then pushed to the test
Hub and loaded back with AutoModel."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hub_server import FakeHub, hub_fixtures
from transformers import AutoModel

import posebh_hf  # noqa: F401  (registers the Auto classes)
from posebh_hf.cli import main
from posebh_hf.hub import PrototypePack, attach_prototype_pack
from posebh_hf.hub.publish import AUTHORS_RESULTS, pack_repo_id

_fake_hub, _hub_env = hub_fixtures()  # the `fake_hub` and `hub_env` fixtures

KEYPOINTS = (17, 14, 16, 17, 17, 133)  # coco aic mpii ap10k apt36k coco_wholebody
C, DEPTH, PART, HEAD, EMB, D, M = 64, 2, 16, 32, 16, 8, 3  # tiny widths ("tiny" backbone preset: 64 wide, 2 heads)


def _bn(prefix: str, channels: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": torch.rand(channels, generator=g) + 0.5, f"{prefix}.bias": torch.randn(channels,
            generator=g) * 0.1, f"{prefix}.running_mean": torch.randn(channels, generator=g) * 0.1,
            f"{prefix}.running_var": torch.rand(channels, generator=g) + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(0, dtype=torch.int64)}


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the exact official key names (spec §7.2), tiny shapes."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.02

    sd = {"backbone.pos_embed": r(1, 193, C), "backbone.patch_embed.proj.weight": r(C, 3, 16, 16),
          "backbone.patch_embed.proj.bias": r(C), "backbone.last_norm.weight": 1 + r(C),
          "backbone.last_norm.bias": r(C)}
    for i in range(DEPTH):
        p = f"backbone.blocks.{i}."
        sd.update({p + "norm1.weight": 1 + r(C), p + "norm1.bias": r(C), p + "attn.qkv.weight": r(3 * C, C),
                   p + "attn.qkv.bias": r(3 * C), p + "attn.proj.weight": r(C, C), p + "attn.proj.bias": r(C),
                   p + "norm2.weight": 1 + r(C), p + "norm2.bias": r(C), p + "mlp.fc1.weight": r(4 * C, C),
                   p + "mlp.fc1.bias": r(4 * C), p + "mlp.fc2.weight": r(C - PART, 4 * C),
                   p + "mlp.fc2.bias": r(C - PART)})
        for e in range(6):
            sd.update({p + f"mlp.experts.{e}.weight": r(PART, 4 * C), p + f"mlp.experts.{e}.bias": r(PART)})
    for j, k in enumerate(KEYPOINTS):
        p = "keypoint_head." if j == 0 else f"associate_keypoint_heads.{j - 1}."
        sd.update({p + "deconv_layers.0.weight": r(C, HEAD, 4, 4), p + "deconv_layers.3.weight": r(HEAD, HEAD, 4, 4),
                   p + "final_layer.weight": r(k, HEAD, 1, 1), p + "final_layer.bias": r(k),
                   **_bn(p + "deconv_layers.1", HEAD, g), **_bn(p + "deconv_layers.4", HEAD, g)})
    p = "proto_head."
    sd.update({p + "deconv_layers.0.weight": r(C, HEAD, 4, 4), p + "deconv_layers.3.weight": r(HEAD, HEAD, 4, 4),
               **_bn(p + "deconv_layers.1", HEAD, g), **_bn(p + "deconv_layers.4", HEAD, g),
               p + "neck.conv1.weight": r(EMB, HEAD, 3, 3), p + "neck.conv1.bias": r(EMB), **_bn(p + "neck.bn1", EMB, g),
               p + "neck.conv2.weight": r(EMB, EMB, 3, 3), p + "neck.conv2.bias": r(EMB), **_bn(p + "neck.bn2", EMB, g),
               p + "neck.downsample.0.weight": r(EMB, HEAD, 1, 1), **_bn(p + "neck.downsample.1", EMB, g),
               p + "head.0.weight": r(EMB, EMB, 3, 3), p + "head.0.bias": r(EMB), **_bn(p + "head.1", EMB, g),
               p + "head.3.weight": r(D, EMB, 1, 1), p + "head.3.bias": r(D),
               p + "kpt_prototype.prototypes": F.normalize(torch.randn(sum(KEYPOINTS), M, D, generator=g), dim=-1)})
    return sd


@pytest.fixture(scope="module")
def official_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("official") / "posebh_tiny.pth"
    torch.save({"state_dict": official_state_dict(), "meta": {"epoch": 100}}, path)
    return path


def test_dry_run_writes_the_exact_repo_folders(official_pth: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "dry"
    assert main(["hub", "publish-official", "--src", str(official_pth), "--repo-id", "my-org/posebh-tiny",
                 "--variant", "tiny", "--dry-run", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    names = ["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"]
    expected = {"my-org/posebh-tiny", *(pack_repo_id("my-org/posebh-tiny", n) for n in names)}
    assert set(report["folders"]) == expected and report["commits"] == {}
    assert pack_repo_id("my-org/posebh-tiny", "coco_wholebody") == "my-org/posebh-tiny-protos-coco-wholebody"
    model_dir = out / "my-org" / "posebh-tiny"
    from posebh_hf.hub.remote_code import build_remote_code

    assert sorted(p.name for p in model_dir.iterdir()) == sorted(["README.md", "config.json", "model.safetensors",
                                                                  *build_remote_code()])
    card = (model_dir / "README.md").read_text()
    assert "pipeline_tag: keypoint-detection" in card and "library_name: posebh_hf" in card
    assert "license: other" in card and "@inproceedings{jeong2025posebh" in card
    assert "Nothing measured for this upload yet" in card and "sha256" in card
    assert "my-org/posebh-tiny-protos-ap10k" in card and 'from_pretrained("my-org/posebh-tiny")' in card
    # packs: one per skeleton, values exactly the checkpoint's prototype rows, tied to the converted head
    state = official_state_dict()["proto_head.kpt_prototype.prototypes"]
    start = 0
    for name, k in zip(names, KEYPOINTS, strict=True):
        pack = PrototypePack.load(out / pack_repo_id("my-org/posebh-tiny", name))
        assert (pack.name, pack.num_keypoints, pack.embed_dim, pack.dataset_index) == (name, k, D, names.index(name))
        assert torch.equal(pack.prototypes, state[start:start + k]) and pack.base_model == "my-org/posebh-tiny"
        assert pack.base_revision is None and pack.learned["method"] == "posebh-mdt-official"
        start += k
    assert "prototypes.safetensors" in (out / "my-org" / "posebh-tiny-protos-coco" / "README.md").read_text()


def test_authors_numbers_are_cited_as_theirs(official_pth: Path, tmp_path: Path):
    from posebh_hf.hub.publish import publish_official

    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps([{"dataset": "COCO", "split": "val2017, GT boxes", "metric": "AP",
                                     "value": "12.3"}]))
    assert main(["hub", "publish-official", "--src", str(official_pth), "--repo-id", "my-org/b", "--variant",
                 "tiny", "--dry-run", str(tmp_path / "a"), "--measured", str(measured), "--measured-source",
                 "posebh evaluate on 10 images"]) == 0
    card = (tmp_path / "a" / "my-org" / "b" / "README.md").read_text()
    ours = card.split("## Our measurements")[1].split("## Provenance")[0]
    assert "12.3" in ours and "posebh evaluate on 10 images" in ours
    # base: the paper table, under the authors' heading only
    publish_official(official_pth, "my-org/c", variant="tiny", dry_run=tmp_path / "b")
    card = (tmp_path / "b" / "my-org" / "c" / "README.md").read_text()
    assert "None given." in card.split("## Results reported by the authors")[1].split("##")[0]
    from posebh_hf.hub.cards import render_model_card
    from posebh_hf.modeling import PoseBHConfig

    text = render_model_card(PoseBHConfig.tiny(), repo_id="o/m", reported_results=AUTHORS_RESULTS["base"],
                             reported_source="the paper")
    authors = text.split("## Results reported by the authors")[1].split("## Our measurements")[0]
    assert "**the authors' results**" in authors and "| COCO | val2017, detected boxes (AP_H 56) | AP | 77.3 |" in authors
    assert "77.3" not in text.split("## Our measurements")[1]


def test_publish_pushes_model_and_packs(official_pth: Path, hub_env: dict[str, str], fake_hub: FakeHub,
                                        capsys: pytest.CaptureFixture[str]):
    assert main(["hub", "publish-official", "--src", str(official_pth), "--repo-id", "my-org/posebh-tiny",
                 "--variant", "tiny"]) == 0
    commits = json.loads(capsys.readouterr().out)["commits"]
    assert len(commits) == 7 and len(fake_hub.repos) == 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModel.from_pretrained("my-org/posebh-tiny").eval()
    # packs record the model commit they were exported from, and attach back cleanly (same embedding head)
    pack = PrototypePack.from_pretrained("my-org/posebh-tiny-protos-ap10k")
    assert pack.base_revision == commits["my-org/posebh-tiny"]
    attach_prototype_pack(model, pack, replace=True)
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x, dataset_index="ap10k", output_prototype_heatmaps=True)
    assert set(out.heatmaps) == {"ap10k"} and out.prototype_heatmaps["ap10k"].shape == (1, 17, 64, 48)
    assert main(["hub", "publish-official", "--src", str(official_pth), "--repo-id", "posebh-tiny",
                 "--variant", "tiny"]) == 2
    assert "must be 'ORG/NAME'" in capsys.readouterr().err
