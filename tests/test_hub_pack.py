"""Prototype packs: file format, validation and refusals, attaching to / exporting from a tiny PoseBH model."""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from posebh_hf.hub import (
    CONFIG_FILE,
    PROTOTYPES_FILE,
    PackCompatibilityError,
    PackError,
    PrototypePack,
    attach_prototype_pack,
    embedding_fingerprint,
    export_prototype_pack,
    module_fingerprint,
)
from posebh_hf.modeling import PoseBHConfig, PoseBHForPoseEstimation, prototype_heatmaps
from posebh_hf.skeletons import Skeleton

MOUSE = Skeleton.from_dict({"name": "mouse4", "keypoints": ["snout", "left_ear", "right_ear", "tail_base"],
                            "skeleton": [[1, 2], [1, 3], [2, 4], [3, 4]]})


@pytest.fixture(scope="module")
def base_model() -> PoseBHForPoseEstimation:
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny()).eval()
    # BN statistics as after training, so the embedding head is not the identity-ish fresh init
    for module in model.embedding_head.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture
def model(base_model: PoseBHForPoseEstimation) -> PoseBHForPoseEstimation:
    return copy.deepcopy(base_model)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(1))


def make_pack(model: PoseBHForPoseEstimation, skeleton: Skeleton = MOUSE, seed: int = 0, **changes) -> PrototypePack:
    k, m, d = skeleton.num_keypoints, model.config.num_prototypes, model.config.embed_dim
    protos = F.normalize(torch.randn(k, m, d, generator=torch.Generator().manual_seed(seed)), dim=-1)
    pack = PrototypePack(prototypes=protos, skeleton=skeleton, similarity=model.config.similarity, dataset_index=3,
                         embedding_fingerprint=embedding_fingerprint(model), base_model="org/tiny",
                         base_revision="0" * 40, learned={"method": "test"})
    return replace(pack, **changes)


# ---------------------------------------------------------------------------------------------- file format
def test_save_load_roundtrip_is_exact(model: PoseBHForPoseEstimation, tmp_path: Path):
    pack = make_pack(model)
    folder = pack.save(tmp_path / "pack", repo_id="org/mouse4-protos")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", CONFIG_FILE, PROTOTYPES_FILE]
    loaded = PrototypePack.load(folder)
    assert torch.equal(loaded.prototypes, pack.prototypes) and loaded.prototypes.dtype == torch.float32
    assert loaded.skeleton == MOUSE and loaded.skeleton.edges == MOUSE.edges
    assert (loaded.similarity, loaded.dataset_index, loaded.base_model, loaded.base_revision) == \
        ("abs_cosine", 3, "org/tiny", "0" * 40)
    assert loaded.embedding_fingerprint == embedding_fingerprint(model)
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert (config["num_keypoints"], config["num_prototypes"], config["embed_dim"]) == (4, 3, 64)
    assert config["format_version"] == 1 and config["skeleton"]["keypoints"][0] == "snout"
    assert set(load_file(folder / PROTOTYPES_FILE)) == {"prototypes"}
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: posebh_hf" in card and "keypoint-prototypes" in card
    assert "org/mouse4-protos" in card and "`tail_base`" in card and embedding_fingerprint(model) in card


def test_save_is_staged_and_existing_folders_follow_overwrite(model: PoseBHForPoseEstimation, tmp_path: Path):
    pack = make_pack(model)
    folder = pack.save(tmp_path / "new")  # a new folder: written beside it, renamed into place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]
    (folder / "notes.txt").write_text("mine")
    pack.save(folder)  # default: an existing folder keeps its other files, pack files replaced one by one
    assert (folder / "notes.txt").is_file() and torch.equal(PrototypePack.load(folder).prototypes,
                                                                   pack.prototypes)
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        pack.save(folder, overwrite=False)
    pack.save(folder, overwrite=True)  # the whole folder replaced
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", CONFIG_FILE, PROTOTYPES_FILE]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: p.__setitem__((1, 2), float("nan")), "NaN/inf"),
    (lambda p: p.__setitem__((2, 0), 0.0), "zero-norm"),
])
def test_refuses_nan_and_zero_rows(model: PoseBHForPoseEstimation, corrupt, message: str):
    pack = make_pack(model)
    protos = pack.prototypes.clone()
    corrupt(protos)
    with pytest.raises(PackError, match=message):
        replace(pack, prototypes=protos).validate()


def test_refuses_k_not_matching_the_skeleton_and_bad_dtype(model: PoseBHForPoseEstimation):
    pack = make_pack(model)
    with pytest.raises(PackError, match="K=3 rows but skeleton 'mouse4' has 4 keypoints"):
        replace(pack, prototypes=pack.prototypes[:3]).validate()
    with pytest.raises(PackError, match="float32"):
        replace(pack, prototypes=pack.prototypes.double()).validate()
    with pytest.raises(PackError, match="similarity"):
        replace(pack, similarity="dot").validate()


def test_load_refuses_corrupt_payloads(model: PoseBHForPoseEstimation, tmp_path: Path):
    folder = make_pack(model).save(tmp_path / "p")
    tensor = load_file(folder / PROTOTYPES_FILE)["prototypes"].clone()
    tensor[0, 0] = float("nan")  # a pack edited after export is re-validated on load
    save_file({"prototypes": tensor}, str(folder / PROTOTYPES_FILE))
    with pytest.raises(PackError, match="NaN"):
        PrototypePack.load(folder)
    save_file({"prototypes": tensor[:2].nan_to_num(1.0)}, str(folder / PROTOTYPES_FILE))
    with pytest.raises(PackError, match="K=2"):
        PrototypePack.load(folder)


def test_refuses_non_safetensors_payloads(model: PoseBHForPoseEstimation, tmp_path: Path):
    folder = make_pack(model).save(tmp_path / "p")
    protos = load_file(folder / PROTOTYPES_FILE)["prototypes"]
    # 1. a pickle instead of safetensors
    (folder / PROTOTYPES_FILE).unlink()
    torch.save({"prototypes": protos}, folder / "prototypes.bin")
    with pytest.raises(PackError, match=r"found \['prototypes.bin'\] but no prototypes.safetensors"):
        PrototypePack.load(folder)
    # 2. a pickle renamed to .safetensors is not parsed as a pickle
    (folder / "prototypes.bin").rename(folder / PROTOTYPES_FILE)
    with pytest.raises(PackError, match="not a valid safetensors file"):
        PrototypePack.load(folder)
    # 3. a manifest pointing at another payload
    save_file({"prototypes": protos}, str(folder / PROTOTYPES_FILE))
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "weights_file": "prototypes.pt"}))
    with pytest.raises(PackError, match="only 'prototypes.safetensors'"):
        PrototypePack.load(folder)


@pytest.mark.parametrize("edit, message", [
    ({"format_version": 99}, "newer than this posebh_hf supports"),
    ({"format": "something-else"}, "'format' is 'something-else'"),
    ({"num_prototypes": 5}, "'num_prototypes' is 5"),
    ({"skeleton": {"name": "x", "keypoints": ["a", "a"]}}, "duplicate keypoint names"),
    ({"dataset_index": "three"}, "'dataset_index' must be an integer"),
])
def test_load_refuses_bad_manifests(model: PoseBHForPoseEstimation, tmp_path: Path, edit: dict, message: str):
    folder = make_pack(model).save(tmp_path / "p")
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, **edit}))
    with pytest.raises(PackError, match=message):
        PrototypePack.load(folder)
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(PackError, match="not valid JSON"):
        PrototypePack.load(folder)


def test_fingerprint_ignores_counters_and_sees_weights(model: PoseBHForPoseEstimation):
    head = copy.deepcopy(model.embedding_head)
    before = module_fingerprint(head)
    for module in head.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.num_batches_tracked += 7
    assert module_fingerprint(head) == before
    with torch.no_grad():
        head.out_conv.bias[0] += 1e-6
    assert module_fingerprint(head) != before and before.startswith("sha256:") and len(before) == 71


# ---------------------------------------------------------------------------------------------- attaching
def test_attach_adds_a_headless_skeleton(model: PoseBHForPoseEstimation, pixels: torch.Tensor):
    pack = make_pack(model)
    rows_before = model.keypoint_prototypes.prototypes.shape[0]
    rows = attach_prototype_pack(model, pack)
    assert (rows.start, rows.stop) == (rows_before, rows_before + 4)
    assert model.config.extra_prototype_skeletons == ["mouse4"]
    assert model.config.extra_prototype_dataset_index == {"mouse4": 3}
    assert model.skeleton("mouse4").keypoint_names == MOUSE.keypoint_names
    assert torch.equal(model.keypoint_prototypes.prototypes[rows], pack.prototypes)  # bit for bit
    with torch.no_grad():
        out = model(pixels, dataset_index=3, output_embeddings=True, output_prototype_heatmaps=True,
                    prototype_skeletons=["mouse4", "ap10k"])
    expected = prototype_heatmaps(out.embeddings, pack.prototypes, "abs_cosine")  # independent of the bank
    assert out.prototype_heatmaps["mouse4"].shape == (2, 4, 64, 48)
    assert torch.equal(out.prototype_heatmaps["mouse4"], expected)
    assert model.config.prototype_pack_provenance["mouse4"]["base_model"] == "org/tiny"


@pytest.mark.parametrize("changes, message", [
    ({"embed_dim": 32}, "embedding dim D=32, the model has D=64"),
    ({"num_prototypes": 2}, "M=2 prototypes per keypoint, the model has M=3"),
])
def test_attach_refuses_wrong_shapes(model: PoseBHForPoseEstimation, changes: dict, message: str):
    k = MOUSE.num_keypoints
    m, d = changes.get("num_prototypes", 3), changes.get("embed_dim", 64)
    pack = make_pack(model, prototypes=F.normalize(torch.randn(k, m, d), dim=-1))
    before = model.keypoint_prototypes.prototypes.clone()
    with pytest.raises(PackCompatibilityError, match=message):
        attach_prototype_pack(model, pack)
    assert torch.equal(model.keypoint_prototypes.prototypes, before) and model.config.extra_prototype_skeletons == []


def test_attach_refuses_other_similarity_and_missing_expert(model: PoseBHForPoseEstimation):
    with pytest.raises(PackCompatibilityError, match="similarity 'cosine', the model uses 'abs_cosine'"):
        attach_prototype_pack(model, make_pack(model, similarity="cosine"))
    with pytest.raises(PackCompatibilityError, match="dataset_index=6, the model has 6 experts"):
        attach_prototype_pack(model, make_pack(model, dataset_index=6))


def test_attach_refuses_another_embedding_head_unless_allowed(model: PoseBHForPoseEstimation):
    pack = make_pack(model, embedding_fingerprint="sha256:" + "0" * 64)
    with pytest.raises(PackCompatibilityError, match="another embedding head.*allow_fingerprint_mismatch"):
        attach_prototype_pack(model, pack)
    assert model.config.extra_prototype_skeletons == []
    with pytest.warns(UserWarning, match="attaching anyway"):
        attach_prototype_pack(model, pack, allow_fingerprint_mismatch=True)
    assert model.config.extra_prototype_skeletons == ["mouse4"]


def test_attach_refuses_existing_names_unless_replace(model: PoseBHForPoseEstimation, pixels: torch.Tensor):
    attach_prototype_pack(model, make_pack(model, seed=1))
    with pytest.raises(PackCompatibilityError, match="'mouse4' already exists.*replace=True"):
        attach_prototype_pack(model, make_pack(model, seed=2))
    # replace an attached skeleton, with a different K: the block is rebuilt at the end
    bigger = Skeleton.from_dict({"name": "mouse4", "keypoints": ["snout", "left_ear", "right_ear", "tail_base",
                                                                 "tail_tip"]})
    second = make_pack(model, skeleton=bigger, seed=2, dataset_index=4)
    rows = attach_prototype_pack(model, second, replace=True)
    assert rows.stop - rows.start == 5 and model.keypoint_prototypes.prototypes.shape[0] == 214 + 5
    assert model.config.extra_prototype_skeletons == ["mouse4"]
    assert model.config.extra_prototype_dataset_index == {"mouse4": 4}
    assert model.skeleton("mouse4").num_keypoints == 5
    assert torch.equal(model.keypoint_prototypes.prototypes[rows], second.prototypes)
    # a dataset with a heatmap head
    coco = export_prototype_pack(model, "coco")
    with pytest.raises(PackCompatibilityError, match="'coco' already exists in this model \\(a dataset"):
        attach_prototype_pack(model, coco)
    new_rows = F.normalize(torch.randn_like(coco.prototypes), dim=-1)
    attach_prototype_pack(model, replace(coco, prototypes=new_rows), replace=True)
    assert torch.equal(model.keypoint_prototypes.prototypes[model.prototype_rows("coco")], new_rows)
    with pytest.raises(PackCompatibilityError, match="routes through dataset_index=3, the dataset's expert is 0"):
        attach_prototype_pack(model, replace(coco, dataset_index=3), replace=True)
    wrong = Skeleton.from_dict({**coco.skeleton.to_dict(), "keypoints": [f"k{i}" for i in range(17)]})
    with pytest.raises(PackCompatibilityError, match="cannot replace the prototypes of dataset 'coco'"):
        attach_prototype_pack(model, replace(coco, skeleton=wrong), replace=True)


def test_attach_from_a_folder_and_save_pretrained_keeps_it(model: PoseBHForPoseEstimation, pixels: torch.Tensor,
                                                           tmp_path: Path):
    folder = make_pack(model).save(tmp_path / "pack")
    attach_prototype_pack(model, str(folder))
    with torch.no_grad():
        before = model(pixels, dataset_index=3, output_prototype_heatmaps=True,
                       prototype_skeletons=["mouse4"]).prototype_heatmaps["mouse4"]
    model.save_pretrained(tmp_path / "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = PoseBHForPoseEstimation.from_pretrained(tmp_path / "model").eval()
    assert loaded.config.extra_prototype_skeletons == ["mouse4"]
    assert loaded.config.extra_prototype_dataset_index == {"mouse4": 3}
    assert loaded.skeleton("mouse4") == MOUSE
    with torch.no_grad():
        after = loaded(pixels, dataset_index=3, output_prototype_heatmaps=True,
                       prototype_skeletons=["mouse4"]).prototype_heatmaps["mouse4"]
    assert torch.equal(before, after)
    # the export of an attached skeleton reproduces the pack (values, skeleton, expert, provenance)
    again = export_prototype_pack(loaded, "mouse4")
    original = PrototypePack.load(folder)
    assert torch.equal(again.prototypes, original.prototypes) and again.dataset_index == 3
    assert again.base_model == "org/tiny" and again.learned == {"method": "test"}


def test_export_then_attach_to_a_copy_gives_identical_heatmaps(model: PoseBHForPoseEstimation,
                                                               pixels: torch.Tensor, tmp_path: Path):
    pack = export_prototype_pack(model, "ap10k", base_model="org/tiny")
    assert pack.dataset_index == 3 and pack.num_keypoints == 17
    folder = pack.save(tmp_path / "ap10k")
    twin = copy.deepcopy(model)
    attach_prototype_pack(twin, replace(PrototypePack.load(folder), skeleton=pack.skeleton.renamed("ap10k_copy")))
    with torch.no_grad():
        out = twin(pixels, dataset_index=3, output_prototype_heatmaps=True,
                   prototype_skeletons=["ap10k", "ap10k_copy"]).prototype_heatmaps
    assert torch.equal(out["ap10k"], out["ap10k_copy"])


def test_attach_rejects_unknown_inputs(model: PoseBHForPoseEstimation, tmp_path: Path):
    with pytest.raises(TypeError, match="expected a PrototypePack"):
        attach_prototype_pack(model, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be 'ORG/NAME'"):
        attach_prototype_pack(model, "just-a-name")
    with pytest.raises(PackError, match="not a prototype pack: prototype_config.json is missing"):
        (tmp_path / "empty").mkdir()
        attach_prototype_pack(model, tmp_path / "empty")


# The model side of attaching: `config.dataset_index_of(attached)` returns the pack's expert and `heads=[attached]`
# returns the prototype heatmaps.
def test_model_serves_an_attached_skeleton_like_a_head(model: PoseBHForPoseEstimation, pixels: torch.Tensor):
    import numpy as np

    from posebh_hf.pipeline import PoseBHPipeline

    pack = make_pack(model)
    attach_prototype_pack(model, pack)
    assert model.config.dataset_index_of("mouse4") == 3
    with torch.no_grad():
        out = model(pixels, dataset_index=3, heads=["mouse4"], output_embeddings=True, output_prototype_heatmaps=True)
    expected = prototype_heatmaps(out.embeddings, pack.prototypes, "abs_cosine")
    assert list(out.heatmaps) == ["mouse4"] and torch.equal(out.heatmaps["mouse4"], expected)
    assert torch.equal(out.prototype_heatmaps["mouse4"], expected)
    result = PoseBHPipeline(model)(np.zeros((256, 192, 3), np.uint8), skeletons=["mouse4"], flip=False)
    assert result[0]["mouse4"]["keypoints"].shape == (4, 2)


def test_the_model_owns_its_prototype_bank_like_adapters(model: PoseBHForPoseEstimation, tmp_path: Path):
    """list / remove / replace are model methods; attaching records routing and provenance in declared config
    fields that survive save/load; removing restores the bank and config exactly."""
    import copy

    work = copy.deepcopy(model)
    before_bank = work.keypoint_prototypes.prototypes.clone()
    before = work.config.to_dict()
    pack = make_pack(work)
    rows = attach_prototype_pack(work, pack)
    listed = work.list_prototype_skeletons()
    assert [e["name"] for e in listed] == [*work.config.dataset_names, "mouse4"]
    entry = listed[-1]
    assert entry["rows"] == [rows.start, rows.stop] and entry["dataset_index"] == 3 and not entry["has_head"]
    assert entry["provenance"]["embedding_fingerprint"] == pack.embedding_fingerprint
    work.save_pretrained(tmp_path / "with")
    loaded = PoseBHForPoseEstimation.from_pretrained(tmp_path / "with")
    assert loaded.list_prototype_skeletons() == listed
    # replace in place: new values, same rows and routing
    new_values = make_pack(work, seed=5).prototypes
    work.replace_prototype_skeleton("mouse4", new_values)
    assert torch.equal(work.keypoint_prototypes.prototypes[rows], new_values)
    # remove: bank and config as before the attach
    work.remove_prototype_skeleton("mouse4")
    assert torch.equal(work.keypoint_prototypes.prototypes, before_bank)
    after = work.config.to_dict()
    saved_by_transformers = {"architectures", "dtype"}  # set by save_pretrained above
    assert ({k: v for k, v in after.items() if v and k not in saved_by_transformers}
            == {k: v for k, v in before.items() if v and k not in saved_by_transformers})
    with pytest.raises(ValueError, match="only attached prototype skeletons can be removed"):
        work.remove_prototype_skeleton(work.config.dataset_names[0])
    with pytest.raises(ValueError, match="no attached skeleton"):
        work.remove_prototype_skeleton("mouse4")
