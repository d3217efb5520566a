"""Image decoding for the input pipeline: stored bytes or paths -> RGB uint8 arrays with OpenCV."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["decode_image"]

# Pixels as stored: annotations refer to the stored orientation, so EXIF rotation must not be applied.
_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def decode_image(value: Any) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB from a ``datasets.Image(decode=False)`` value, a path, bytes, a PIL image or an array."""
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is None:
            if not path:
                raise ValueError("image value has neither bytes nor a path")
            data = Path(path).read_bytes()
        return _decode_bytes(data, path)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(value), None)
    if isinstance(value, (str, Path)):
        return _decode_bytes(Path(value).read_bytes(), str(value))
    if hasattr(value, "convert"):  # PIL image (a dataset whose Image feature decodes)
        return np.asarray(value.convert("RGB"))
    array = np.asarray(value)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 3:
        return array
    raise ValueError(f"cannot use an image of type {type(value).__name__} with shape {array.shape}")


def _decode_bytes(data: bytes, name: str | None) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _FLAGS)
    if bgr is None:
        raise ValueError(f"cannot decode image {name or '<bytes>'} ({len(data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
