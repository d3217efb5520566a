"""Attaching a prototype pack to a PoseBH model, and exporting one skeleton's prototypes as a pack.

This module reads and checks packs; the model owns its prototype bank and changes it through its own methods
(`add_prototype_skeleton`, `replace_prototype_skeleton`, `remove_prototype_skeleton`, `list_prototype_skeletons`),
which record the skeleton, the expert it routes through and the pack's provenance in declared config fields, so
prototype heatmaps for it come out of the forward pass and `save_pretrained` keeps it. Every incompatibility is
refused with a `PackCompatibilityError` before the model is touched.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from ..modeling import PoseBHForPoseEstimation
from .fingerprint import module_fingerprint
from .pack import PackError, PrototypePack

__all__ = [
    "ROUTING_FIELD",
    "PackCompatibilityError",
    "attach_prototype_pack",
    "check_pack_compatible",
    "detach_prototype_pack",
    "embedding_fingerprint",
    "export_prototype_pack",
    "skeleton_dataset_index",
]

# Declared PoseBHConfig fields the model's prototype-bank methods keep: {extra skeleton: dataset_index (expert)
# its images are routed through} and {skeleton: provenance of its attached pack}.
ROUTING_FIELD = "extra_prototype_dataset_index"
PROVENANCE_FIELD = "prototype_pack_provenance"


class PackCompatibilityError(PackError):
    """A valid pack that does not fit this model (D, M, similarity, embedding head, name, expert)."""


def embedding_fingerprint(model: PoseBHForPoseEstimation) -> str:
    """The fingerprint of the model's embedding head (what a pack's prototypes are tied to)."""
    return module_fingerprint(model.embedding_head)


def skeleton_dataset_index(model: PoseBHForPoseEstimation, name: str) -> int:
    """The expert (`dataset_index`) skeleton `name` routes through: its own for datasets, the recorded one for
    attached skeletons."""
    config = model.config
    if name in config.dataset_names:
        return config.dataset_index_of(name)
    routing = getattr(config, ROUTING_FIELD, None) or {}
    if name in routing:
        return int(routing[name])
    raise ValueError(f"skeleton {name!r} has no dataset_index in this model (datasets {config.dataset_names}, "
                     f"attached {list(routing)})")


def check_pack_compatible(model: PoseBHForPoseEstimation, pack: PrototypePack, *,
                          allow_fingerprint_mismatch: bool = False) -> None:
    """Raise `PackCompatibilityError` when `pack` cannot be used with `model` (the model is not modified)."""
    pack.validate()
    config = model.config
    where = f"prototype pack {pack.name!r} ({pack.source})"
    if pack.embed_dim != config.embed_dim:
        raise PackCompatibilityError(f"{where} has embedding dim D={pack.embed_dim}, the model has "
                                     f"D={config.embed_dim}")
    if pack.num_prototypes != config.num_prototypes:
        raise PackCompatibilityError(f"{where} has M={pack.num_prototypes} prototypes per keypoint, the model has "
                                     f"M={config.num_prototypes}")
    if pack.similarity != config.similarity:
        raise PackCompatibilityError(f"{where} was learned with similarity {pack.similarity!r}, the model uses "
                                     f"{config.similarity!r}")
    if not 0 <= pack.dataset_index < config.num_datasets:
        raise PackCompatibilityError(f"{where} routes through expert dataset_index={pack.dataset_index}, the model "
                                     f"has {config.num_datasets} experts {config.dataset_names}")
    own = embedding_fingerprint(model)
    if pack.embedding_fingerprint != own:
        message = (f"{where} was learned against another embedding head (pack fingerprint "
                   f"{pack.embedding_fingerprint[:19]}..., model {own[:19]}...; base model {pack.base_model!r} "
                   f"revision {pack.base_revision!r}); its prototype heatmaps would be meaningless here")
        if not allow_fingerprint_mismatch:
            raise PackCompatibilityError(message + ". Pass allow_fingerprint_mismatch=True "
                                         "(--allow-fingerprint-mismatch) only if you know the embedding spaces agree")
        warnings.warn(message + "; attaching anyway because allow_fingerprint_mismatch=True", UserWarning,
                      stacklevel=3)


def _resolve_pack(pack: PrototypePack | str | os.PathLike[str], hub_kwargs: Mapping[str, Any]) -> PrototypePack:
    if isinstance(pack, PrototypePack):
        return pack
    if isinstance(pack, (str, os.PathLike)):
        return PrototypePack.from_pretrained(pack, **hub_kwargs)
    raise TypeError(f"expected a PrototypePack, a pack folder or a Hub repo id, got {type(pack).__name__}")


def attach_prototype_pack(model: PoseBHForPoseEstimation, pack: PrototypePack | str | os.PathLike[str],
                          replace: bool = False, allow_fingerprint_mismatch: bool = False,
                          **hub_kwargs: Any) -> slice:
    """Add (or with `replace=True` overwrite) the skeleton of `pack` in `model`. Returns its prototype rows.

    Args:
        model: a `PoseBHForPoseEstimation` (mutated in place: prototype buffer and config).
        pack: a `PrototypePack`, a pack folder, or a Hub repo id `org/name`.
        replace: overwrite the prototypes of a skeleton the model already has. For a dataset with a heatmap head the
            pack must have the same keypoints and expert; an attached skeleton is replaced entirely.
        allow_fingerprint_mismatch: attach (with a warning) although the pack was learned against another
            embedding head.
        **hub_kwargs: `revision`, `subfolder`, `cache_dir`, `token`, `endpoint`, `local_files_only` when `pack` is a
            repo id.

    Raises:
        PackError / PackCompatibilityError with a message naming the pack and the mismatch.
    """
    pack = _resolve_pack(pack, hub_kwargs)
    check_pack_compatible(model, pack, allow_fingerprint_mismatch=allow_fingerprint_mismatch)
    config, name = model.config, pack.name
    provenance = {"source": pack.source, "base_model": pack.base_model, "base_revision": pack.base_revision,
                  "embedding_fingerprint": pack.embedding_fingerprint, "learned": dict(pack.learned)}
    if name in config.prototype_skeleton_names:
        if not replace:
            kind = "a dataset with a heatmap head" if name in config.dataset_names else "an attached skeleton"
            raise PackCompatibilityError(f"skeleton {name!r} already exists in this model ({kind}); pass "
                                         "replace=True (--replace) to overwrite its prototypes")
        try:
            return model.replace_prototype_skeleton(name, pack.prototypes, skeleton=pack.skeleton,
                                                    dataset_index=pack.dataset_index, provenance=provenance)
        except ValueError as err:  # a headed dataset's keypoints or expert differ from the pack's
            raise PackCompatibilityError(str(err)) from None
    return model.add_prototype_skeleton(pack.skeleton, pack.prototypes, dataset_index=pack.dataset_index,
                                        provenance=provenance)


def detach_prototype_pack(model: PoseBHForPoseEstimation, name: str) -> None:
    """Remove an attached skeleton (`PoseBHForPoseEstimation.remove_prototype_skeleton`)."""
    model.remove_prototype_skeleton(name)


def export_prototype_pack(model: PoseBHForPoseEstimation, name: str, *, base_model: str | None = None,
                          base_revision: str | None = None, learned: Mapping[str, Any] | None = None
                          ) -> PrototypePack:
    """One skeleton's prototype block of `model` as a `PrototypePack` (float32 on CPU, values as stored: the model
    keeps its prototypes L2-normalised).

    `base_model` defaults to the model's `name_or_path`, `base_revision` to the commit it was loaded from (when it
    came from the Hub). `learned` defaults to the provenance recorded when the skeleton was attached, or to a
    description of PoseBH multi-dataset training.
    """
    config = model.config
    rows = model.prototype_rows(name)
    prototypes = model.keypoint_prototypes.prototypes[rows].detach().to("cpu", torch.float32).clone()
    provenance = (config.prototype_pack_provenance or {}).get(name) or {}
    if learned is None:
        learned = provenance.get("learned") or {
            "method": "posebh-mdt",
            "description": "prototype bank of a PoseBH model: momentum updates from Sinkhorn-assigned foreground "
                           "embeddings during multi-dataset training (paper Sec. 3.1)",
        }
    pack = PrototypePack(
        prototypes=prototypes.contiguous(),
        skeleton=model.skeleton(name),
        similarity=config.similarity,
        dataset_index=skeleton_dataset_index(model, name),
        embedding_fingerprint=embedding_fingerprint(model),
        base_model=base_model or provenance.get("base_model") or (config.name_or_path or None),
        base_revision=base_revision or getattr(config, "_commit_hash", None),
        learned=dict(learned),
        source=f"exported from {config.name_or_path or 'a model in memory'}",
    )
    return pack.validate()
