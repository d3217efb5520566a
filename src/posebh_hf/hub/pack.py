"""Prototype packs: one skeleton's keypoint prototypes [K_s, M, D] as a small, self-describing Hub repo.

A pack folder (or Hub repo) holds exactly:
  prototypes.safetensors   one float32 tensor "prototypes" [K_s, M, D] (+ string metadata repeating K/M/D)
  prototype_config.json    format version, the full skeleton definition, K, M, D, similarity mode, the base model
                           (repo id + revision), the fingerprint of the embedding head the prototypes live in,
                           how they were learned, and the `dataset_index` (expert) the skeleton routes through
  README.md                a model card rendered from src/posebh_hf/hub_cards/pack_card.md

Only safetensors payloads are read (never pickles). Every problem is a `PackError` naming the file and the field.
Attaching a pack to a model is `posebh_hf.hub.attach`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic_files import write_atomically, write_folder_atomically, write_text_atomically
from ..ops.similarity import SIMILARITY_MODES
from ..skeletons import Skeleton, SkeletonError

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "PACK_FORMAT",
    "PACK_FORMAT_VERSION",
    "PROTOTYPES_FILE",
    "PackError",
    "PrototypePack",
]

PACK_FORMAT = "posebh-prototype-pack"
PACK_FORMAT_VERSION = 1
PROTOTYPES_FILE = "prototypes.safetensors"
CONFIG_FILE = "prototype_config.json"
CARD_FILE = "README.md"
TENSOR_NAME = "prototypes"
SIMILARITIES = SIMILARITY_MODES  # the one list (ops.similarity)
# Weight files we refuse by name, to give a precise message instead of "file not found".
_UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz")
# A row whose norm is below this cannot be normalised into a direction: its heatmap would be meaningless.
_MIN_ROW_NORM = 1e-6


class PackError(ValueError):
    """An invalid or incompatible prototype pack; the message names the pack, the file or field, and the value."""


@dataclass(frozen=True)
class PrototypePack:
    """One skeleton's prototypes plus everything needed to check where they can be used.

    Attributes:
        prototypes: [K_s, M, D] float32 (rows are directions; they are L2-normalised when attached).
        skeleton: the full skeleton definition (names, flip pairs, links, sigmas).
        similarity: "abs_cosine" or "cosine", the similarity the prototypes were learned with.
        dataset_index: the expert of the base model's MoE backbone the skeleton's images are routed through.
        embedding_fingerprint: `module_fingerprint` of the embedding head the prototypes were learned against.
        base_model: repo id (or a local label) of the model the prototypes come from; None when unknown.
        base_revision: commit/revision of `base_model`; None when unknown.
        learned: free-form provenance, e.g. {"method": "posebh-mdt", "description": "..."}.
        source: where the pack was loaded from (not saved).
    """

    prototypes: torch.Tensor
    skeleton: Skeleton
    similarity: str
    dataset_index: int
    embedding_fingerprint: str
    base_model: str | None = None
    base_revision: str | None = None
    learned: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = PACK_FORMAT_VERSION
    source: str = field(default="<memory>", compare=False)

    # ------------------------------------------------------------------------------------------ shape facts
    @property
    def name(self) -> str:
        return self.skeleton.name

    @property
    def num_keypoints(self) -> int:
        """K_s, rows of the pack (one per keypoint of the skeleton)."""
        return int(self.prototypes.shape[0])

    @property
    def num_prototypes(self) -> int:
        """M, prototypes per keypoint."""
        return int(self.prototypes.shape[1])

    @property
    def embed_dim(self) -> int:
        """D, the embedding dimension."""
        return int(self.prototypes.shape[2])

    # ------------------------------------------------------------------------------------------ validation
    def _fail(self, message: str) -> PackError:
        return PackError(f"prototype pack {self.skeleton.name!r} ({self.source}): {message}")

    def validate(self) -> PrototypePack:
        """Check the pack is internally consistent; returns self. Raises `PackError` otherwise."""
        protos = self.prototypes
        if not isinstance(protos, torch.Tensor) or protos.ndim != 3:
            shape = tuple(protos.shape) if isinstance(protos, torch.Tensor) else type(protos).__name__
            raise self._fail(f"'{TENSOR_NAME}' must be a tensor [K, M, D], got {shape}")
        if protos.dtype != torch.float32:
            raise self._fail(f"'{TENSOR_NAME}' must be float32, got {protos.dtype}")
        if min(protos.shape) < 1:
            raise self._fail(f"'{TENSOR_NAME}' has an empty dimension: shape {tuple(protos.shape)}")
        if protos.shape[0] != self.skeleton.num_keypoints:
            raise self._fail(f"'{TENSOR_NAME}' has K={protos.shape[0]} rows but skeleton {self.skeleton.name!r} has "
                             f"{self.skeleton.num_keypoints} keypoints")
        bad = ~torch.isfinite(protos).all(dim=-1)  # [K, M]
        if bad.any():
            k, m = (int(i) for i in bad.nonzero()[0])
            raise self._fail(f"'{TENSOR_NAME}' has NaN/inf values ({int(bad.sum())} rows), first at keypoint {k} "
                             f"({self.skeleton.keypoint_names[k]!r}) prototype {m}")
        tiny = protos.norm(dim=-1) < _MIN_ROW_NORM  # [K, M]
        if tiny.any():
            k, m = (int(i) for i in tiny.nonzero()[0])
            raise self._fail(f"'{TENSOR_NAME}' has {int(tiny.sum())} zero-norm rows, first at keypoint {k} "
                             f"({self.skeleton.keypoint_names[k]!r}) prototype {m}; a prototype must be a direction")
        if self.similarity not in SIMILARITIES:
            raise self._fail(f"similarity {self.similarity!r} is unknown; expected one of {SIMILARITIES}")
        if not isinstance(self.dataset_index, int) or isinstance(self.dataset_index, bool) or self.dataset_index < 0:
            raise self._fail(f"dataset_index must be an integer >= 0, got {self.dataset_index!r}")
        if not isinstance(self.embedding_fingerprint, str) or not self.embedding_fingerprint:
            raise self._fail("embedding_fingerprint is missing")
        return self

    # ------------------------------------------------------------------------------------------ (de)serialisation
    def to_config(self) -> dict[str, Any]:
        """The `prototype_config.json` content."""
        from ..version import __version__

        return {
            "format": PACK_FORMAT,
            "format_version": self.format_version,
            "skeleton": self.skeleton.to_dict(),
            "num_keypoints": self.num_keypoints,
            "num_prototypes": self.num_prototypes,
            "embed_dim": self.embed_dim,
            "similarity": self.similarity,
            "dataset_index": self.dataset_index,
            "base_model": {"repo_id": self.base_model, "revision": self.base_revision},
            "embedding_fingerprint": self.embedding_fingerprint,
            "learned": dict(self.learned),
            "weights_file": PROTOTYPES_FILE,
            "posebh_hf_version": __version__,
        }

    def save(self, folder: str | os.PathLike[str], *, card: bool = True, repo_id: str | None = None,
             overwrite: bool | None = None) -> Path:
        """Write the pack files into `folder`. Returns the folder.

        A new (or empty) folder is written in a staging folder beside it and renamed into place, so a failure (a full
        disk) leaves no half-written pack. An existing non-empty folder: with `overwrite=None` (the default) each
        pack file in it is replaced atomically and other files are kept; `overwrite=False` refuses it
        (`FileExistsError`); `overwrite=True` replaces the whole folder once the new pack is complete.
        `repo_id` (the pack's future Hub id) is only used in the card's usage snippet.
        """
        self.validate()
        folder = Path(folder)
        if overwrite is None and folder.is_dir() and any(folder.iterdir()):
            self._write_files(folder, card=card, repo_id=repo_id)
            return folder
        return write_folder_atomically(folder, lambda tmp: self._write_files(tmp, card=card, repo_id=repo_id),
                                       overwrite=bool(overwrite))

    def _write_files(self, folder: Path, *, card: bool, repo_id: str | None) -> None:
        metadata = {"format": "pt", "posebh_pack_format": str(self.format_version), "skeleton": self.name,
                    "num_keypoints": str(self.num_keypoints), "num_prototypes": str(self.num_prototypes),
                    "embed_dim": str(self.embed_dim), "embedding_fingerprint": self.embedding_fingerprint}
        tensors = {TENSOR_NAME: self.prototypes.detach().to("cpu", torch.float32).contiguous()}
        write_atomically(folder / PROTOTYPES_FILE, lambda path: save_file(tensors, str(path), metadata=metadata))
        text = json.dumps(self.to_config(), indent=2) + "\n"
        write_text_atomically(folder / CONFIG_FILE, text)
        if card:
            from .cards import render_pack_card

            card_text = render_pack_card(self, repo_id=repo_id)
            write_text_atomically(folder / CARD_FILE, card_text)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> PrototypePack:
        """Read and validate a pack folder. Raises `PackError` for anything missing, unsafe or inconsistent."""
        folder = Path(folder)
        if not folder.is_dir():
            raise PackError(f"prototype pack folder {folder} does not exist")
        config_path, weights_path = folder / CONFIG_FILE, folder / PROTOTYPES_FILE
        if not config_path.is_file():
            raise PackError(f"{folder} is not a prototype pack: {CONFIG_FILE} is missing")
        config = _read_config(config_path)
        _refuse_unsafe_payload(folder, config, str(config_path))
        if not weights_path.is_file():
            raise PackError(f"prototype pack {folder}: {PROTOTYPES_FILE} is missing")
        prototypes, metadata = _read_safetensors(weights_path)
        return cls.from_parts(prototypes, config, metadata=metadata, source=str(folder))

    @classmethod
    def from_parts(cls, prototypes: torch.Tensor, config: Mapping[str, Any], *,
                   metadata: Mapping[str, str] | None = None, source: str = "<memory>") -> PrototypePack:
        """Build from a loaded tensor and a parsed `prototype_config.json`, checking they agree."""
        where = f"{source}/{CONFIG_FILE}"
        if config.get("format") != PACK_FORMAT:
            raise PackError(f"{where}: 'format' is {config.get('format')!r}, expected {PACK_FORMAT!r}")
        version = config.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise PackError(f"{where}: 'format_version' must be an integer >= 1, got {version!r}")
        if version > PACK_FORMAT_VERSION:
            raise PackError(f"{where}: pack format version {version} is newer than this posebh_hf supports "
                            f"({PACK_FORMAT_VERSION}); upgrade posebh_hf")
        try:
            skeleton = Skeleton.from_dict(_field(config, "skeleton", dict, where), source=where)
        except SkeletonError as err:
            raise PackError(f"{where}: 'skeleton' is invalid: {err}") from None
        base = config.get("base_model") or {}
        if not isinstance(base, Mapping):
            raise PackError(f"{where}: 'base_model' must be an object {{repo_id, revision}}, got {base!r}")
        pack = cls(
            prototypes=prototypes,
            skeleton=skeleton,
            similarity=_field(config, "similarity", str, where),
            dataset_index=_field(config, "dataset_index", int, where),
            embedding_fingerprint=_field(config, "embedding_fingerprint", str, where),
            base_model=base.get("repo_id"),
            base_revision=base.get("revision"),
            learned=dict(config.get("learned") or {}),
            format_version=version,
            source=source,
        )
        pack.validate()
        declared = {"num_keypoints": pack.num_keypoints, "num_prototypes": pack.num_prototypes,
                    "embed_dim": pack.embed_dim}
        for key, actual in declared.items():
            if _field(config, key, int, where) != actual:
                raise PackError(f"{where}: '{key}' is {config[key]} but {PROTOTYPES_FILE} has {actual} "
                                f"(shape {tuple(prototypes.shape)})")
            if metadata and key in metadata and metadata[key] != str(actual):
                raise PackError(f"{source}/{PROTOTYPES_FILE}: metadata '{key}'={metadata[key]} disagrees with the "
                                f"tensor shape {tuple(prototypes.shape)}")
        if metadata and metadata.get("embedding_fingerprint", pack.embedding_fingerprint) != pack.embedding_fingerprint:
            raise PackError(f"{source}: the fingerprint in {PROTOTYPES_FILE} metadata differs from {CONFIG_FILE}")
        return pack

    # ------------------------------------------------------------------------------------------ Hub
    @classmethod
    def from_pretrained(cls, repo_or_folder: str | os.PathLike[str], *, revision: str | None = None,
                        subfolder: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                        token: str | bool | None = None, endpoint: str | None = None,
                        local_files_only: bool = False) -> PrototypePack:
        """Load a pack from a local folder or a Hub repo id (`org/name`, optionally at `revision`).

        Only `prototype_config.json` and `prototypes.safetensors` are downloaded.
        """
        from .download import fetch_pack_folder

        folder = fetch_pack_folder(repo_or_folder, revision=revision, subfolder=subfolder, cache_dir=cache_dir,
                                   token=token, endpoint=endpoint, local_files_only=local_files_only)
        pack = cls.load(folder)
        label = str(repo_or_folder) if revision is None else f"{repo_or_folder}@{revision}"
        return replace(pack, source=label)

    def push_to_hub(self, repo_id: str, *, revision: str | None = None, private: bool | None = None,
                    token: str | bool | None = None, endpoint: str | None = None,
                    commit_message: str | None = None) -> str:
        """Create `repo_id` if needed and upload the pack files. Returns the commit id."""
        from .download import push_folder

        with tempfile.TemporaryDirectory(prefix="posebh-pack-") as tmp:
            self.save(tmp, repo_id=repo_id)
            return push_folder(tmp, repo_id, revision=revision, private=private, token=token, endpoint=endpoint,
                               commit_message=commit_message or f"Upload prototype pack {self.name}")

    def with_source(self, source: str) -> PrototypePack:
        return replace(self, source=source)


# ---------------------------------------------------------------------------------------------- file helpers


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PackError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise PackError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def _refuse_unsafe_payload(folder: Path, config: Mapping[str, Any], where: str) -> None:
    """Refuse packs whose weights are not (only) the safetensors file: pickles can run code when loaded."""
    declared = config.get("weights_file", PROTOTYPES_FILE)
    if declared != PROTOTYPES_FILE:
        raise PackError(f"{where}: 'weights_file' is {declared!r}; only {PROTOTYPES_FILE!r} (safetensors) is "
                        "accepted, pickled or other payloads are never loaded")
    unsafe = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in _UNSAFE_SUFFIXES)
    if unsafe and not (folder / PROTOTYPES_FILE).is_file():
        raise PackError(f"prototype pack {folder}: found {unsafe} but no {PROTOTYPES_FILE}; only safetensors "
                        "payloads are loaded (convert the tensor with safetensors.torch.save_file)")


def _read_safetensors(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise PackError(f"{path} is not a valid safetensors file ({err}); only safetensors payloads are loaded") \
            from None
    if set(tensors) != {TENSOR_NAME}:
        raise PackError(f"{path} must hold exactly one tensor {TENSOR_NAME!r}, found {sorted(tensors)}")
    return tensors[TENSOR_NAME], metadata


def _field(config: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in config:
        raise PackError(f"{where}: required field {key!r} is missing")
    value = config[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise PackError(f"{where}: {key!r} must be an integer, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise PackError(f"{where}: {key!r} must be a {kind.__name__}, got {value!r:.80}")
    return value
