"""Input checks for the demo: reading uploads within limits, and parsing boxes the user types or clicks.

Nothing here imports gradio, and the package (with torch) only when an image is decoded, so the box rules are
testable on their own. Every rejection is an `InputError` (a ValueError) whose message is written for the person
looking at the page.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Limits keep one request's memory bounded: a 4096 x 4096 RGB image is 48 MiB as uint8, and the queue
# runs at most `concurrency_limit` requests at a time (see app.py).
MAX_FILE_BYTES = 20 * 1024 * 1024
# The package's pixel limit (posebh_hf.images.MAX_IMAGE_PIXELS), repeated here so that this module imports without
# torch; tests/test_input_parity.py checks they are equal, so `posebh predict` and the demo accept and refuse the same
# images with the same message (the package's loader also refuses sides under MIN_IMAGE_SIDE). A 64 MP RGB image is
# 192 MiB as uint8.
MAX_PIXELS = 64_000_000
MAX_BOXES = 20
# Boxes narrower/shorter than this (pixels) are almost certainly misclicks, not people.
MIN_BOX_SIDE = 2.0


class InputError(ValueError):
    """A problem with what the user gave (file, boxes); the message is shown in the UI as is."""


@dataclass(frozen=True)
class LoadedImage:
    """An upload decoded to RGB. rgb: [H, W, 3] uint8; name: the file name shown in the JSON."""

    rgb: np.ndarray
    name: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def load_image(path: str | os.PathLike[str], *, max_bytes: int | None = None,
               max_pixels: int | None = None, display_name: str | None = None) -> LoadedImage:
    """Decode an uploaded file to RGB, refusing oversized, non-image and corrupt files with a clear message.

    Decoding is the package's one inference loader (`posebh_hf.images.load_image`): the size is read from the
    header before any pixel is decoded, so a decompression bomb costs nothing; EXIF orientation is applied so
    keypoints match what the user sees; 16-bit images are scaled to 8 bits; alpha is dropped.
    """
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    path = Path(path)
    name = display_name or path.name
    if not path.is_file():
        raise InputError(f"The upload {name!r} is missing on the server; please upload it again.")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"The file {name!r} is {size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB.")
    if size == 0:
        raise InputError(f"The file {name!r} is empty.")
    from posebh_hf.images import ImageReadError  # noqa: PLC0415 - the package (and torch) only when decoding
    from posebh_hf.images import load_image as read_image  # noqa: PLC0415

    try:
        rgb = read_image(path, max_pixels=max_pixels, name=name)
    except ImageReadError as err:
        if err.kind in ("too_large", "too_small"):  # the package's sentence, as `posebh predict` prints it
            message = str(err)
            raise InputError(f"{message[0].upper()}{message[1:]}.") from None
        if err.kind == "not_image":
            raise InputError(f"The file {name!r} is not an image this demo can read (PNG, JPEG, WebP, BMP, ...)."
                             ) from None
        if err.kind == "missing":
            raise InputError(f"The upload {name!r} is missing on the server; please upload it again.") from None
        raise InputError(f"The image {name!r} could not be decoded; it looks corrupt or truncated ({err}).") from None
    return LoadedImage(rgb=rgb, name=name)


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BOX_LINE = re.compile(rf"^\[?\s*({_NUMBER})\s*[,\s]\s*({_NUMBER})\s*[,\s]\s*({_NUMBER})\s*[,\s]\s*({_NUMBER})\s*\]?$")


def parse_boxes(text: str | None, width: int, height: int, *, max_boxes: int = MAX_BOXES) -> list[list[float]]:
    """Boxes typed as `x, y, w, h` (pixels, top-left corner + size), one per line or separated by `;`.

    Boxes are clipped to the image; a box that is empty after clipping is an error naming its line.
    Returns a list of [x, y, w, h] floats (possibly empty when the text is blank).
    """
    boxes: list[list[float]] = []
    entries = [e.strip() for e in re.split(r"[;\n]", text or "")]
    for number, entry in enumerate(entries, start=1):
        if not entry or entry.startswith("#"):
            continue
        match = _BOX_LINE.match(entry)
        if match is None:
            raise InputError(f"Box {number} ({entry!r}) is not 'x, y, w, h': four numbers in pixels, e.g. "
                             "'10, 20, 200, 400'.")
        x, y, w, h = (float(v) for v in match.groups())
        if w <= 0 or h <= 0:
            raise InputError(f"Box {number} ({entry!r}) has width {w:g} and height {h:g}; both must be positive.")
        boxes.append(clip_box([x, y, w, h], width, height, label=f"Box {number} ({entry!r})"))
    if len(boxes) > max_boxes:
        raise InputError(f"{len(boxes)} boxes were given; the demo handles at most {max_boxes} per image.")
    return boxes


def clip_box(box: list[float], width: int, height: int, *, label: str = "A box") -> list[float]:
    """Clip an [x, y, w, h] box to the image; an error when too little of it is left."""
    x0 = min(max(box[0], 0.0), float(width))
    y0 = min(max(box[1], 0.0), float(height))
    x1 = min(max(box[0] + box[2], 0.0), float(width))
    y1 = min(max(box[1] + box[3], 0.0), float(height))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        raise InputError(f"{label} lies outside the {width} x {height} image (or is under {MIN_BOX_SIDE:g} px).")
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def format_boxes(boxes: list[list[float]]) -> str:
    """The text form `parse_boxes` reads, one box per line."""
    return "\n".join(", ".join(f"{v:g}" for v in box) for box in boxes)


def corners_to_box(a: tuple[float, float], b: tuple[float, float]) -> list[float]:
    """Two opposite corners clicked on the image (any order) -> [x, y, w, h]."""
    x0, x1 = sorted((float(a[0]), float(b[0])))
    y0, y1 = sorted((float(a[1]), float(b[1])))
    return [x0, y0, x1 - x0, y1 - y0]


def add_corner(pending: list[float] | None, point: tuple[float, float], boxes_text: str | None
               ) -> tuple[list[float] | None, str, str]:
    """One click on the image. The first click stores a corner; the second closes a box and appends it.

    Returns (new pending corner or None, new boxes text, a status line for the user).
    """
    text = (boxes_text or "").rstrip()
    if pending is None:
        return [float(point[0]), float(point[1])], text, (
            f"First corner at ({point[0]:.0f}, {point[1]:.0f}); click the opposite corner.")
    box = corners_to_box((pending[0], pending[1]), point)
    if box[2] < MIN_BOX_SIDE or box[3] < MIN_BOX_SIDE:
        return None, text, "That box was too small (both clicks on the same spot?); start again."
    line = ", ".join(f"{v:g}" for v in box)
    new_text = f"{text}\n{line}" if text else line
    return None, new_text, f"Added box {line}. Click two more corners for another box."
