"""`posebh predict`: JSON + overlays on success; one clear error line and exit code 2 for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from posebh_hf.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), dataset_names=["coco", "ap10k"])


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "person.png"
    Image.fromarray((np.random.default_rng(0).random((120, 90, 3)) * 255).astype(np.uint8)).save(path)
    return path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_prints_json_and_writes_overlays(capsys, model_dir, image_path, tmp_path):
    code, out, err = run_cli(capsys, "predict", image_path, "--model", model_dir, "--skeleton", "coco",
                             "--skeleton", "ap10k", "--box", "5,5,60,100", "--out-dir", tmp_path)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["width"] == 90 and doc["height"] == 120
    kps = doc["instances"][0]["skeletons"]["ap10k"]["keypoints"]
    assert len(kps) == 17 and kps[2]["name"] == "nose"
    assert (tmp_path / "person_coco.png").is_file() and (tmp_path / "person_ap10k.png").is_file()


def _error_case(capsys, *argv):
    code, out, err = run_cli(capsys, "predict", *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == ""
    assert len(lines) == 1, err
    return lines[0]


def test_corrupt_and_non_image_files(capsys, model_dir, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "not a readable image" in _error_case(capsys, text, "--model", model_dir)
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert "not a readable image" in _error_case(capsys, corrupt, "--model", model_dir)
    assert "does not exist" in _error_case(capsys, tmp_path / "missing.jpg", "--model", model_dir)


def test_decompression_bomb_is_refused(capsys, model_dir, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # 81 MP in a few kB
    assert "decompression bomb" in _error_case(capsys, bomb, "--model", model_dir)


def test_unknown_skeleton(capsys, model_dir, image_path):
    assert "unknown skeleton" in _error_case(capsys, image_path, "--model", model_dir, "--skeleton", "zebra")


@pytest.mark.parametrize(("box", "message"), [("500,500,10,10", "outside"), ("1,2,nan,4", "non-finite"),
                                               ("1,2,-3,4", "non-positive"), ("1,2,3", "expected X,Y,W,H")])
def test_bad_boxes(capsys, model_dir, image_path, box, message):
    if message in ("outside",):
        assert message in _error_case(capsys, image_path, "--model", model_dir, "--box", box)
    else:  # argparse rejects malformed boxes itself (exit 2, one usage line + one error line)
        with pytest.raises(SystemExit) as exc:
            main(["predict", str(image_path), "--model", str(model_dir), f"--box={box}"])
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_model_folder_that_is_not_posebh(capsys, image_path, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vitpose"}))
    assert "not a PoseBH model" in _error_case(capsys, image_path, "--model", tmp_path)
    assert "no config.json" in _error_case(capsys, image_path, "--model", tmp_path / "..")


def test_exif_orientation_is_applied_to_photos(capsys, model_dir, tmp_path):
    """An orientation-6 JPEG stored 320x180 is shown (and predicted) as 180x320; boxes are checked against that."""
    exif = Image.Exif()
    exif[274] = 6
    photo = tmp_path / "phone.jpg"
    Image.new("RGB", (320, 180), (90, 120, 150)).save(photo, exif=exif)
    code, out, err = run_cli(capsys, "predict", photo, "--model", model_dir, "--skeleton", "coco")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["width"], doc["height"]) == (180, 320)
    assert all(0.0 <= kp["score"] <= 1.0 for kp in doc["instances"][0]["skeletons"]["coco"]["keypoints"])
    assert "outside the 180x320 image" in _error_case(capsys, photo, "--model", model_dir, "--box", "200,10,50,50")


def test_16bit_grayscale_png_is_scaled_not_saturated(capsys, model_dir, tmp_path):
    import cv2

    gray = np.full((120, 90), 15650, np.uint16)  # 15650 / 257 = 60.9
    path = tmp_path / "depth.png"
    cv2.imwrite(str(path), gray)
    from posebh_hf.pipeline import load_image

    assert load_image(path).mean() == pytest.approx(61, abs=0.01)
    code, out, err = run_cli(capsys, "predict", path, "--model", model_dir, "--skeleton", "coco")
    assert code == 0, err
