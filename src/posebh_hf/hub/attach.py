"""Attaching a prototype pack to a PoseBH model, and exporting one skeleton's prototypes as a pack.

Attaching appends the pack's rows [K_s, M, D] to the model's prototype bank and records the skeleton in the config
(`extra_prototype_skeletons`, `skeletons`, and the expert it routes through in `extra_prototype_dataset_index`), so
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
    "embedding_fingerprint",
    "export_prototype_pack",
    "skeleton_dataset_index",
]

# Config attribute: {extra skeleton name: dataset_index (expert) its images are routed through}.
ROUTING_FIELD = "extra_prototype_dataset_index"
# Config attribute: {extra skeleton name: provenance of the attached pack} (informational, saved with the model).
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
    if name in config.prototype_skeleton_names:
        if not replace:
            kind = "a dataset with a heatmap head" if name in config.dataset_names else "an attached skeleton"
            raise PackCompatibilityError(f"skeleton {name!r} already exists in this model ({kind}); pass "
                                         "replace=True (--replace) to overwrite its prototypes")
        if name in config.dataset_names:
            return _replace_dataset_prototypes(model, pack)
        _remove_extra_skeleton(model, name)
    rows = model.add_prototype_skeleton(pack.skeleton, pack.prototypes)
    _store_exact(model, rows, pack.prototypes)
    setattr(config, ROUTING_FIELD, {**(getattr(config, ROUTING_FIELD, None) or {}), name: pack.dataset_index})
    _record_provenance(model, pack)
    return rows


def _replace_dataset_prototypes(model: PoseBHForPoseEstimation, pack: PrototypePack) -> slice:
    """Overwrite a headed dataset's prototype block; its keypoints and expert are fixed by the head."""
    name = pack.name
    own = model.skeleton(name)
    if own.keypoint_names != pack.skeleton.keypoint_names:
        raise PackCompatibilityError(f"cannot replace the prototypes of dataset {name!r}: the pack's skeleton has "
                                     f"keypoints {list(pack.skeleton.keypoint_names)[:4]}... ({pack.num_keypoints}), "
                                     f"the model's head has {list(own.keypoint_names)[:4]}... ({own.num_keypoints})")
    expected = model.config.dataset_index_of(name)
    if pack.dataset_index != expected:
        raise PackCompatibilityError(f"cannot replace the prototypes of dataset {name!r}: the pack routes through "
                                     f"dataset_index={pack.dataset_index}, the dataset's expert is {expected}")
    model.set_skeleton_prototypes(name, pack.prototypes)
    _store_exact(model, model.prototype_rows(name), pack.prototypes)
    _record_provenance(model, pack)
    return model.prototype_rows(name)


@torch.no_grad()
def _store_exact(model: PoseBHForPoseEstimation, rows: slice, prototypes: torch.Tensor) -> None:
    """Keep a unit-norm pack's values bit for bit (re-normalising moves them by an ulp, so a pack exported from
    one model and attached to a copy would give heatmaps that differ in the last bit). Rows that are not unit
    length keep the model's normalised values."""
    values = prototypes.detach().to(torch.float32)
    if torch.allclose(values.norm(dim=-1), torch.ones(values.shape[:-1]), rtol=0.0, atol=1e-6):
        bank = model.keypoint_prototypes.prototypes
        bank[rows] = values.to(device=bank.device, dtype=bank.dtype)


@torch.no_grad()
def _remove_extra_skeleton(model: PoseBHForPoseEstimation, name: str) -> None:
    """Drop an attached (head-less) skeleton's rows and config entries, keeping every other block in order."""
    config = model.config
    rows = model.prototype_rows(name)
    bank = model.keypoint_prototypes.prototypes
    model.keypoint_prototypes.prototypes = torch.cat([bank[: rows.start], bank[rows.stop:]], dim=0)
    config.extra_prototype_skeletons = [n for n in config.extra_prototype_skeletons if n != name]
    config.skeletons = {n: s for n, s in config.skeletons.items() if n != name}
    for field in (ROUTING_FIELD, PROVENANCE_FIELD):
        table = dict(getattr(config, field, None) or {})
        table.pop(name, None)
        setattr(config, field, table)
    getattr(model, "_skeleton_cache", {}).pop(name, None)


def _record_provenance(model: PoseBHForPoseEstimation, pack: PrototypePack) -> None:
    entry = {"source": pack.source, "base_model": pack.base_model, "base_revision": pack.base_revision,
             "embedding_fingerprint": pack.embedding_fingerprint, "learned": dict(pack.learned)}
    table = dict(getattr(model.config, PROVENANCE_FIELD, None) or {})
    table[pack.name] = entry
    setattr(model.config, PROVENANCE_FIELD, table)
    getattr(model, "_skeleton_cache", {}).pop(pack.name, None)


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
    provenance = (getattr(config, PROVENANCE_FIELD, None) or {}).get(name, {})
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
