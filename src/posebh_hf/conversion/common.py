"""Shared pieces of the checkpoint converters: errors, reading weights, strict loading, atomic saving."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..configuration_posebh import PoseBHConfig
from ..modeling import PoseBHForPoseEstimation, save_model_folder

__all__ = [
    "ConversionError",
    "ConversionReport",
    "MappedTensor",
    "check_destination",
    "build_converted_model",
    "check_mapped_state_dict",
    "expected_shapes",
    "read_json",
    "read_safetensors_folder",
    "save_model_atomically",
]


class ConversionError(ValueError):
    """A checkpoint that cannot be converted (wrong layout, unknown or mis-shaped key, unreadable file)."""


@dataclass(frozen=True)
class MappedTensor:
    """A converted tensor and the source key(s) it came from (for error messages and reports)."""

    source: str
    tensor: torch.Tensor


@dataclass
class ConversionReport:
    """What a conversion did. `initialised` lists target keys that had no source tensor (fresh init)."""

    destination: Path
    config_summary: str
    mapped: dict[str, str] = field(default_factory=dict)  # target key -> source key
    dropped: dict[str, str] = field(default_factory=dict)  # source key -> reason
    initialised: list[str] = field(default_factory=list)
    parity: dict[int, float] | None = None
    layout: str = ""  # what the source was inferred to be (official checkpoints)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few human-readable lines for the CLI."""
        lines = [f"wrote {self.destination} ({self.config_summary})"]
        if self.layout:
            lines.append(f"  source: {self.layout}")
        lines.extend(f"  {note}" for note in self.notes)
        lines.append(f"  mapped {len(self.mapped)} tensors from {len(set(self.mapped.values()))} source keys")
        if self.dropped:
            counts: dict[str, int] = {}
            for reason in self.dropped.values():
                counts[reason] = counts.get(reason, 0) + 1
            lines.append(f"  dropped {len(self.dropped)} source keys: "
                         + "; ".join(f"{n} x {reason}" for reason, n in sorted(counts.items())))
        if self.initialised:
            prefixes = sorted({_module_prefix(k) for k in self.initialised})
            lines.append(f"  freshly initialised ({len(self.initialised)} tensors): " + ", ".join(prefixes))
        return "\n".join(lines)


def _module_prefix(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "heads" else parts[0]


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or a `ConversionError` naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of `model.safetensors` or of the shards listed in `model.safetensors.index.json`."""
    single = folder / "model.safetensors"
    if single.is_file():
        return load_file(str(single))
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        raise ConversionError(f"{folder} has no model.safetensors (nor model.safetensors.index.json)")
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise ConversionError(f"{index} has no 'weight_map'")
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if not (folder / shard).is_file():
            raise ConversionError(f"{index} lists shard {shard!r}, which is missing from {folder}")
        tensors.update(load_file(str(folder / shard)))
    return tensors


def expected_shapes(config: PoseBHConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of every state-dict entry of a PoseBH model for `config`, built on the meta device (no memory, no
    init), so a wrong checkpoint fails before a large model is allocated."""
    with torch.device("meta"):
        model = PoseBHForPoseEstimation(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def check_mapped_state_dict(expected: Mapping[str, tuple[int, ...]], mapped: Mapping[str, MappedTensor],
                            fresh_prefixes: Iterable[str], *, hint: str = "") -> list[str]:
    """Check converted tensors against the model's keys and shapes; return the keys left to fresh init.

    Raises `ConversionError` for a target key the model does not have, a shape mismatch (naming the source and
    target keys and both shapes), or a model key without a tensor outside `fresh_prefixes`.
    """
    unknown = sorted(k for k in mapped if k not in expected)
    if unknown:
        sources = [mapped[k].source for k in unknown[:5]]
        raise ConversionError(f"{len(unknown)} converted keys do not exist in the PoseBH model, e.g. {unknown[:5]} "
                              f"(from {sources}){hint}")
    for key, item in mapped.items():
        if tuple(item.tensor.shape) != expected[key]:
            raise ConversionError(f"source key {item.source!r} has shape {list(item.tensor.shape)} but the PoseBH key "
                                  f"{key!r} expects {list(expected[key])}{hint}")
    fresh = tuple(fresh_prefixes)
    missing = sorted(k for k in expected if k not in mapped)
    not_allowed = [k for k in missing if not k.startswith(fresh)]
    if not_allowed:
        raise ConversionError(f"the checkpoint lacks {len(not_allowed)} required tensors, e.g. {not_allowed[:5]}{hint}")
    return missing


def build_converted_model(config: PoseBHConfig, mapped: Mapping[str, MappedTensor], fresh_prefixes: Iterable[str],
                          *, seed: int = 0, hint: str = "") -> tuple[PoseBHForPoseEstimation, list[str]]:
    """Validate `mapped` against `config`, then build the model (fresh parts seeded with `seed`, without touching
    the global RNG) and load the tensors. Returns (model in eval mode, freshly initialised keys)."""
    missing = check_mapped_state_dict(expected_shapes(config), mapped, fresh_prefixes, hint=hint)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PoseBHForPoseEstimation(config)
    model.load_state_dict({k: v.tensor for k, v in mapped.items()}, strict=False)
    return model.eval(), missing


def check_destination(dst: Path, overwrite: bool) -> None:
    """Fail early when `dst` exists and is not an empty folder (unless `overwrite`)."""
    if dst.exists() and not dst.is_dir():
        raise ConversionError(f"destination {dst} exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise ConversionError(f"destination {dst} is not empty; pass --overwrite to replace it")


def save_model_atomically(model: PoseBHForPoseEstimation, dst: Path, overwrite: bool = False) -> None:
    """Write the converted model folder whole or not at all (`modeling.save_model_folder`: staged beside `dst`,
    renamed into place, ordinary permissions; a full disk is one `WriteError` line naming `dst`)."""
    save_model_folder(model, Path(dst), overwrite=overwrite)
