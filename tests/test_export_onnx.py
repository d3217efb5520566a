"""Single-dataset network (expert baked in) and its ONNX export, checked with onnxruntime against eager PyTorch."""

from __future__ import annotations

import pytest
import torch

from posebh_hf.cli import main as cli_main
from posebh_hf.export import export_onnx, merge_expert_state_dict, onnx_max_abs_diff, single_dataset_model
from posebh_hf.modeling import PoseBHConfig, PoseBHForPoseEstimation

SIZE = [64, 48]


def tiny_model(seed: int = 0) -> PoseBHForPoseEstimation:
    """A tiny 6-expert model with O(1) random parameters (so a 1e-4 bound means something)."""
    torch.manual_seed(seed)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(image_size=SIZE))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = 0.1 if name.endswith("bias") else 0.3 / max(1, param[0].numel()) ** 0.25
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0, generator=generator)
            elif name.endswith("running_mean"):
                buffer.normal_(0.0, 0.1, generator=generator)
    return model.eval()


def routed(model: PoseBHForPoseEstimation, x: torch.Tensor, name: str) -> torch.Tensor:
    with torch.no_grad():
        return model(x, model.config.dataset_index_of(name), heads=[name]).heatmaps[name]


def test_merge_expert_state_dict_stacks_shared_and_expert_rows():
    model = tiny_model()
    state = model.backbone.state_dict()
    merged = merge_expert_state_dict(state, 4)
    assert not any(".mlp.experts." in k for k in merged)
    for i in range(2):
        prefix = f"encoder.layer.{i}.mlp."
        assert torch.equal(merged[prefix + "fc2.weight"][:48], state[prefix + "fc2.weight"])
        assert torch.equal(merged[prefix + "fc2.weight"][48:], state[prefix + "experts.4.weight"])
        assert torch.equal(merged[prefix + "fc2.bias"][48:], state[prefix + "experts.4.bias"])
        assert merged[prefix + "fc2.weight"].shape == (64, 256)
    with pytest.raises(ValueError, match="no encoder.layer.0.mlp.experts.6.weight"):
        merge_expert_state_dict(state, 6)


@pytest.mark.parametrize("name", ["coco", "ap10k", "coco_wholebody"])
def test_single_dataset_model_equals_routed_model(name):
    model = tiny_model()
    plain = single_dataset_model(model, name)
    x = torch.randn(3, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = plain(x)
    expected = routed(model, x, name)
    assert got.shape == (3, model.config.num_keypoints[model.config.dataset_index_of(name)], 16, 12)
    assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max().item())
    assert plain.backbone.config.num_experts == 1
    # a frozen copy: nothing is shared with the source model
    source = {t.data_ptr() for t in model.state_dict().values()}
    assert not source & {t.data_ptr() for t in plain.state_dict().values()}
    with pytest.raises(ValueError, match="unknown dataset 'horse'"):
        single_dataset_model(model, "horse")


def test_export_onnx_matches_eager_with_dynamic_batch(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = tiny_model()
    result = export_onnx(model, "ap10k", tmp_path / "ap10k.onnx", check=True, check_batch_sizes=(1, 3))
    assert result.path == tmp_path / "ap10k.onnx" and result.path.is_file()
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    graph = onnx.load(str(result.path)).graph
    (inp,), (out,) = graph.input, graph.output
    assert inp.name == "pixel_values" and out.name == "heatmaps"
    batch_dim = inp.type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")  # symbolic batch axis
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [3, *SIZE]
    # independent of the merged module: compare onnxruntime with the routed multi-dataset model directly
    import onnxruntime as ort

    x = torch.randn(5, 3, *SIZE, generator=torch.Generator().manual_seed(7))
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["heatmaps"], {"pixel_values": x.numpy()})[0])
    expected = routed(model, x, "ap10k")
    assert got.shape == (5, 17, 16, 12)
    assert (got - expected).abs().max() <= 1e-4
    # another expert gives a clearly different network, so the comparison above can fail
    assert (routed(model, x, "coco") - expected).abs().max() > 1e-2
    assert onnx_max_abs_diff(result.path, single_dataset_model(model, "ap10k"), x) <= 1e-4


def test_cli_export_onnx(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = tiny_model()
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "deploy" / "mpii.onnx"
    code = cli_main(["export", "onnx", "--model", str(tmp_path / "model"), "--dataset", "mpii", "--out", str(out),
                     "--exporter", "torchscript"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.is_file() and "heatmaps [B, 16, 16, 12]" in captured.out and "max|diff|" in captured.out
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "horse"], "unknown dataset 'horse'"),
    (["--dataset", "coco", "--out-name", "x.txt"], "must end in .onnx"),
    (["--dataset", "coco", "--opset", "13"], "opset 13 is too old"),
])
def test_cli_export_onnx_errors(tmp_path, capsys, args, message):
    pytest.importorskip("onnx")
    tiny_model().save_pretrained(tmp_path / "model")
    if "--out-name" in args:
        out, args = tmp_path / args[-1], args[:-2]
    else:
        out = tmp_path / "m.onnx"
    code = cli_main(["export", "onnx", "--model", str(tmp_path / "model"), "--out", str(out), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_export_onnx_refuses_non_posebh_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["export", "onnx", "--model", str(tmp_path / "empty"), "--dataset", "coco",
                     "--out", str(tmp_path / "m.onnx")]) == 2
    assert "has no config.json" in capsys.readouterr().err
