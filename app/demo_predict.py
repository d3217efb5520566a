"""One demo request without the UI: image + boxes + skeletons -> overlay images and the `posebh predict` JSON.

Uses only the public API (`posebh_hf.pipeline`, `posebh_hf.visualize`). The model runs under one lock: the
queue lets a few requests prepare and draw in parallel while forwards go one at a time, which keeps peak
memory at one forward's worth whatever the number of users.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from demo_inputs import MAX_BOXES, InputError, LoadedImage

from posebh_hf.pipeline import results_to_json
from posebh_hf.visualize import check_score_threshold, draw_instances

# Overlays are drawn on a copy whose long side is at most this (the JSON keeps full-resolution coordinates):
# a browser shows no more, and it bounds the memory of one response.
DISPLAY_MAX_SIDE = 1280
MAX_SKELETONS = 8
MODEL_LOCK = threading.Lock()

BoxMode = str  # "detect" | "boxes" | "whole"
BOX_MODES = ("detect", "boxes", "whole")


@dataclass
class Prediction:
    """overlays: (RGB [h, w, 3] uint8, caption) per skeleton; payload: the `posebh predict` JSON; note: status."""

    overlays: list[tuple[np.ndarray, str]]
    payload: dict
    note: str


def check_skeletons(chosen: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The chosen skeleton names, validated against what the model offers (heads + attached packs)."""
    chosen = [str(s) for s in (chosen or [])]
    if not chosen:
        raise InputError("Choose at least one skeleton.")
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise InputError(f"Unknown skeleton(s) {', '.join(map(repr, unknown))}; this model offers "
                         f"{', '.join(available)}.")
    if len(chosen) > MAX_SKELETONS:
        raise InputError(f"{len(chosen)} skeletons chosen; the demo draws at most {MAX_SKELETONS} at once.")
    return list(dict.fromkeys(chosen))  # keep order, drop repeats


def choose_boxes(image: LoadedImage, mode: BoxMode, typed: list[list[float]],
                 detect: Callable[[np.ndarray], tuple[list[list[float]], str]]) -> tuple[list[list[float]], str]:
    """Boxes for the request and a sentence saying where they came from. Falls back to the whole image."""
    whole = [[0.0, 0.0, float(image.width), float(image.height)]]
    if mode == "whole":
        return whole, "whole image as one box"
    if mode == "boxes":
        if not typed:
            raise InputError("'My boxes' is selected but no box was given: type 'x, y, w, h' lines or click two "
                             "opposite corners on the image (or choose another box source).")
        return typed, f"{len(typed)} box(es) you gave"
    if mode != "detect":
        raise InputError(f"Unknown box source {mode!r}; choose one of {', '.join(BOX_MODES)}.")
    found, by = detect(image.rgb)
    if not found:
        verb = "" if by.startswith("no detector") else " found no person/animal"
        return whole, f"{by}{verb}, so the whole image is used as one box"
    return found[:MAX_BOXES], f"{len(found[:MAX_BOXES])} box(es) from {by}"


def _display_copy(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    height, width = rgb.shape[:2]
    scale = min(1.0, DISPLAY_MAX_SIDE / max(height, width))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def draw_overlays(pipe, image: LoadedImage, results: list[dict], boxes: list[list[float]],
                  skeletons: list[str], threshold: float) -> list[tuple[np.ndarray, str]]:
    """One overlay per skeleton with every instance drawn; keypoints under `threshold` are hidden."""
    canvas, scale = _display_copy(image.rgb)
    overlays = []
    for name in skeletons:
        instances = [{"bbox": [v * scale for v in box],
                      "keypoints": np.asarray(res[name]["keypoints"], dtype=np.float64) * scale,
                      "scores": np.asarray(res[name]["scores"], dtype=np.float64)}
                     for box, res in zip(boxes, results, strict=True)]
        drawn = draw_instances(canvas, instances, pipe.skeleton(name), score_threshold=threshold)
        kept = sum(int((inst["scores"] >= threshold).sum()) for inst in instances)
        total = sum(len(inst["scores"]) for inst in instances)
        overlays.append((drawn, f"{name}: {kept}/{total} keypoints ≥ {threshold:.2f}"))
    return overlays


def run_prediction(pipe, image: LoadedImage, boxes: list[list[float]], skeletons: list[str], *, flip: bool,
                   threshold: float) -> Prediction:
    """Keypoints for every box and skeleton, drawn and serialised (the JSON schema of `posebh predict`)."""
    try:
        threshold = check_score_threshold(threshold)
    except ValueError as err:  # the sentence `posebh predict --threshold` gives
        raise InputError(f"{str(err)[0].upper()}{str(err)[1:]}.") from None
    start = time.perf_counter()
    with MODEL_LOCK:
        results = pipe(image.rgb, boxes=boxes, skeletons=skeletons, flip=bool(flip))
    seconds = time.perf_counter() - start
    payload = results_to_json(results, boxes, skeletons, pipe, image_name=image.name, width=image.width,
                              height=image.height)
    overlays = draw_overlays(pipe, image, results, boxes, skeletons, float(threshold))
    note = (f"{len(boxes)} instance(s) x {len(skeletons)} skeleton(s), flip test {'on' if flip else 'off'}, "
            f"model time {seconds:.2f} s")
    return Prediction(overlays=overlays, payload=payload, note=note)


class OverlayFiles:
    """Overlay PNGs for the gallery, written atomically into one private folder per request and pruned by age.

    Why files: Gradio caches returned arrays by content hash with a plain (non-atomic) write, so two requests
    returning the same picture rewrite a file while it is being downloaded. Files we return are copied into
    its cache atomically instead.
    """

    def __init__(self, root: Path | None = None, max_age_s: float = 600.0) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="posebh_demo_overlays_"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s

    def prune(self) -> None:
        """Remove request folders older than `max_age_s` (Gradio has copied them by then)."""
        cutoff = time.time() - self.max_age_s
        for folder in self.root.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:
                pass  # pruned by a concurrent request

    def write(self, overlays: list[tuple[np.ndarray, str]], names: list[str]) -> list[tuple[str, str]]:
        """Save each overlay as `<name>.png`; returns (path, caption) pairs for `gr.Gallery`."""
        self.prune()
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        out = []
        for (rgb, caption), name in zip(overlays, names, strict=True):
            final = folder / f"{name}.png"
            staging = folder / f".{name}.tmp.png"
            ok = cv2.imwrite(str(staging), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise OSError(f"could not write the overlay {staging}")
            os.replace(staging, final)
            out.append((str(final), caption))
        return out
