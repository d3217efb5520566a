"""Synthetic pose corpora: simple figures with known keypoints, drawn with OpenCV and numpy (no download).

`posebh data synth --out DIR` writes, for each kind, the layout of mdt_mini's crops (COCO-style files that
`posebh data build --format coco-custom` and the training configs read):

    DIR/<kind>/<kind>_train.json, DIR/<kind>/<kind>_val.json, DIR/<kind>/images/<split>_<n>.png

Kinds: `person` (14 keypoints, frontal stick figure), `quadruped` (14, side view), `bird` (9, top view). One figure
per image, every keypoint inside the image and labelled visible (2); the category carries keypoint names, links and
flip pairs, so the skeleton travels with the file. Output depends only on (kinds, sizes, seed): each image draws
from its own `numpy.random.default_rng((seed, kind, split, n))`.

Training configs can name a corpus directly: `train: synth:person` (or `synth:person?train=48&val=16&seed=0`)
generates it once into the run's data cache (`ensure_synth_source`); `configs/smoke.yaml` uses this.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

__all__ = ["KINDS", "SYNTH_SCHEME", "SynthSpec", "ensure_synth_source", "parse_synth_source", "write_synth"]

SYNTH_SCHEME = "synth:"
SPLITS = ("train", "val")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Figure:
    """A kind of figure: keypoint names, links (0-based), flip pairs (0-based) and a pose sampler.

    `pose(rng)` returns [K, 2] points in figure units (about 1 tall, y down) and per-link line widths in the same
    units; `blobs` are (keypoint index, radius) discs drawn over the links (a head, a body).
    """

    name: str
    keypoints: tuple[str, ...]
    links: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    pose: Callable[[np.random.Generator], np.ndarray]
    widths: tuple[float, ...]
    blobs: tuple[tuple[int, float], ...]


def _limb(start: np.ndarray, angle_deg: float, length: float) -> np.ndarray:
    """The end of a segment of `length` from `start` at `angle_deg` (0 = +x, 90 = down, image coordinates)."""
    a = math.radians(angle_deg)
    return start + length * np.array([math.cos(a), math.sin(a)])


def _person(rng: np.random.Generator) -> np.ndarray:
    # Frontal view: the person's left is on the image's right (COCO convention).
    u = rng.uniform
    neck = np.array([0.0, -0.30])
    head = neck + [u(-0.02, 0.02), -0.13]
    shoulder = u(0.10, 0.14)
    ls, rs = neck + [shoulder, 0.01], neck + [-shoulder, 0.01]
    pelvis = neck + [u(-0.02, 0.02), 0.38]
    hip = u(0.07, 0.09)
    lh, rh = pelvis + [hip, 0.0], pelvis + [-hip, 0.0]
    le = _limb(ls, u(20, 160), 0.17)
    re = _limb(rs, 180 - u(20, 160), 0.17)
    lw = _limb(le, u(-60, 200), 0.15)
    rw = _limb(re, u(-20, 240), 0.15)
    lk = _limb(lh, u(60, 100), 0.22)
    rk = _limb(rh, u(80, 120), 0.22)
    la = _limb(lk, u(75, 110), 0.20)
    ra = _limb(rk, u(70, 105), 0.20)
    return np.stack([head, neck, ls, rs, le, re, lw, rw, lh, rh, lk, rk, la, ra])


def _quadruped(rng: np.random.Generator) -> np.ndarray:
    # Side view facing +x (mirrored at random when drawn): body from withers to tail base, four legs, head, tail.
    u = rng.uniform
    length = u(0.55, 0.70)
    withers = np.array([length / 2, -0.10])
    tail_base = np.array([-length / 2, u(-0.12, -0.06)])
    neck = withers + [0.06, -u(0.10, 0.16)]
    head = _limb(neck, u(-40, 10), 0.14)
    nose = _limb(head, u(0, 50), 0.10)
    tail_tip = _limb(tail_base, u(110, 250), u(0.18, 0.26))
    points = [nose, head, neck, withers, tail_base, tail_tip]
    for shoulder in (withers + [-0.02, 0.08], tail_base + [0.04, 0.08]):
        swing = u(75, 105)  # the pair moves together, so its two legs stay apart
        for offset in (0.05, -0.05):  # left (near) leg first, then right (far)
            knee = _limb(shoulder + [offset, 0.0], swing + u(-12, 12), 0.17)
            points += [knee, _limb(knee, u(80, 100), 0.16)]
    return np.stack(points)


def _bird(rng: np.random.Generator) -> np.ndarray:
    # Top view, flying up (-y): wings spread left and right; the bird's left is on the image's left.
    u = rng.uniform
    body = np.array([0.0, 0.0])
    neck = body + [0.0, -0.16]
    head = neck + [u(-0.02, 0.02), -0.10]
    beak = _limb(head, -90 + u(-20, 20), 0.09)
    tail = body + [u(-0.03, 0.03), u(0.26, 0.32)]
    spread = u(-25, 25)
    span = u(0.28, 0.38)
    lm = _limb(neck + [-0.04, 0.06], 180 + spread, span * 0.55)
    rm = _limb(neck + [0.04, 0.06], -spread, span * 0.55)
    lt = _limb(lm, 180 + spread + u(-30, 15), span * 0.6)
    rt = _limb(rm, -spread - u(-30, 15), span * 0.6)
    return np.stack([beak, head, neck, lm, lt, rm, rt, body, tail])


KINDS: dict[str, Figure] = {
    "person": Figure(
        "person",
        ("head", "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
         "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"),
        ((0, 1), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (2, 8), (3, 9), (8, 9), (8, 10), (9, 11),
         (10, 12), (11, 13)),
        ((2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13)),
        _person,
        (0.05, 0.05, 0.05, 0.04, 0.04, 0.03, 0.03, 0.06, 0.06, 0.05, 0.05, 0.05, 0.04, 0.04),
        ((0, 0.07),)),
    "quadruped": Figure(
        "quadruped",
        ("nose", "head", "neck", "withers", "tail_base", "tail_tip", "front_left_knee", "front_left_paw",
         "front_right_knee", "front_right_paw", "back_left_knee", "back_left_paw", "back_right_knee",
         "back_right_paw"),
        ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (3, 6), (6, 7), (3, 8), (8, 9), (4, 10), (10, 11), (4, 12),
         (12, 13)),
        ((6, 8), (7, 9), (10, 12), (11, 13)),
        _quadruped,
        (0.04, 0.06, 0.07, 0.12, 0.025, 0.04, 0.03, 0.04, 0.03, 0.04, 0.03, 0.04, 0.03),
        ((1, 0.06),)),
    "bird": Figure(
        "bird",
        ("beak", "head", "neck", "left_wing_mid", "left_wing_tip", "right_wing_mid", "right_wing_tip", "body",
         "tail"),
        ((0, 1), (1, 2), (2, 3), (3, 4), (2, 5), (5, 6), (2, 7), (7, 8)),
        ((3, 5), (4, 6)),
        _bird,
        (0.02, 0.05, 0.05, 0.03, 0.05, 0.03, 0.10, 0.06),
        ((1, 0.05), (7, 0.08))),
}


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A colour gradient with noise and a few distractor shapes (uint8 BGR)."""
    import cv2

    c0, c1 = rng.uniform(40, 215, size=3), rng.uniform(40, 215, size=3)
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (c0 * (1 - t) + c1 * t) * np.ones((1, width, 1))
    image += rng.normal(0.0, 6.0, size=image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.circle(image, (x, y), int(rng.integers(4, 18)), colour, -1, cv2.LINE_AA)
        else:
            w, h = int(rng.integers(6, 30)), int(rng.integers(6, 30))
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1, cv2.LINE_AA)
    return image


def draw_figure(figure: Figure, rng: np.random.Generator, width: int, height: int
                ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """One image (uint8 [H, W, 3] BGR), its keypoints [K, 2] (pixels) and a tight box [x, y, w, h]."""
    import cv2

    points = figure.pose(rng)
    if figure.name == "quadruped" and rng.random() < 0.5:
        points = points * [-1.0, 1.0]  # facing left
    angle = math.radians(rng.uniform(-20, 20))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = points @ rot.T
    pad = max(max(figure.widths), max(r for _, r in figure.blobs))
    lo, hi = points.min(axis=0) - pad, points.max(axis=0) + pad
    margin = 0.06 * min(width, height)
    scale = min((width - 2 * margin) / (hi[0] - lo[0]), (height - 2 * margin) / (hi[1] - lo[1]))
    scale *= rng.uniform(0.75, 1.0)
    extent = (hi - lo) * scale
    shift = np.array([rng.uniform(margin, width - margin - extent[0]),
                      rng.uniform(margin, height - margin - extent[1])])
    xy = (points - lo) * scale + shift
    image = _background(rng, width, height)
    base = rng.uniform(0, 255, size=3)
    shade = {0: base, 1: np.clip(base * 0.6 + 100, 0, 255), 2: np.clip(255 - base, 0, 255)}
    left = {i for pair in figure.flip_pairs for i in pair[:1]}
    right = {i for pair in figure.flip_pairs for i in pair[1:]}

    def side(i: int, j: int) -> int:
        return 1 if {i, j} & left and not {i, j} & right else 2 if {i, j} & right and not {i, j} & left else 0

    for (i, j), w in zip(figure.links, figure.widths, strict=True):
        colour = tuple(float(v) for v in shade[side(i, j)])
        cv2.line(image, tuple(int(round(v)) for v in xy[i]), tuple(int(round(v)) for v in xy[j]), colour,
                 max(1, int(round(w * scale))), cv2.LINE_AA)
    for index, radius in figure.blobs:
        cv2.circle(image, tuple(int(round(v)) for v in xy[index]), max(2, int(round(radius * scale))),
                   tuple(float(v) for v in shade[0]), -1, cv2.LINE_AA)
    x0, y0 = np.maximum((points.min(axis=0) - pad - lo) * scale + shift, 0.0)
    x1, y1 = np.minimum((points.max(axis=0) + pad - lo) * scale + shift, [width, height])
    return image, xy, [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def category(figure: Figure) -> dict:
    """The COCO category of a kind: names, 1-based links (COCO) and 0-based flip pairs (posebh)."""
    return {"id": 1, "name": figure.name, "supercategory": "synthetic", "keypoints": list(figure.keypoints),
            "skeleton": [[i + 1, j + 1] for i, j in figure.links],
            "flip_pairs": [list(p) for p in figure.flip_pairs]}


def write_synth(out: str | Path, kinds: Sequence[str] = tuple(KINDS), *, train: int = 48, val: int = 16,
                seed: int = 0, size: tuple[int, int] = (192, 256)) -> dict[str, dict[str, Path]]:
    """Write the corpora of `kinds` under `out` (each into a temporary folder, then renamed).

    Returns {kind: {"train": json path, "val": json path}}. `size` is (width, height) of every image.
    """
    import cv2

    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown synthetic kind(s) {unknown}; choose from {list(KINDS)}")
    if train < 1 or val < 0:
        raise ValueError(f"need train >= 1 and val >= 0 images, got train={train}, val={val}")
    width, height = size
    if width < 32 or height < 32:
        raise ValueError(f"images must be at least 32x32, got {width}x{height}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, Path]] = {}
    for kind in kinds:
        figure, kind_index = KINDS[kind], list(KINDS).index(kind)
        tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=out))
        try:
            (tmp / "images").mkdir()
            image_id = 0
            for split_index, (split, count) in enumerate((("train", train), ("val", val))):
                images, annotations = [], []
                for n in range(count):
                    rng = np.random.default_rng((seed, kind_index, split_index, n))
                    image, xy, box = draw_figure(figure, rng, width, height)
                    image_id += 1
                    name = f"images/{split}_{n:04d}.png"
                    if not cv2.imwrite(str(tmp / name), image):
                        raise OSError(f"could not write {tmp / name}")
                    keypoints = np.concatenate([np.round(xy, 3), np.full((len(xy), 1), 2.0)], axis=1)
                    images.append({"id": image_id, "file_name": name, "width": width, "height": height})
                    annotations.append({"id": image_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                        "keypoints": [float(v) for v in keypoints.ravel()],
                                        "num_keypoints": len(xy), "bbox": [round(v, 3) for v in box],
                                        "area": round(box[2] * box[3], 3)})
                info = {"description": f"posebh synthetic '{kind}' figures ({split})", "version": FORMAT_VERSION,
                        "seed": seed, "generator": "posebh data synth"}
                doc = {"info": info, "images": images, "annotations": annotations,
                       "categories": [category(figure)]}
                (tmp / f"{kind}_{split}.json").write_text(json.dumps(doc))
            final = out / kind
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        written[kind] = {split: out / kind / f"{kind}_{split}.json" for split in SPLITS}
    return written


@dataclass(frozen=True)
class SynthSpec:
    """A parsed `synth:KIND[?train=N&val=N&seed=S&size=WxH]` training source."""

    kind: str
    train: int = 48
    val: int = 16
    seed: int = 0
    size: tuple[int, int] = (192, 256)

    @property
    def folder_name(self) -> str:
        return f"synth-v{FORMAT_VERSION}-{self.kind}-t{self.train}-v{self.val}-s{self.seed}-{self.size[0]}x{self.size[1]}"


def parse_synth_source(source: str) -> SynthSpec:
    """`synth:person?train=48&val=16&seed=0&size=192x256` -> SynthSpec (ValueError naming the problem)."""
    if not source.startswith(SYNTH_SCHEME):
        raise ValueError(f"not a synthetic source: {source!r} (expected 'synth:KIND')")
    kind, _, query = source[len(SYNTH_SCHEME):].partition("?")
    if kind not in KINDS:
        raise ValueError(f"{source!r}: unknown synthetic kind {kind!r}; choose from {list(KINDS)}")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True, strict_parsing=bool(query)).items()}
    unknown = set(params) - {"train", "val", "seed", "size"}
    if unknown:
        raise ValueError(f"{source!r}: unknown option(s) {sorted(unknown)}; allowed: train, val, seed, size")
    try:
        spec = SynthSpec(kind, int(params.get("train", 48)), int(params.get("val", 16)), int(params.get("seed", 0)),
                         tuple(int(v) for v in params.get("size", "192x256").lower().split("x")))  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"{source!r}: train, val and seed must be integers and size WxH") from None
    if len(spec.size) != 2 or spec.train < 1 or spec.val < 0:
        raise ValueError(f"{source!r}: need train >= 1, val >= 0 and size WxH")
    return spec


def ensure_synth_source(source: str, split: str, cache_dir: str | Path, *, build: bool = True) -> Path:
    """The annotation file of `split` ("train" or "val") of a `synth:` source, generated into `cache_dir` once.

    `build=False` only looks it up (other processes wait for the main process to write it).
    """
    spec = parse_synth_source(source)
    if split not in SPLITS:
        raise ValueError(f"synthetic corpora have splits {SPLITS}, not {split!r}")
    folder = Path(cache_dir) / spec.folder_name
    path = folder / spec.kind / f"{spec.kind}_{split}.json"
    if not path.is_file():
        if not build:
            raise FileNotFoundError(f"synthetic corpus {path} is missing (the main process writes it)")
        write_synth(folder, [spec.kind], train=spec.train, val=spec.val, seed=spec.seed, size=spec.size)
    return path
