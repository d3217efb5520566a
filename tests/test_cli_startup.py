"""`posebh --help` and argument errors answer without importing torch or transformers (the `posebh_cli` entry point
asks for the package's lazy mode); `import posebh_hf` in a program still registers everything eagerly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "pycocotools", "scipy", "cv2", "datasets")


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_help_and_argument_errors_import_nothing_heavy():
    code = f"""
import contextlib, io, json, sys
import posebh_cli
for argv in (["--help"], ["predict", "--threshold", "2", "x.png"], ["predict", "missing.png"],
             ["convert", "official", "--help"], ["evaluate", "--help"], ["export", "onnx", "--help"]):
    sys.argv = ["posebh", *argv]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            posebh_cli.main()
        except SystemExit:
            pass
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
    assert json.loads(_python(code)) == []


def test_help_is_fast():
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "import sys, posebh_cli; sys.argv=['posebh', '--help']; "
                           "posebh_cli.main()"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    elapsed = time.perf_counter() - start
    assert "predict" in done.stdout and elapsed < 3.0, elapsed  # 0.25 s on the 2-core dev VM (8 s before)


def test_a_plain_import_registers_everything_and_the_lazy_flag_does_not_leak():
    code = """
import json, os
import posebh_hf
from transformers import CONFIG_MAPPING, AutoImageProcessor
from transformers.pipelines import PIPELINE_REGISTRY
print(json.dumps(["posebh" in CONFIG_MAPPING, "keypoint-detection" in PIPELINE_REGISTRY.get_supported_tasks(),
                  "PoseBHPipeline" in dir(posebh_hf)]))
"""
    assert json.loads(_python(code)) == [True, True, True]
    code = ("import os; os.environ['POSEBH_HF_LAZY'] = '1'; import json, sys, posebh_hf; "
            "print(json.dumps(['POSEBH_HF_LAZY' in os.environ, 'torch' in sys.modules, "
            "posebh_hf.PoseBHConfig.__name__]))")
    # lazy: the flag is consumed, nothing heavy is imported by the package itself, names resolve on first use
    assert json.loads(_python(code)) == [False, False, "PoseBHConfig"]


def test_the_written_out_choices_match_the_modules():
    from posebh_hf.cli import convert, convert_timm, evaluate, export, predict
    from posebh_hf.configuration_posebh import DEFAULT_DATASETS
    from posebh_hf.conversion.layout import OFFICIAL_SIZES
    from posebh_hf.evaluation import PROTOCOLS
    from posebh_hf.export import onnx
    from posebh_hf.video import VIDEO_SUFFIXES

    assert list(convert.OFFICIAL_VARIANTS) == list(OFFICIAL_SIZES)
    assert convert_timm.DEFAULT_DATASETS_TEXT == " ".join(DEFAULT_DATASETS)
    assert list(evaluate.PROTOCOL_NAMES) == list(PROTOCOLS)
    assert predict.VIDEO_SUFFIXES == VIDEO_SUFFIXES
    assert (export.DEFAULT_OPSET, export.EXPORTERS, export.ONNX_TOLERANCE) == (
        onnx.DEFAULT_OPSET, onnx.EXPORTERS, onnx.ONNX_TOLERANCE)
