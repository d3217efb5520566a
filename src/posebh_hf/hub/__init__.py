"""Hub integration (layer 4): prototype packs, model cards, publishing.

- `PrototypePack`: one skeleton's prototypes [K_s, M, D] + manifest + card; save/load/validate, push/pull.
- `attach_prototype_pack(model, pack)`: add a pack's skeleton to a PoseBH model (checks D, M, similarity,
  embedding-head fingerprint, name, expert); `export_prototype_pack(model, name)` is the inverse.
- `push_model_to_hub`, `publish_official`: model repos with cards (and optional remote code).
"""

from __future__ import annotations

from .attach import (
    PackCompatibilityError,
    attach_prototype_pack,
    check_pack_compatible,
    detach_prototype_pack,
    embedding_fingerprint,
    export_prototype_pack,
    skeleton_dataset_index,
)
from .fingerprint import module_fingerprint
from .pack import CARD_FILE, CONFIG_FILE, PACK_FORMAT_VERSION, PROTOTYPES_FILE, PackError, PrototypePack

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "PACK_FORMAT_VERSION",
    "PROTOTYPES_FILE",
    "PackCompatibilityError",
    "PackError",
    "PrototypePack",
    "attach_prototype_pack",
    "detach_prototype_pack",
    "check_pack_compatible",
    "embedding_fingerprint",
    "export_prototype_pack",
    "module_fingerprint",
    "skeleton_dataset_index",
]
