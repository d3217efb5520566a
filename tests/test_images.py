"""The one inference image loader (posebh_hf.images): EXIF orientation, 16-bit scaling, modes, errors."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from posebh_hf.data.image_io import decode_image
from posebh_hf.images import ImageReadError, load_image, to_rgb8


def _jpeg(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[274] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def _pattern() -> Image.Image:
    """40 wide, 20 high, with a bright top-left corner so every rotation/mirror is distinguishable."""
    array = np.full((20, 40, 3), 30, np.uint8)
    array[:8, :8] = 250
    return Image.fromarray(array)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pil_exif_transpose(orientation, tmp_path):
    data = _jpeg(_pattern(), orientation)
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(data)
    want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    got = load_image(path)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(load_image(data), want)


def test_orientation_6_jpeg_is_shown_upright_but_datasets_keep_stored_pixels(tmp_path):
    data = _jpeg(_pattern(), 6)  # stored 40x20, shown rotated 90 degrees clockwise
    shown = load_image(data)
    assert shown.shape == (40, 20, 3)
    assert shown[:8, -8:].mean() > 200  # the stored top-left corner is now top-right
    assert load_image(data, apply_exif=False).shape == (20, 40, 3)
    assert decode_image(data).shape == (20, 40, 3)  # training/evaluation data: annotations use stored pixels


def test_16bit_grayscale_png_is_divided_by_257_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)  # PIL writes mode I;16 as a 16-bit greyscale PNG
    assert Image.open(path).mode.startswith("I")
    rgb = load_image(path)
    want = np.rint(values / 257.0).astype(np.uint8)
    assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
    np.testing.assert_array_equal(rgb[..., 0], want)
    assert (rgb[..., 0] == rgb[..., 2]).all()
    dark = np.full((10, 10), 15650, np.uint16)  # the case: a true mean of 60.9, decoded saturated before
    dark_path = tmp_path / "dark16.png"
    cv2.imwrite(str(dark_path), dark)
    assert load_image(dark_path).mean() == pytest.approx(61, abs=0.01)


def test_16bit_colour_png_keeps_all_16_bits(tmp_path):
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (30, 20, 3), dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), rgb16[:, :, ::-1])  # OpenCV writes BGR
    np.testing.assert_array_equal(load_image(path), np.rint(rgb16 / 257.0).astype(np.uint8))
    rgba16 = np.concatenate([rgb16, np.full((30, 20, 1), 1000, np.uint16)], axis=2)
    cv2.imwrite(str(tmp_path / "rgba16.png"), rgba16[:, :, [2, 1, 0, 3]])
    np.testing.assert_array_equal(load_image(tmp_path / "rgba16.png"), np.rint(rgb16 / 257.0).astype(np.uint8))


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "PA", "1", "CMYK", "I", "F"])
def test_modes_become_rgb8(mode):
    base = _pattern()
    if mode == "PA":
        image = base.convert("P")
        image = image.convert("PA")
    elif mode == "I":
        image = Image.fromarray(np.asarray(base.convert("L")).astype(np.int32) * 257)
    elif mode == "F":
        image = Image.fromarray(np.asarray(base.convert("L")).astype(np.float32) / 255.0)
    else:
        image = base.convert(mode)
    rgb = to_rgb8(image)
    assert rgb.dtype == np.uint8 and rgb.shape == (20, 40, 3)
    if mode in ("L", "LA", "I", "F"):
        np.testing.assert_array_equal(rgb[..., 0], np.asarray(base.convert("L")))


def test_alpha_is_dropped_not_composited():
    rgba = Image.new("RGBA", (10, 10), (1, 2, 3, 0))
    assert tuple(to_rgb8(rgba)[0, 0]) == (1, 2, 3)
    la = Image.new("LA", (10, 10), (77, 0))
    assert tuple(to_rgb8(la)[0, 0]) == (77, 77, 77)


def test_arrays_of_every_dtype():
    assert to_rgb8(np.full((4, 5), 65535, np.uint16)).max() == 255
    assert to_rgb8(np.full((4, 5, 3), 0.5, np.float32))[0, 0, 0] == 128
    assert to_rgb8(np.full((4, 5, 4), 9, np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="shape"):
        to_rgb8(np.zeros((4, 5, 2)))


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist") as err:
        load_image(tmp_path / "gone.png")
    assert err.value.kind == "missing"
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageReadError, match="not a readable image") as err:
        load_image(tmp_path / "notes.png")
    assert err.value.kind == "not_image"
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    with pytest.raises(ImageReadError, match="corrupt") as err:
        load_image(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert err.value.kind == "corrupt"
    with pytest.raises(ImageReadError, match="the limit is") as err:
        load_image(buf.getvalue(), max_pixels=100)
    assert (err.value.kind, err.value.width, err.value.height) == ("too_large", 64, 64)
