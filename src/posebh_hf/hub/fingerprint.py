"""Fingerprints of module weights: which embedding space a prototype pack was learned in.

Prototypes are only meaningful next to the embedding head that produced the embeddings they were learned from. A pack
records the fingerprint of that head; attaching it to a model whose head hashes differently is refused (unless the
user explicitly allows it), because its prototype heatmaps would silently be noise.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["FINGERPRINT_PREFIX", "module_fingerprint"]

FINGERPRINT_PREFIX = "sha256:"

# BatchNorm's step counter does not change what the module computes in eval mode; training it one more step
# must not change the fingerprint.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def module_fingerprint(module: nn.Module) -> str:
    """`"sha256:<hex>"` over the names, shapes and float32 values of every parameter and buffer of `module`.

    Values are hashed as little-endian float32 so the fingerprint does not depend on the device, and a model loaded
    in another float dtype matches exactly when its values are unchanged (fp32 -> fp16 -> fp32 round trips do not).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if name.endswith(_IGNORED_SUFFIXES):
            continue
        values = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
        digest.update(f"{name}:{tuple(values.shape)}\n".encode())
        digest.update(values.numpy().astype("<f4", copy=False).tobytes())
    return FINGERPRINT_PREFIX + digest.hexdigest()
