"""A broken model folder is one `ModelFolderError` naming the file and the problem, for every entry point that
loads one (`posebh predict` here; `pack`, `viz`, `hub` and the pipeline go through the same check)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import save_tiny_model
from safetensors.torch import load_file, save_file

from posebh_hf.cli import main
from posebh_hf.modeling import ModelFolderError, check_model_folder, load_model_folder
from posebh_hf.pipeline import PoseBHPipeline


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("good"), dataset_names=["coco"])


def _copy(good, tmp_path, name="m"):
    return shutil.copytree(good, tmp_path / name)


def _edit_config(folder, edit):
    data = json.loads((folder / "config.json").read_text())
    edit(data)
    (folder / "config.json").write_text(json.dumps(data))


def _break(kind, folder):
    cfg, weights = folder / "config.json", folder / "model.safetensors"
    if kind == "config_list":
        cfg.write_text("[1, 2]")
    elif kind == "config_bytes":
        cfg.write_bytes(b"\xff\xfe\x00garbage")
    elif kind == "config_json":
        cfg.write_text("{not json")
    elif kind == "config_missing":
        cfg.unlink()
    elif kind == "not_posebh":
        _edit_config(folder, lambda d: d.update(model_type="vitpose"))
    elif kind == "int_field":
        _edit_config(folder, lambda d: d.update(embed_dim="abc"))
    elif kind == "backbone_field":
        _edit_config(folder, lambda d: d["backbone_config"].update(hidden_size="abc"))
    elif kind == "random_weights":
        weights.write_bytes(os.urandom(4096))
    elif kind == "no_weights":
        weights.unlink()
    elif kind == "pickle_only":
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    elif kind in ("wrong_shape", "missing_tensor"):
        tensors = load_file(weights)
        name = sorted(tensors)[0]
        if kind == "wrong_shape":
            tensors[name] = torch.zeros(3, 3)
        else:
            del tensors[name]
        save_file(tensors, weights, metadata={"format": "pt"})
    return folder


CASES = {
    "config_list": "config.json must hold a JSON object, got a list",
    "config_bytes": "config.json is not a text JSON file (not UTF-8)",
    "config_json": "config.json is not valid JSON",
    "config_missing": "has no config.json",
    "not_posebh": "holds a 'vitpose' model, not a PoseBH model (convert it first",
    "int_field": "config.json: field 'embed_dim' must be an integer, got 'abc'",
    "backbone_field": "invalid PoseBH config: Validation error for field 'hidden_size': Field 'hidden_size' expected int",
    "random_weights": "model.safetensors is not a readable safetensors file",
    "no_weights": "has no model.safetensors",
    "pickle_only": "has only pytorch_model.bin (a pickle) and no model.safetensors; posebh_hf never unpickles",
    "wrong_shape": "has shape [3, 3] but config.json needs",
    "missing_tensor": "that config.json needs; the weights and config.json come from different models",
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_broken_folder_is_one_line_naming_the_file(capsys, good, tmp_path, kind):
    folder = _break(kind, _copy(good, tmp_path))
    with pytest.raises(ModelFolderError) as err:
        check_model_folder(folder)
    assert CASES[kind] in str(err.value) and str(folder) in str(err.value)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    code = main(["predict", str(image), "--model", str(folder)])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and CASES[kind] in lines[0], captured.err
    with pytest.raises(ModelFolderError):
        PoseBHPipeline.from_pretrained(folder)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_weights_say_permission_denied(good, tmp_path):
    folder = _copy(good, tmp_path)
    (folder / "model.safetensors").chmod(0)
    with pytest.raises(ModelFolderError, match="permission denied"):
        check_model_folder(folder)


def test_missing_path_and_a_file_are_told_apart(good, tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        check_model_folder(tmp_path / "nowhere")
    with pytest.raises(ModelFolderError, match="is a file, not a model folder"):
        check_model_folder(good / "config.json")


def test_a_good_folder_loads(good):
    assert check_model_folder(good).dataset_names == ["coco"]
    assert not load_model_folder(good).training
