"""`posebh predict` and the demo accept and refuse the same images and thresholds, with the same sentence.

Both read images through `posebh_hf.images.load_image` and check thresholds with
`posebh_hf.visualize.check_score_threshold`; the demo only capitalises the sentence and ends it with a period.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from posebh_hf.cli import main
from posebh_hf.images import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE

APP_DIR = Path(__file__).resolve().parents[1] / "app"
sys.path.insert(0, str(APP_DIR))

import demo_inputs  # noqa: E402
from demo_inputs import InputError  # noqa: E402
from demo_predict import run_prediction  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), dataset_names=["coco"])


def _cli_error(capsys, *argv) -> str:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse refuses bad option values itself, with the same one line and code 2
        code = exit_.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip() and not line.startswith(" ")]
    lines = [line for line in lines if not line.startswith("usage: ")]  # argparse's usage before its error line
    assert code == 2 and captured.out == "" and len(lines) == 1, captured.err
    return lines[0].split(": error: ", 1)[1]


def _same_sentence(cli: str, demo: str) -> bool:
    return demo == f"{cli[0].upper()}{cli[1:]}."


def test_the_limits_are_the_packages():
    assert demo_inputs.MAX_PIXELS == MAX_IMAGE_PIXELS


@pytest.mark.parametrize(("name", "size", "mode", "words"), [
    ("one_pixel.png", (1, 1), "RGB", "both sides must be at least 8"),
    ("thin.png", (4, 100), "RGB", "both sides must be at least 8"),
    ("big.png", (9000, 9000), "1", "81 MP); the limit is 64 MP"),    # over our limit, decoded by nobody
    ("bomb.png", (20000, 20000), "1", "has 400 MP; the limit is 64 MP"),  # over Pillow's own limit too
])
def test_images_are_refused_alike(capsys, tmp_path, monkeypatch, model_dir, name, size, mode, words):
    path = tmp_path / name
    Image.new(mode, size).save(path)
    monkeypatch.chdir(tmp_path)  # the CLI names the path it was given, the demo the upload's file name
    cli = _cli_error(capsys, "predict", name, "--model", model_dir)
    with pytest.raises(InputError) as demo:
        demo_inputs.load_image(path)
    assert words in cli and _same_sentence(cli, str(demo.value)), (cli, str(demo.value))


def test_smallest_accepted_image_is_accepted_by_both(capsys, tmp_path, model_dir):
    path = tmp_path / "small.png"
    Image.new("RGB", (MIN_IMAGE_SIDE, MIN_IMAGE_SIDE), (90, 90, 90)).save(path)
    assert main(["predict", str(path), "--model", str(model_dir)]) == 0
    capsys.readouterr()
    assert demo_inputs.load_image(path).width == MIN_IMAGE_SIDE


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.5"])
def test_thresholds_are_refused_alike(capsys, tmp_path, model_dir, value):
    path = tmp_path / "ok.png"
    Image.fromarray((np.random.default_rng(0).random((64, 48, 3)) * 255).astype(np.uint8)).save(path)
    cli = _cli_error(capsys, "predict", path, "--model", model_dir, "--threshold", value)
    assert cli.startswith("argument --threshold: the score threshold must be a number in [0, 1]"), cli
    from posebh_hf.pipeline import PoseBHPipeline

    pipe = PoseBHPipeline.from_pretrained(model_dir)
    image = demo_inputs.load_image(path)
    with pytest.raises(InputError) as demo:
        run_prediction(pipe, image, [], ["coco"], flip=False, threshold=float(value))
    assert _same_sentence(cli.removeprefix("argument --threshold: "), str(demo.value)), (cli, str(demo.value))


def test_a_folder_is_not_called_missing(capsys, tmp_path, model_dir):
    cli = _cli_error(capsys, "predict", tmp_path, "--model", model_dir)
    assert "does not exist" not in cli and "folder" in cli
