"""The one image loader for inference (layer 0): files, bytes, PIL images or arrays -> RGB uint8 ``[H, W, 3]``.

Used by the pipeline when it is given a path or bytes, by ``posebh predict`` and by the demo, so a photo gives the
same pixels (and keypoint coordinates) everywhere:

- **EXIF orientation is applied** (as ``PIL.ImageOps.exif_transpose`` does) when reading a file or bytes: keypoints
  refer to the photo as a viewer shows it. A PIL image or an array passed in is used as it is (its owner decides).
  Training and evaluation data are different: ``posebh_hf.data.image_io`` decodes dataset images in their *stored*
  orientation, because the annotations were made on the stored pixels.
- **16-bit images are scaled, not clipped**: a 16-bit grey or colour PNG (or a ``uint16`` array) becomes 8-bit as
  ``round(v / 257)``, so 65535 -> 255 and the image keeps its contrast. 32-bit integer images (PIL mode ``I``) are
  read as 16-bit data; float images (mode ``F`` or float arrays) as [0, 1] when their maximum is <= 1, else [0, 255].
- Grey, palette, CMYK, YCbCr, ``LA``/``PA``/``RGBA`` become RGB; an alpha channel is dropped (the stored colours are
  used, as OpenCV does for training data), not composited.
- The pixel count is checked from the header before any pixel is decoded (decompression bombs).

Every failure is an :class:`ImageReadError` (a ValueError) whose ``kind`` says what went wrong.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["MAX_IMAGE_PIXELS", "MIN_IMAGE_SIDE", "ImageReadError", "check_image_size", "load_image", "to_rgb8"]

# Images above this many pixels are refused before decoding (PIL itself warns above ~89 MP).
# The same limits hold for `posebh predict`, the pipeline given a path or bytes, and the demo (issue: the CLI and
# the demo accept and refuse the same inputs, with the same message).
MAX_IMAGE_PIXELS = 64_000_000
# Smaller images hold no pose a top-down model can see; they are refused rather than upsampled silently.
MIN_IMAGE_SIDE = 8
_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the image upright (the table of PIL.ImageOps.exif_transpose)
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


class ImageReadError(ValueError):
    """An image that cannot be used. ``kind``: "missing", "too_large", "too_small", "not_image" or "corrupt";
    ``width`` and ``height`` are set for "too_small" and for "too_large" when the header was read."""

    def __init__(self, message: str, kind: str, width: int | None = None, height: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.width, self.height = kind, width, height


def _scale_16bit(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _array_to_rgb8(array: np.ndarray) -> np.ndarray:
    """An array [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] of any numeric dtype -> contiguous RGB uint8."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = array[:, :, None].repeat(3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an image array of shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    array = array[:, :, :3]
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        array = np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    elif array.dtype.itemsize >= 2:  # uint16 (and wider integers holding 16-bit data)
        array = _scale_16bit(array)
    else:  # int8
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def to_rgb8(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image (any mode) or an array as RGB uint8 [H, W, 3], 16-bit data scaled by 1/257 (no EXIF rotation)."""
    if not isinstance(image, Image.Image):
        return _array_to_rgb8(image)
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _array_to_rgb8(np.asarray(image))
    if mode in ("RGBA", "RGBa", "RGBX", "LA", "La", "PA"):
        return np.ascontiguousarray(np.asarray(image.convert("RGBA"))[:, :, :3])
    return np.asarray(image.convert("RGB"))


def _is_16bit_colour_png(image: Image.Image) -> bool:
    """PIL decodes 16-bit colour PNGs to 8 bits by dropping the low byte; those are decoded with OpenCV instead."""
    return image.format == "PNG" and image.mode in ("RGB", "RGBA") and any(
        isinstance(tile.args, str) and tile.args.endswith(";16B") or
        isinstance(tile.args, tuple) and tile.args and str(tile.args[0]).endswith(";16B") for tile in image.tile)


def _decode_16bit_colour(data: bytes) -> np.ndarray | None:
    import cv2  # noqa: PLC0415 - only for 16-bit colour PNGs

    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.ndim != 3 or array.dtype != np.uint16:
        return None
    return _scale_16bit(array[:, :, 2::-1])  # BGR(A) -> RGB


def check_image_size(width: int, height: int, *, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse images outside [MIN_IMAGE_SIDE, max_pixels] with the message every entry point shows."""
    if width * height > max_pixels:
        raise ImageReadError(f"image {name!r} is {width} x {height} pixels ({width * height / 1e6:.3g} MP); the limit "
                             f"is {max_pixels / 1e6:.3g} MP (a possible decompression bomb): downscale it",
                             "too_large", width, height)
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageReadError(f"image {name!r} is {width} x {height} pixels; both sides must be at least "
                             f"{MIN_IMAGE_SIDE}", "too_small", width, height)


def load_image(source: str | os.PathLike[str] | bytes | bytearray | BinaryIO | Image.Image | np.ndarray, *,
               max_pixels: int = MAX_IMAGE_PIXELS, apply_exif: bool = True, name: str | None = None) -> np.ndarray:
    """Read an image as RGB uint8 [H, W, 3] (see the module docstring for the rules).

    Args:
        source: a path, encoded bytes, a binary file object, or an already decoded PIL image / array (converted
            with :func:`to_rgb8`, never rotated).
        max_pixels: refuse images with more pixels, read from the header before decoding.
        apply_exif: rotate/mirror by the EXIF orientation tag (files and bytes only).
        name: how the image is named in error messages (default: the path, or "<bytes>").
    """
    if isinstance(source, (Image.Image, np.ndarray)):
        return to_rgb8(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = name or str(path)
        if path.is_dir():
            raise ImageReadError(f"image {name} is a folder, not an image file", "not_image")
        if not path.is_file():
            raise ImageReadError(f"image {name} does not exist", "missing")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ImageReadError(f"cannot read image {name}: {err.strerror or err}", "missing") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read()
    else:
        raise TypeError(f"cannot read an image from a {type(source).__name__}")
    name = name or "<bytes>"
    if not data:
        raise ImageReadError(f"{name} is not a readable image: the file is empty", "corrupt")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            check_image_size(width, height, name=name, max_pixels=max_pixels)
            wide_colour = _is_16bit_colour_png(image)
            image.load()  # decodes now, so truncated/corrupt data fails here
            orientation = image.getexif().get(_ORIENTATION) if apply_exif else None
            rgb = (_decode_16bit_colour(data) if wide_colour else None)
            if rgb is None:
                rgb = to_rgb8(image)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as err:  # Pillow's own limit (2 x its MAX_IMAGE_PIXELS) hit in open()
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(found.group(1)) / 1e6:.3g} MP" if found else "far more pixels than that"
        raise ImageReadError(f"image {name!r} has {size}; the limit is {max_pixels / 1e6:.3g} MP (a possible "
                             "decompression bomb): downscale it", "too_large") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{name} is not a readable image (an unknown format; PNG, JPEG, WebP, BMP, TIFF, ... "
                             "are read)", "not_image") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{name} is not a readable image: it looks corrupt or truncated "
                             f"({type(err).__name__}: {err})", "corrupt") from None
    method = _TRANSPOSE.get(_orientation_value(orientation))
    if method is not None:
        rgb = np.asarray(Image.fromarray(rgb).transpose(method))
    return np.ascontiguousarray(rgb)


def _orientation_value(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1
