"""The `Skeleton`: one validated description of a keypoint layout (names, flips, links, OKS sigmas).

A skeleton is data, not code: built-ins live in `skeletons/data/*.json` in the same format users write for their own
skeletons. The JSON format (also what `Skeleton.to_dict` writes):

```json
{"name": "my_animal",
 "keypoints": ["nose", "left_ear", "right_ear", ...],      # names in channel order (required)
 "skeleton": [[1, 2], [1, 3]],                             # links, 1-based as in COCO (optional)
 "flip_pairs": [[1, 2]],                                   # 0-based (optional: inferred from left_/right_ names)
 "flip_test": true,                                        # optional, see below
 "sigmas": [0.026, ...],                                   # OKS sigmas (optional)
 "joint_weights": [1.0, ...], "upper_body_ids": [...], "lower_body_ids": [...],   # optional
 "parts": {"body": [0, 17]}}                               # optional named [start, stop) slices
```

`flip_test` says whether a horizontally mirrored image is a valid view of the same layout, i.e. whether the flip
test (averaging with the flipped-back heatmaps of the mirrored crop) and flip augmentation apply. When the field is
absent it defaults to "the skeleton has flip pairs": a layout with left/right pairs is mirrored with them, and a
layout without pairs is not flipped at all. That default is conservative on purpose: a mirror rig (mirror_mouse: a
top and a bottom view of one animal), a side camera whose images are not left/right symmetric, or a COCO-style file
that lists no `flip_pairs` and has no left_/right_ names must not be flipped. Set `"flip_test": true` for a
skeleton without pairs whose images are symmetric (only mid-line keypoints: nose, spine, tail), and
`"flip_test": false` to forbid flipping a skeleton that has pairs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# OKS sigma used for skeletons that do not define their own (custom corpora): a mid-range body-joint value.
DEFAULT_SIGMA = 0.05

_SIDE_WORDS = (("left", "right"), ("Left", "Right"), ("LEFT", "RIGHT"))
_SIDE_AFFIXES = (("l_", "r_"), ("L_", "R_"), ("_l", "_r"), ("_L", "_R"))
_LEFT_COLOR, _RIGHT_COLOR, _CENTER_COLOR = (0, 200, 80), (255, 128, 0), (51, 153, 255)


class SkeletonError(ValueError):
    """An invalid skeleton definition; the message names the source and the offending field/value."""


def _mirror_name(name: str) -> set[str]:
    """Candidate names for the mirrored keypoint of `name` (left_x <-> right_x, L_x <-> R_x, x_l <-> x_r)."""
    candidates: set[str] = set()
    for left, right in _SIDE_WORDS:
        if left in name:
            candidates.add(name.replace(left, right))
        if right in name:
            candidates.add(name.replace(right, left))
    for left, right in _SIDE_AFFIXES:
        if left.endswith("_") and name.startswith(left):
            candidates.add(right + name[len(left):])
        elif right.endswith("_") and name.startswith(right):
            candidates.add(left + name[len(right):])
        elif left.startswith("_") and name.endswith(left):
            candidates.add(name[: -len(left)] + right)
        elif right.startswith("_") and name.endswith(right):
            candidates.add(name[: -len(right)] + left)
    candidates.discard(name)
    return candidates


def infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Pair keypoints whose names differ only by side (left_/right_, L_/R_, _l/_r). 0-based, sorted."""
    index = {n: i for i, n in enumerate(names)}
    pairs: set[tuple[int, int]] = set()
    for i, name in enumerate(names):
        for other in _mirror_name(name):
            j = index.get(other)
            if j is not None and j != i:
                pairs.add((min(i, j), max(i, j)))
    return tuple(sorted(pairs))


def _is_left(name: str) -> bool:
    low = name.lower()
    return bool(re.search(r"(^|[^a-z])(left|l)([^a-z]|$)", low)) or low.startswith("left")


def _is_right(name: str) -> bool:
    low = name.lower()
    return bool(re.search(r"(^|[^a-z])(right|r)([^a-z]|$)", low)) or low.startswith("right")


@dataclass(frozen=True)
class Skeleton:
    """A keypoint layout. All indices are 0-based; `keypoint_names` order is the heatmap channel order."""

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    edges: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] | None = None
    joint_weights: tuple[float, ...] = ()
    upper_body_ids: tuple[int, ...] = ()
    lower_body_ids: tuple[int, ...] = ()
    parts: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    flip_test: bool | None = None  # None: flip test exactly when the skeleton has flip pairs (`allows_flip`)
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        if not self.joint_weights:
            object.__setattr__(self, "joint_weights", (1.0,) * len(self.keypoint_names))
        self._validate()

    # ----------------------------------------------------------------------------------------------- validation
    def _fail(self, message: str) -> SkeletonError:
        return SkeletonError(f"invalid skeleton {self.name!r} ({self.source}): {message}")

    def _check_index(self, field_name: str, value: Any) -> None:
        k = len(self.keypoint_names)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= int(value) < k:
            raise self._fail(f"{field_name} contains {value!r}, not a keypoint index in [0, {k})")

    def _validate(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", self.name):
            raise self._fail("'name' must be a non-empty identifier of letters, digits, '_', '-', '.'")
        names = self.keypoint_names
        if len(names) == 0:
            raise self._fail("'keypoints' is empty")
        for i, n in enumerate(names):
            if not isinstance(n, str) or not n.strip():
                raise self._fail(f"keypoint {i} has an empty or non-string name {n!r}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise self._fail(f"duplicate keypoint names {duplicates}")
        seen: dict[int, tuple[int, int]] = {}
        for pair in self.flip_pairs:
            if len(pair) != 2:
                raise self._fail(f"flip pair {pair!r} does not have two entries")
            for idx in pair:
                self._check_index("flip_pairs", idx)
            a, b = pair
            if a == b:
                raise self._fail(f"flip pair {pair!r} pairs a keypoint with itself")
            for idx in pair:
                if idx in seen:
                    raise self._fail(f"keypoint {idx} ({names[idx]!r}) appears in flip pairs {seen[idx]} and {pair}")
                seen[idx] = pair
        for edge in self.edges:
            if len(edge) != 2:
                raise self._fail(f"link {edge!r} does not have two entries")
            for idx in edge:
                self._check_index("skeleton links", idx)
            if edge[0] == edge[1]:
                raise self._fail(f"link {edge!r} connects a keypoint to itself")
        if self.sigmas is not None:
            if len(self.sigmas) != len(names):
                raise self._fail(f"'sigmas' has {len(self.sigmas)} values for {len(names)} keypoints")
            bad = [s for s in self.sigmas if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0)]
            if bad:
                raise self._fail(f"'sigmas' must be finite and > 0, got {bad[:3]}")
        if len(self.joint_weights) != len(names):
            raise self._fail(f"'joint_weights' has {len(self.joint_weights)} values for {len(names)} keypoints")
        if any(not math.isfinite(w) or w < 0 for w in self.joint_weights):
            raise self._fail("'joint_weights' must be finite and >= 0")
        for field_name in ("upper_body_ids", "lower_body_ids"):
            for idx in getattr(self, field_name):
                self._check_index(field_name, idx)
        if self.flip_test is not None and not isinstance(self.flip_test, bool):
            raise self._fail(f"'flip_test' must be true or false, got {self.flip_test!r}")
        for part, (start, stop) in self.parts.items():
            if not 0 <= start < stop <= len(names):
                raise self._fail(f"part {part!r} = [{start}, {stop}) is not a slice of [0, {len(names)})")

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_indices(self) -> tuple[int, ...]:
        """Channel permutation for a horizontal flip: keypoint k becomes keypoint `flip_indices[k]` (an involution)."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return tuple(perm)

    @property
    def allows_flip(self) -> bool:
        """Whether the flip test (and flip augmentation) applies: the `flip_test` field, else "has flip pairs"."""
        return bool(self.flip_pairs) if self.flip_test is None else self.flip_test

    def oks_sigmas(self) -> np.ndarray:
        """OKS sigmas [K] (float64): the skeleton's own, or uniform `DEFAULT_SIGMA` for skeletons without them."""
        if self.sigmas is None:
            return np.full(self.num_keypoints, DEFAULT_SIGMA, dtype=np.float64)
        return np.asarray(self.sigmas, dtype=np.float64)

    def index(self, keypoint_name: str) -> int:
        try:
            return self.keypoint_names.index(keypoint_name)
        except ValueError:
            raise KeyError(f"skeleton {self.name!r} has no keypoint {keypoint_name!r}") from None

    def keypoint_side(self, k: int) -> str:
        """'left', 'right' or 'center' from the keypoint's name (used for colours)."""
        name = self.keypoint_names[k]
        if _is_left(name):
            return "left"
        if _is_right(name):
            return "right"
        return "center"

    def colors(self) -> list[tuple[int, int, int]]:
        """One RGB colour per edge: green for left-side links, orange for right-side, blue otherwise."""
        palette = {"left": _LEFT_COLOR, "right": _RIGHT_COLOR, "center": _CENTER_COLOR}
        out = []
        for a, b in self.edges:
            sides = {self.keypoint_side(a), self.keypoint_side(b)} - {"center"}
            out.append(palette[sides.pop()] if len(sides) == 1 else _CENTER_COLOR)
        return out

    def keypoint_colors(self) -> list[tuple[int, int, int]]:
        palette = {"left": _LEFT_COLOR, "right": _RIGHT_COLOR, "center": _CENTER_COLOR}
        return [palette[self.keypoint_side(k)] for k in range(self.num_keypoints)]

    # ----------------------------------------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """The JSON form (links 1-based, flip pairs 0-based); `Skeleton.from_dict(s.to_dict()) == s`."""
        out: dict[str, Any] = {
            "name": self.name,
            "keypoints": list(self.keypoint_names),
            "skeleton": [[a + 1, b + 1] for a, b in self.edges],
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "joint_weights": list(self.joint_weights),
            "upper_body_ids": list(self.upper_body_ids),
            "lower_body_ids": list(self.lower_body_ids),
        }
        if self.sigmas is not None:
            out["sigmas"] = list(self.sigmas)
        if self.parts:
            out["parts"] = {k: list(v) for k, v in self.parts.items()}
        if self.flip_test is not None:  # absent = the default, so existing definitions serialise unchanged
            out["flip_test"] = self.flip_test
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>", name: str | None = None) -> Skeleton:
        """Build from the JSON form. `name` overrides/provides the name (e.g. a COCO category's name)."""
        if not isinstance(data, Mapping):
            raise SkeletonError(f"skeleton definition in {source} must be a JSON object, got {type(data).__name__}")
        skeleton_name = name if name is not None else data.get("name")
        if skeleton_name is None:
            raise SkeletonError(f"skeleton definition in {source} has no 'name'")
        names = data.get("keypoints", data.get("keypoint_names"))
        if not isinstance(names, Sequence) or isinstance(names, str):
            raise SkeletonError(f"skeleton {skeleton_name!r} in {source}: 'keypoints' must be a list of names")
        names = tuple(names)

        def int_pairs(key: str, offset: int) -> tuple[tuple[int, int], ...]:
            raw = data.get(key) or ()
            try:
                pairs = tuple((int(a) - offset, int(b) - offset) for a, b in raw)
            except (TypeError, ValueError):
                raise SkeletonError(f"skeleton {skeleton_name!r} in {source}: '{key}' must be a list of index pairs, "
                                    f"got {raw!r:.80}") from None
            for a, b in raw:
                if isinstance(a, float) and not a.is_integer() or isinstance(b, float) and not b.is_integer():
                    raise SkeletonError(f"skeleton {skeleton_name!r} in {source}: '{key}' has a non-integer index")
            return pairs

        edges = int_pairs("skeleton", 1)
        for a, b in edges:
            if a < 0 or b < 0:
                raise SkeletonError(f"skeleton {skeleton_name!r} in {source}: 'skeleton' links are 1-based, "
                                    f"found index {min(a, b) + 1}")
        flip_pairs = int_pairs("flip_pairs", 0) if "flip_pairs" in data and data["flip_pairs"] is not None \
            else infer_flip_pairs(names)
        sigmas = data.get("sigmas")
        try:
            sigmas_t = tuple(float(s) for s in sigmas) if sigmas is not None else None
            weights = tuple(float(w) for w in data.get("joint_weights") or ())
        except (TypeError, ValueError):
            raise SkeletonError(f"skeleton {skeleton_name!r} in {source}: 'sigmas'/'joint_weights' must be "
                                "lists of numbers") from None
        flip_test = data.get("flip_test")
        if flip_test is not None and not isinstance(flip_test, bool):
            raise SkeletonError(f"skeleton {skeleton_name!r} in {source}: 'flip_test' must be true or false, "
                                f"got {flip_test!r}")
        parts_raw = data.get("parts") or {}
        parts = {str(k): (int(v[0]), int(v[1])) for k, v in parts_raw.items()}
        return cls(
            name=str(skeleton_name),
            keypoint_names=names,
            flip_pairs=flip_pairs,
            edges=edges,
            sigmas=sigmas_t,
            joint_weights=weights,
            upper_body_ids=tuple(int(i) for i in data.get("upper_body_ids") or ()),
            lower_body_ids=tuple(int(i) for i in data.get("lower_body_ids") or ()),
            parts=parts,
            flip_test=flip_test,
            source=source,
        )

    @classmethod
    def from_json(cls, path: str | Path) -> Skeleton:
        """Load a user skeleton from a JSON file (format in the module docstring)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SkeletonError(f"skeleton file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SkeletonError(f"skeleton file {path} is not valid JSON: {err}") from None
        return cls.from_dict(data, source=str(path), name=None if isinstance(data, dict) and "name" in data
                             else path.stem)

    @classmethod
    def from_coco_category(cls, category: Mapping[str, Any], *, name: str | None = None) -> Skeleton:
        """From a COCO `categories` entry (`name`, `keypoints`, 1-based `skeleton`, optional extras)."""
        if not isinstance(category, Mapping) or "keypoints" not in category:
            raise SkeletonError("COCO category has no 'keypoints' list; is this a keypoint annotation file?")
        label = name or str(category.get("name", "custom")).strip().replace(" ", "_") or "custom"
        return cls.from_dict(category, source=f"COCO category {category.get('id', '?')}", name=label)

    def renamed(self, name: str) -> Skeleton:
        """The same skeleton under another name (e.g. apt36k shares ap10k's layout)."""
        return Skeleton.from_dict(self.to_dict(), source=self.source, name=name)
