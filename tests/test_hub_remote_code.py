"""Standalone remote code: a pushed repo loads with `trust_remote_code=True` in a fresh interpreter where `posebh_hf`
cannot be imported, and gives the same outputs as the package."""

from __future__ import annotations

import ast
import json
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import PYTHON, FakeHub, hub_fixtures
from safetensors.torch import load_file, save_file

from posebh_hf.hub import remote_code
from posebh_hf.hub.model_repo import push_model_to_hub, save_model_repo
from posebh_hf.modeling import PoseBHConfig, PoseBHForPoseEstimation

# `-I -S`: isolated mode without site processing, so neither PYTHONPATH nor the editable install's .pth file puts
# posebh_hf on sys.path; only the plain site-packages folder (torch, transformers, ...) is added back by hand.
CHILD = r"""
import sys
sys.path.append(SITE_PACKAGES)
try:
    import posebh_hf
except ModuleNotFoundError:
    print("posebh_hf not importable")
else:
    raise SystemExit(f"posebh_hf is importable from {posebh_hf.__file__}; the test would prove nothing")
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel
ref = load_file(REF)
config = AutoConfig.from_pretrained("org/remote", trust_remote_code=True)
model = AutoModel.from_pretrained("org/remote", trust_remote_code=True).eval()
print(type(model).__module__, type(config).__name__, config.extra_prototype_skeletons)
with torch.no_grad():
    out = model(ref["x"], dataset_index=[0, 3], output_prototype_heatmaps=True, prototype_skeletons=["mouse4"])
from transformers import pipeline
pose = pipeline("keypoint-detection", model="org/remote", trust_remote_code=True)
print("pipeline", type(pose).__module__, type(pose).__name__)
image = ref["image"].numpy()
result = pose(image, boxes=[[10.0, 12.0, 80.0, 120.0]], skeletons=["coco"], flip=True)
save_file({"coco": out.heatmaps["coco"].contiguous(), "ap10k": out.heatmaps["ap10k"].contiguous(),
           "mouse4": out.prototype_heatmaps["mouse4"].contiguous(),
           "pipeline_keypoints": torch.from_numpy(result.keypoints("coco")).contiguous()}, OUT)
"""

_fake_hub, _hub_env = hub_fixtures()  # the `fake_hub` and `hub_env` fixtures


@pytest.fixture(scope="module")
def model() -> PoseBHForPoseEstimation:
    from posebh_hf.skeletons import Skeleton

    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(num_hidden_layers=1)).eval()
    model.add_prototype_skeleton(Skeleton.from_dict({"name": "mouse4", "keypoints": ["a", "b", "c", "d"]}))
    return model


def test_generated_modules_are_flat_and_complete():
    files = remote_code.build_remote_code()
    assert {"configuration_posebh.py", "modeling_posebh.py", "posebh_modeling_prototypes.py",
            "posebh_skeletons.py"} <= set(files)
    for name, source in files.items():
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("posebh_hf") for a in node.names), name
            elif isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("posebh_hf"), (name, node.module)
                if node.level:  # every relative import is a flat sibling that is part of the repo
                    assert node.level == 1 and f"{node.module}.py" in files, (name, node.module)
    model_tree = ast.parse(files["modeling_posebh.py"])
    assert {"PoseBHForPoseEstimation"} <= {n.name for n in model_tree.body if isinstance(n, ast.ClassDef)}
    assert "class PoseBHConfig(" in files["configuration_posebh.py"]


def _fake_package(root: Path, modules: dict[str, str]) -> Path:
    package = root / "posebh_hf"
    pipeline = "class KeypointDetectionPipeline:\n    pass\n"
    for name, text in {"__init__.py": "", "modeling/__init__.py": "", "pipeline_task.py": pipeline,
                       **modules}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_modules_keep_their_own_namespaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = _fake_package(tmp_path / "src", {
        "configuration_posebh.py": "LIMIT = 1\n\nclass PoseBHConfig:\n    pass\n",
        "ops/__init__.py": "", "ops/sim.py": "LIMIT = (1, 2)\n",
        "modeling/parts.py": "from ..ops.sim import LIMIT as OPS_LIMIT\n\nLIMIT = OPS_LIMIT[1]\n",
        "modeling/modeling_posebh.py": ("from ..configuration_posebh import LIMIT, PoseBHConfig\n"
                                        "from .parts import LIMIT as PART_LIMIT\n\n"
                                        "class PoseBHForPoseEstimation:\n    limits = (LIMIT, PART_LIMIT)\n"),
    })
    monkeypatch.setattr(remote_code, "PACKAGE_DIR", package)
    files = remote_code.build_remote_code()
    assert sorted(files) == ["configuration_posebh.py", "modeling_posebh.py", "posebh_modeling_parts.py",
                             "posebh_ops_sim.py", "posebh_pipeline_task.py"]
    repo = tmp_path / "repo_pkg"
    repo.mkdir()
    (repo / "__init__.py").write_text("")
    for name, text in files.items():
        (repo / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("repo_pkg.modeling_posebh")
    assert module.PoseBHForPoseEstimation.limits == (1, 2)  # same name, three modules, three values


@pytest.mark.parametrize("source, message", [
    ("from .. import configuration_posebh\n", "imports a module object"),
    ("import posebh_hf.ops\n", "binds a module object"),
    ("from posebh_hf import PoseBHConfig\n", "package root"),
])
def test_generation_refuses_what_it_cannot_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str,
                                               message: str):
    package = _fake_package(tmp_path, {
        "configuration_posebh.py": "class PoseBHConfig:\n    pass\n",
        "modeling/modeling_posebh.py": source + "\nclass PoseBHForPoseEstimation:\n    pass\n",
    })
    monkeypatch.setattr(remote_code, "PACKAGE_DIR", package)
    with pytest.raises(remote_code.RemoteCodeError, match=message):
        remote_code.build_remote_code()


def test_saved_repo_has_auto_map_and_card(model: PoseBHForPoseEstimation, tmp_path: Path):
    folder = save_model_repo(model, tmp_path / "repo", repo_id="org/remote", remote_code=True)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_posebh.PoseBHConfig",
                                  "AutoModel": "modeling_posebh.PoseBHForPoseEstimation",
                                  "AutoModelForPoseEstimation": "modeling_posebh.PoseBHForPoseEstimation"}
    assert config["custom_pipelines"]["keypoint-detection"]["impl"] == "posebh_pipeline_task.KeypointDetectionPipeline"
    assert (folder / "posebh_pipeline_task.py").is_file()
    card = (folder / "README.md").read_text()
    assert 'trust_remote_code=True' in card and "read them first" in card


def test_trust_remote_code_without_the_package(model: PoseBHForPoseEstimation, hub_env: dict[str, str],
                                               fake_hub: FakeHub, tmp_path: Path):
    push_model_to_hub(model, "org/remote", remote_code=True)
    x = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(2))
    image = torch.randint(0, 256, (150, 110, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    save_file({"x": x, "image": image}, str(tmp_path / "ref.safetensors"))
    code = (CHILD.replace("SITE_PACKAGES", repr(sysconfig.get_paths()["purelib"]))
            .replace("REF", repr(str(tmp_path / "ref.safetensors"))).replace("OUT", repr(str(tmp_path / "out.st"))))
    env = {"PATH": "/usr/bin:/bin", **hub_env}
    result = subprocess.run([PYTHON, "-I", "-S", "-c", code], env=env, capture_output=True, text=True, timeout=240,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "posebh_hf not importable" in result.stdout
    assert "transformers_modules" in result.stdout and "PoseBHConfig ['mouse4']" in result.stdout
    remote = load_file(tmp_path / "out.st")
    with torch.no_grad():
        local = model(x, dataset_index=[0, 3], output_prototype_heatmaps=True, prototype_skeletons=["mouse4"])
    assert torch.equal(remote["coco"], local.heatmaps["coco"])
    assert torch.equal(remote["ap10k"], local.heatmaps["ap10k"])
    assert torch.equal(remote["mouse4"], local.prototype_heatmaps["mouse4"])
    # the pipeline task loads from the repo's own pipeline file (custom_pipelines) and agrees with the package's
    assert "pipeline transformers_modules" in result.stdout and "KeypointDetectionPipeline" in result.stdout
    from posebh_hf import PoseBHPipeline

    expected = PoseBHPipeline(model).predict([image.numpy()], boxes=[[[10.0, 12.0, 80.0, 120.0]]], skeletons=["coco"],
                                             flip=True)[0]
    np.testing.assert_allclose(remote["pipeline_keypoints"].numpy(), expected.keypoints("coco"), atol=1e-4)


def test_the_package_serves_the_task_of_a_remote_code_repo_without_trust(model: PoseBHForPoseEstimation,
                                                                          tmp_path: Path):
    """With the package installed, the repo's `custom_pipelines` entry is ignored (transformers would otherwise
    demand trust_remote_code): the registered task serves it."""
    from transformers import pipeline

    folder = save_model_repo(model, tmp_path / "repo", repo_id="org/remote", remote_code=True)
    pose = pipeline("keypoint-detection", model=str(folder))
    assert type(pose).__module__ == "posebh_hf.pipeline_task"
    assert not hasattr(pose.model.config, "custom_pipelines")
    image = np.zeros((64, 48, 3), np.uint8)
    assert pose(image, skeletons=["coco"]).keypoints("coco").shape == (1, 17, 2)
