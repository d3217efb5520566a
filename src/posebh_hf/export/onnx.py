"""ONNX export of one dataset's pose network (layer 4): expert baked in, dynamic batch, checked with onnxruntime.

The exported graph is `SingleDatasetPoseModel` (see `single_dataset.py`): input `pixel_values` [B, 3, H, W] float32
(normalised crops, H x W the model's input size), output `heatmaps` [B, K_d, H/4, W/4] (raw, no activation). Only
the batch axis is dynamic. Decoding (argmax + DARK/UDP) stays in `PoseBHImageProcessor`, outside the graph.

Needs the `onnx` extra (`onnx`, `onnxscript` for the default dynamo exporter, `onnxruntime` for the check).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..modeling import PoseBHForPoseEstimation
from .single_dataset import SingleDatasetPoseModel, single_dataset_model

__all__ = ["DEFAULT_OPSET", "EXPORTERS", "ONNX_TOLERANCE", "OnnxExportResult", "export_onnx", "export_module_onnx",
           "onnx_max_abs_diff"]

DEFAULT_OPSET = 18
ONNX_TOLERANCE = 1e-4  # max |onnxruntime - eager| accepted on fp32 heatmaps
EXPORTERS = ("dynamo", "torchscript")
_EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf files are limited to 2 GB: larger weights go to a .data file


@dataclass
class OnnxExportResult:
    """What `export_onnx` wrote and how it compared with eager PyTorch."""

    path: Path
    dataset: str
    num_keypoints: int
    input_size: tuple[int, int]
    opset: int
    files: list[Path] = field(default_factory=list)
    max_abs_diff: float | None = None  # None when the check was skipped
    checked_batch_sizes: tuple[int, ...] = ()

    def summary(self) -> str:
        h, w = self.input_size
        lines = [f"wrote {self.path} (dataset {self.dataset!r}, opset {self.opset}): pixel_values [B, 3, {h}, {w}] -> "
                 f"heatmaps [B, {self.num_keypoints}, {h // 4}, {w // 4}], dynamic batch"]
        if len(self.files) > 1:
            lines.append("  external weights: " + ", ".join(str(p) for p in self.files[1:]))
        if self.max_abs_diff is not None:
            lines.append(f"  onnxruntime vs eager, batch sizes {list(self.checked_batch_sizes)}: "
                         f"max|diff| = {self.max_abs_diff:.3e}")
        return "\n".join(lines)


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the {module!r} package: pip install 'posebh-hf[onnx]' "
                          "-c constraints.txt") from None


def _parameter_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def export_module_onnx(module: SingleDatasetPoseModel, out: str | Path, opset: int = DEFAULT_OPSET,
                       exporter: str = "dynamo") -> list[Path]:
    """Export `module` to `out` atomically (temp folder, then rename). Returns the written files (the .onnx first).

    "dynamo" is torch's current exporter (`torch.export` + onnxscript); "torchscript" is the legacy tracer, kept as
    a fallback for graphs the dynamo exporter refuses.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    _require("onnx")
    if exporter == "dynamo":
        _require("onnxscript")
    if opset < 17:
        raise ValueError(f"opset {opset} is too old: LayerNormalization needs opset >= 17")
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"output file {out} must end in .onnx")
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; give a file name ending in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    height, width = module.input_size
    example = torch.randn(2, 3, height, width)
    external = _parameter_bytes(module) > _EXTERNAL_DATA_BYTES
    module = module.eval()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}-") as tmp:
        tmp_path = Path(tmp) / out.name
        with torch.no_grad():
            if exporter == "dynamo":
                program = torch.onnx.export(module, (example,), None, input_names=["pixel_values"],
                                            output_names=["heatmaps"], opset_version=opset, dynamo=True,
                                            dynamic_shapes=({0: torch.export.Dim("batch")},))
                program.save(tmp_path, external_data=external)
            else:
                torch.onnx.export(module, (example,), tmp_path, input_names=["pixel_values"],
                                  output_names=["heatmaps"], opset_version=opset, dynamo=False,
                                  dynamic_axes={"pixel_values": {0: "batch"}, "heatmaps": {0: "batch"}})
        written = sorted(Path(tmp).iterdir(), key=lambda p: p.name != out.name)  # the .onnx first
        targets = []
        for path in written:
            target = out.parent / path.name
            os.replace(path, target)
            targets.append(target)
    return targets


def onnx_max_abs_diff(path: str | Path, module: SingleDatasetPoseModel, pixel_values: torch.Tensor) -> float:
    """max |onnxruntime(path) - module| on `pixel_values` [B, 3, H, W] (CPU execution provider)."""
    _require("onnxruntime")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["heatmaps"], {"pixel_values": pixel_values.float().cpu().numpy()})[0]
    with torch.no_grad():
        expected = module(pixel_values.float().cpu()).numpy()
    if got.shape != expected.shape:
        raise ValueError(f"ONNX heatmaps have shape {got.shape}, eager {expected.shape}")
    return float(np.abs(got - expected).max()) if got.size else 0.0


def export_onnx(model: PoseBHForPoseEstimation, dataset: str | int, out: str | Path, opset: int = DEFAULT_OPSET,
                check: bool = True, check_batch_sizes: tuple[int, ...] = (1, 3), exporter: str = "dynamo",
                seed: int = 0) -> OnnxExportResult:
    """Export dataset `dataset`'s network of `model` (expert merged into fc2, its heatmap head) to `out`.

    With `check`, onnxruntime runs the file on random inputs of each batch size in `check_batch_sizes` (so the
    dynamic batch axis is exercised) and the max |difference| to the eager module is recorded; the caller
    decides what to do with it (`ONNX_TOLERANCE` is the accepted bound for fp32).
    """
    module = single_dataset_model(model, dataset).float().cpu()
    files = export_module_onnx(module, out, opset=opset, exporter=exporter)
    height, width = module.input_size
    num_keypoints = int(module.head.conv.out_channels)
    result = OnnxExportResult(path=files[0], dataset=module.dataset_name, num_keypoints=num_keypoints,
                              input_size=(height, width), opset=opset, files=files)
    if check:
        generator = torch.Generator().manual_seed(seed)
        diffs = [onnx_max_abs_diff(files[0], module, torch.randn(b, 3, height, width, generator=generator))
                 for b in check_batch_sizes]
        result.max_abs_diff = max(diffs)
        result.checked_batch_sizes = tuple(check_batch_sizes)
    return result
