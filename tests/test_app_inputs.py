"""The demo's UI-free rules (app/demo_inputs.py, demo_model.py, demo_examples.py): limits, boxes, model choice."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

APP_DIR = Path(__file__).resolve().parents[1] / "app"
sys.path.insert(0, str(APP_DIR))

import demo_examples  # noqa: E402
import demo_model  # noqa: E402
from demo_inputs import (  # noqa: E402
    MAX_BOXES,
    InputError,
    add_corner,
    corners_to_box,
    format_boxes,
    load_image,
    parse_boxes,
)


def _save(tmp_path: Path, name: str, image: Image.Image, **kwargs) -> Path:
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


# ---------------------------------------------------------------------------------------------- load_image
def test_load_image_returns_rgb_pixels_unchanged(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    loaded = load_image(_save(tmp_path, "a.png", Image.fromarray(rgb)))
    assert loaded.name == "a.png" and (loaded.width, loaded.height) == (40, 30)
    np.testing.assert_array_equal(loaded.rgb, rgb)


def test_load_image_converts_gray_and_rgba_to_rgb(tmp_path):
    gray = load_image(_save(tmp_path, "g.png", Image.new("L", (20, 10), 77)))
    rgba = load_image(_save(tmp_path, "r.png", Image.new("RGBA", (20, 10), (1, 2, 3, 0))))
    assert gray.rgb.shape == (10, 20, 3) and (gray.rgb == 77).all()
    assert rgba.rgb.shape == (10, 20, 3) and tuple(rgba.rgb[0, 0]) == (1, 2, 3)


def test_load_image_applies_exif_orientation(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[274] = 6  # rotate 90 degrees clockwise for display
    loaded = load_image(_save(tmp_path, "o.jpg", image, exif=exif))
    assert (loaded.width, loaded.height) == (20, 40)


def test_non_image_is_refused_with_a_readable_message(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(InputError, match=r"'notes.png' is not an image"):
        load_image(path)


def test_truncated_jpeg_is_refused_as_corrupt(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="could not be decoded"):
        load_image(path)


def test_empty_and_missing_files_are_refused(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(InputError, match="missing"):
        load_image(tmp_path / "gone.png")


def test_size_limits_are_checked_before_decoding(tmp_path):
    path = _save(tmp_path, "big.png", Image.new("RGB", (300, 200)))
    with pytest.raises(InputError, match=r"300 x 200 pixels \(0.06 MP\); the limit is 0.05 MP"):
        load_image(path, max_pixels=50_000)
    with pytest.raises(InputError, match="MiB"):
        load_image(path, max_bytes=10)
    tiny = _save(tmp_path, "tiny.png", Image.new("RGB", (4, 100)))
    with pytest.raises(InputError, match="at least"):
        load_image(tiny)


def test_decompression_bombs_are_refused_from_the_header(tmp_path):
    # 1-bit PNGs are tiny on disk but huge as RGB; neither may be decoded. 9000 x 9000 is over our limit,
    # 20000 x 20000 also over twice Pillow's own (which then raises already in Image.open).
    for side in (9000, 20000):
        path = _save(tmp_path, f"bomb{side}.png", Image.new("1", (side, side)))
        assert path.stat().st_size < 2**20
        with pytest.raises(InputError, match="limit"):
            load_image(path)


# ---------------------------------------------------------------------------------------------- boxes
def test_parse_boxes_reads_lines_semicolons_brackets_and_clips():
    text = "10, 20, 30, 40\n[5 5 10 10]; -10,-10,30,30\n# a comment\n\n90,90,50,50"
    boxes = parse_boxes(text, width=100, height=100)
    assert boxes == [[10, 20, 30, 40], [5, 5, 10, 10], [0, 0, 20, 20], [90, 90, 10, 10]]
    assert parse_boxes(format_boxes(boxes), 100, 100) == boxes
    assert parse_boxes("  ", 100, 100) == []


@pytest.mark.parametrize(("text", "message"), [
    ("1,2,3", r"Box 1 \('1,2,3'\) is not 'x, y, w, h'"),
    ("1,2,3,4\nfoo", r"Box 2 \('foo'\)"),
    ("1,2,0,4", "both must be positive"),
    ("500,500,10,10", "outside the 100 x 100 image"),
])
def test_parse_boxes_names_the_bad_box(text, message):
    with pytest.raises(InputError, match=message):
        parse_boxes(text, 100, 100)


def test_parse_boxes_limits_the_count():
    with pytest.raises(InputError, match=f"at most {MAX_BOXES}"):
        parse_boxes("\n".join(["0,0,10,10"] * (MAX_BOXES + 1)), 100, 100)


def test_two_clicks_make_one_box_in_any_corner_order():
    assert corners_to_box((50, 10), (20, 40)) == [20, 10, 30, 30]
    pending, text, msg = add_corner(None, (50, 10), "1, 1, 5, 5")
    assert pending == [50, 10] and text == "1, 1, 5, 5" and "opposite corner" in msg
    pending, text, msg = add_corner(pending, (20, 40), text)
    assert pending is None and text == "1, 1, 5, 5\n20, 10, 30, 30" and "Added box" in msg
    assert parse_boxes(text, 100, 100) == [[1, 1, 5, 5], [20, 10, 30, 30]]
    pending, text2, msg = add_corner([5, 5], (5, 6), text)
    assert pending is None and text2 == text and "too small" in msg


# ---------------------------------------------------------------------------------------------- model choice
def test_model_choice_order(tmp_path):
    default = tmp_path / "default_model"
    assert demo_model.choose_model("x/y", env={"POSEBH_MODEL": "e"}, default_dir=default).origin == "argument"
    assert demo_model.choose_model(None, env={"POSEBH_MODEL": "e"}, default_dir=default).source == "e"
    random_choice = demo_model.choose_model(None, env={}, default_dir=default)
    assert random_choice.is_random and "random" in random_choice.describe()
    default.mkdir()
    (default / "config.json").write_text("{}")
    chosen = demo_model.choose_model(None, env={}, default_dir=default)
    assert chosen.origin == "default" and chosen.source == str(default) and not chosen.is_random


def test_random_banner_says_the_output_is_meaningless():
    assert "meaningless" in demo_model.RANDOM_MODEL_BANNER
    assert "default_model" in demo_model.RANDOM_MODEL_BANNER


# ---------------------------------------------------------------------------------------------- examples
def test_examples_come_from_scikit_image_and_are_not_in_the_repo():
    bundled = demo_examples.bundled_examples()
    assert [p.name for p in bundled] == ["astronaut.png", "chelsea.png"]
    assert all(p.parent.parent.name == "skimage" for p in bundled)  # used from the installed package


def test_shared_examples_are_added_without_duplicates(tmp_path):
    folder = tmp_path / "examples"
    folder.mkdir()
    astronaut = demo_examples.bundled_examples()[0]
    (folder / "astronaut_copy.png").write_bytes(astronaut.read_bytes())  # same bytes as the skimage file
    Image.new("RGB", (10, 10)).save(folder / "new.jpg")
    (folder / "readme.txt").write_text("x")
    names = [p.name for p in demo_examples.example_images(folder)]
    assert names == ["astronaut.png", "chelsea.png", "new.jpg"]
    assert demo_examples.shared_examples(tmp_path / "absent") == []


def test_the_page_says_what_the_default_model_is_and_where_real_weights_are():
    choice = demo_model.choose_model(None, env={})
    note = demo_model.model_note(choice)
    if choice.origin == "default":
        numbers = demo_model.card_numbers(demo_model.DEFAULT_MODEL_DIR)
        assert numbers["lspe on lspe"] in note and "2 CPU cores" in note and "small" in note
    assert "posebh convert official --src" in note and "arxiv.org/abs/2505.17475" in note
    other = demo_model.model_note(demo_model.ModelChoice("org/real-model", "argument"))
    assert "`org/real-model`" in other and "2 CPU cores" not in other
