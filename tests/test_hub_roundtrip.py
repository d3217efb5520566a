"""Hub round trips against the Hub-protocol test double: packs (export -> push -> pull in a fresh process -> attach ->
identical prototype heatmaps; then the same from the offline cache) and model repos (card, revisions)."""

from __future__ import annotations

import copy
import json
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hub_server import PYTHON, FakeHub, hub_fixtures, subprocess_env
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import load_file, save_file
from transformers import AutoModel

import posebh_hf  # noqa: F401  (registers the Auto classes)
from posebh_hf.cli import main
from posebh_hf.hub import PrototypePack, attach_prototype_pack, embedding_fingerprint
from posebh_hf.hub.model_repo import push_model_to_hub
from posebh_hf.modeling import PoseBHConfig, PoseBHForPoseEstimation
from posebh_hf.skeletons import Skeleton

MOUSE = Skeleton.from_dict({"name": "mouse4", "keypoints": ["snout", "left_ear", "right_ear", "tail_base"]})

# Runs in a fresh interpreter: load the second model, pull the pack from the (test) Hub, attach, write heatmaps;
# then again in offline mode (huggingface_hub refuses every HTTP request), i.e. from the cache the first pull built.
CHILD = r"""
import sys, torch
import huggingface_hub.constants
from safetensors.torch import load_file, save_file
from posebh_hf.hub import PrototypePack, attach_prototype_pack
from posebh_hf.modeling import PoseBHForPoseEstimation
model_dir, repo_id, inputs, out = sys.argv[1:]
model = PoseBHForPoseEstimation.from_pretrained(model_dir).eval()
maps = {}
for mode in ("online", "offline"):
    huggingface_hub.constants.HF_HUB_OFFLINE = mode == "offline"
    pack = PrototypePack.from_pretrained(repo_id)
    attach_prototype_pack(model, pack, replace=mode == "offline")
    with torch.no_grad():
        maps[mode] = model(load_file(inputs)["x"], dataset_index=pack.dataset_index, output_prototype_heatmaps=True,
                           prototype_skeletons=[pack.name]).prototype_heatmaps[pack.name].contiguous()
save_file(maps, out)
print(pack.source, pack.base_model, model.config.extra_prototype_skeletons)
"""

_fake_hub, _hub_env = hub_fixtures()  # the `fake_hub` and `hub_env` fixtures


def _quiet_from_pretrained(path: str | Path, **kwargs) -> PoseBHForPoseEstimation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PoseBHForPoseEstimation.from_pretrained(path, **kwargs).eval()


@pytest.fixture(scope="module")
def tiny() -> PoseBHForPoseEstimation:
    torch.manual_seed(0)
    return PoseBHForPoseEstimation(PoseBHConfig.tiny(num_hidden_layers=1)).eval()


def _run_child(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run([PYTHON, "-c", CHILD, *args], env=subprocess_env(env), capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_pack_roundtrip_through_the_hub_in_a_fresh_process(tiny: PoseBHForPoseEstimation, hub_env: dict[str, str],
                                                           fake_hub: FakeHub, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]):
    # The second model: same weights, saved before the skeleton is learned/attached.
    tiny.save_pretrained(tmp_path / "second")
    # The first model has prototypes for a head-less skeleton (as if learned with a frozen embedding head).
    first = copy.deepcopy(tiny)
    learned = F.normalize(torch.randn(4, 3, 64, generator=torch.Generator().manual_seed(3)), dim=-1)
    attach_prototype_pack(first, PrototypePack(learned, MOUSE, "abs_cosine", 2, embedding_fingerprint(first)))
    first.save_pretrained(tmp_path / "first")
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = first(x, dataset_index=2, output_prototype_heatmaps=True,
                          prototype_skeletons=["mouse4"]).prototype_heatmaps["mouse4"]
    save_file({"x": x}, str(tmp_path / "x.safetensors"))

    # export -> push with the CLI
    assert main(["pack", "export", "--model", str(tmp_path / "first"), "--skeleton", "mouse4", "--out",
                 str(tmp_path / "pack"), "--base-model", "org/tiny"]) == 0
    assert main(["pack", "push", str(tmp_path / "pack"), "--repo-id", "org/mouse4-protos"]) == 0
    pushed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    files = fake_hub.files("org/mouse4-protos")
    assert {"prototypes.safetensors", "prototype_config.json", "README.md"} <= set(files)
    assert pushed["commit"] == fake_hub.repos[("model", "org/mouse4-protos")].branches["main"]
    assert "org/mouse4-protos" in files["README.md"].decode()  # the card names the repo it lives in

    # pull in a fresh process, attach to the second model: identical prototype heatmaps, online and from the cache
    requests_before = len(fake_hub.requests)
    stdout = _run_child([str(tmp_path / "second"), "org/mouse4-protos", str(tmp_path / "x.safetensors"),
                         str(tmp_path / "maps.safetensors")], hub_env)
    assert "org/mouse4-protos org/tiny ['mouse4']" in stdout
    maps = load_file(tmp_path / "maps.safetensors")
    assert torch.equal(maps["online"], reference) and torch.equal(maps["offline"], reference)
    downloads = [p for m, p in fake_hub.requests[requests_before:] if "/resolve/" in p]
    assert sorted({p.rsplit("/", 1)[-1] for p in downloads}) == ["prototype_config.json", "prototypes.safetensors"]


def test_pack_revisions_and_cli_pull_attach(tiny: PoseBHForPoseEstimation, hub_env: dict[str, str],
                                            fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    v1 = PrototypePack(F.normalize(torch.randn(4, 3, 64), dim=-1), MOUSE, "abs_cosine", 1, embedding_fingerprint(tiny))
    v2 = PrototypePack(F.normalize(torch.randn(4, 3, 64), dim=-1), MOUSE, "abs_cosine", 1, embedding_fingerprint(tiny))
    first_commit = v1.push_to_hub("org/mouse")
    v2.push_to_hub("org/mouse", revision="v2")  # a branch, created on the fly
    assert torch.equal(PrototypePack.from_pretrained("org/mouse").prototypes, v1.prototypes)
    assert torch.equal(PrototypePack.from_pretrained("org/mouse", revision="v2").prototypes, v2.prototypes)
    assert torch.equal(PrototypePack.from_pretrained("org/mouse", revision=first_commit).prototypes, v1.prototypes)

    assert main(["pack", "pull", "org/mouse", "--revision", "v2", "--out", str(tmp_path / "pulled")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skeleton"] == "mouse4" and summary["source"] == "org/mouse@v2"
    assert torch.equal(PrototypePack.load(tmp_path / "pulled").prototypes, v2.prototypes)

    tiny.save_pretrained(tmp_path / "model")
    assert main(["pack", "attach", "--model", str(tmp_path / "model"), "--pack", "org/mouse", "--pack-revision",
                 "v2", "--out", str(tmp_path / "attached")]) == 0
    attached = _quiet_from_pretrained(tmp_path / "attached")
    assert attached.config.extra_prototype_skeletons == ["mouse4"]
    assert torch.equal(attached.keypoint_prototypes.prototypes[attached.prototype_rows("mouse4")], v2.prototypes)
    # a repo that holds a pickle instead of safetensors is refused by name
    api = HfApi()
    api.create_repo("org/pickled")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="prototype_config.json", repo_id="org/pickled")
    api.upload_file(path_or_fileobj=b"\x80\x04K\x01.", path_in_repo="prototypes.bin", repo_id="org/pickled")
    assert main(["pack", "pull", "org/pickled"]) == 2
    assert "only safetensors payloads are loaded" in capsys.readouterr().err
    assert main(["pack", "pull", "org/does-not-exist"]) == 2
    assert "not found on the Hub" in capsys.readouterr().err


def test_model_repo_card_and_revisions(tiny: PoseBHForPoseEstimation, hub_env: dict[str, str], fake_hub: FakeHub):
    first_commit = push_model_to_hub(tiny, "org/tiny-model", description="A test model.", license="apache-2.0")
    files = fake_hub.files("org/tiny-model")
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    card = ModelCard.load("org/tiny-model")
    assert card.data.library_name == "posebh_hf" and card.data.pipeline_tag == "keypoint-detection"
    assert card.data.license == "apache-2.0" and "coco" in card.data.datasets
    assert 'AutoModel.from_pretrained("org/tiny-model")' in card.text and "bare `tiny-model`" in card.text
    assert "| 3 | ap10k | 17 |" in card.text and "Nothing measured for this upload yet" in card.text

    changed = copy.deepcopy(tiny)
    with torch.no_grad():
        changed.heads[0].conv.bias.add_(1.0)
    push_model_to_hub(changed, "org/tiny-model", revision="dev")
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(5))
    outputs = {}
    for revision in (None, "dev", first_commit):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModel.from_pretrained("org/tiny-model", revision=revision).eval()
        assert isinstance(model, PoseBHForPoseEstimation)
        with torch.no_grad():
            outputs[revision] = model(x, dataset_index=0).heatmaps["coco"]
    with torch.no_grad():
        assert torch.equal(outputs[None], tiny(x, dataset_index=0).heatmaps["coco"])
        assert torch.allclose(outputs["dev"], changed(x, dataset_index=0).heatmaps["coco"])
    assert torch.equal(outputs[first_commit], outputs[None]) and not torch.equal(outputs["dev"], outputs[None])
    with pytest.raises(ValueError, match="must be 'ORG/NAME'"):
        push_model_to_hub(tiny, "posebh-vit-b")
