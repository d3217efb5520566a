"""Selected-expert MoE dispatch for transformers' `VitPoseBackbone` (issue 8), and small inference switches.

transformers' `VitPoseBackboneMoeMLP` runs every expert on every token and masks the results: with the six
ViTPose++ experts, the expert slice costs 6x what one sample needs (ViT-B: 47 instead of 33.6 GFLOPs/img).
`GroupedExpertMLP` computes the same function while running, per sample, only its dataset's expert:

    fc2_e(x) = x @ [W_fc2; W_e]^T + [b_fc2; b_e]        (spec §2.2: shared slice, then the expert slice)

Samples are grouped by `dataset_index`; each group costs ONE matmul with the merged weight [C, 4C] (so a batch
of a single dataset is exactly one plain ViT MLP). The module holds the SAME parameter tensors as the masked
module it replaces (same attribute names `fc1`, `fc2`, `experts.{e}`), so state-dict keys, checkpoints and
optimisers are unaffected, and gradients are the exact gradients of the same function (the weight
concatenation is differentiable; only fp32 summation order differs).

Symbols: B batch, N tokens, C hidden width, 4C MLP width, P `part_features` (expert slice width), E experts.

Usage:
    >>> enable_grouped_experts(model)      # model: PoseBH / transformers ViTPose(++) model or backbone
    >>> disable_grouped_experts(model)     # back to transformers' masked modules
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.vitpose_backbone.modeling_vitpose_backbone import (
    VitPoseBackboneLayer,
    VitPoseBackboneMoeMLP,
)

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "EXPERT_DISPATCH_MODES",
    "GroupedExpertMLP",
    "attention_implementation",
    "clear_merged_weight_cache",
    "disable_grouped_experts",
    "enable_grouped_experts",
    "expert_dispatch",
    "expert_groups",
    "heads_to_channels_last",
    "merged_expert_linear",
    "set_attention_implementation",
    "set_expert_dispatch",
]

EXPERT_DISPATCH_MODES: tuple[str, ...] = ("masked", "grouped")
ATTENTION_IMPLEMENTATIONS: tuple[str, ...] = ("sdpa", "eager")


def merged_expert_linear(mlp: VitPoseBackboneMoeMLP | GroupedExpertMLP, expert: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain `fc2` of dataset `expert`: weight [C, 4C] = [W_fc2; W_e], bias [C] = [b_fc2; b_e].

    Built with `torch.cat`, so it stays attached to the autograd graph (gradients flow back to both sources).
    """
    if not 0 <= expert < mlp.num_experts:
        raise ValueError(f"expert index {expert} is out of range for {mlp.num_experts} experts")
    head = mlp.experts[expert]
    weight = torch.cat([mlp.fc2.weight, head.weight], dim=0)
    bias = torch.cat([mlp.fc2.bias, head.bias], dim=0)
    return weight, bias


def expert_groups(indices: torch.Tensor, num_experts: int) -> tuple[torch.Tensor | None, list[tuple[int, int, int]]]:
    """Group a batch by expert: (permutation or None, [(expert, start, stop), ...]).

    `indices` [B] (long). When equal indices already sit in consecutive runs (a single dataset, or a batch sorted
    by dataset), the permutation is None and each group is a slice of the batch (no copy). Otherwise the
    permutation [B] sorts the batch by expert (stable) and the slices refer to the permuted batch.
    Raises ValueError for indices outside [0, num_experts).
    """
    if indices.numel() == 0:
        return None, []
    values, counts = torch.unique_consecutive(indices, return_counts=True)
    values_list, counts_list = values.tolist(), counts.tolist()  # one host sync per call
    permutation = None
    if len(set(values_list)) != len(values_list):  # an expert appears in several runs: sort the batch
        permutation = torch.argsort(indices, stable=True)
        values, counts = torch.unique_consecutive(indices[permutation], return_counts=True)
        values_list, counts_list = values.tolist(), counts.tolist()
    bad = [v for v in values_list if not 0 <= v < num_experts]
    if bad:
        raise ValueError(f"dataset_index values {sorted(set(bad))} are out of range for {num_experts} experts")
    groups, start = [], 0
    for value, count in zip(values_list, counts_list, strict=True):
        groups.append((int(value), start, start + int(count)))
        start += int(count)
    return permutation, groups


class GroupedExpertMLP(nn.Module):
    """Drop-in replacement of `VitPoseBackboneMoeMLP` that runs only each sample's expert.

    Shares `fc1`, `act`, `fc2` and `experts` (the same module objects) with the masked module it is built from;
    `forward(hidden_state [B, N, C], indices [B] or [B, 1, 1]) -> [B, N, C]` has the masked module's signature,
    so `VitPoseBackboneLayer` calls it unchanged.

    With `cache_merged_weights`, inference (eval mode, autograd off) keeps the merged [C, 4C] weight of each expert
    it has used instead of concatenating it on every call (that copy is ~3-5 % of a ViT-B forward on CPU). The
    cache costs one fc2-sized tensor per used expert and layer (9.4 MB per layer for ViT-B), is keyed on the
    storage and version counter of the four source tensors (so optimiser steps, `load_state_dict` and `.to()` are
    seen), and is dropped by `train()` and `clear_merged_weight_cache`. Writes through `param.data` bypass the
    version counter: call `clear_merged_weight_cache(model)` after such surgery.
    """

    def __init__(self, masked: VitPoseBackboneMoeMLP, cache_merged_weights: bool = True) -> None:
        super().__init__()
        self.fc1 = masked.fc1
        self.act = masked.act
        self.fc2 = masked.fc2
        self.experts = masked.experts
        self.part_features = masked.part_features
        self.num_experts = masked.num_experts
        # A tuple is not registered as a submodule: no duplicate state-dict keys, and `disable_grouped_experts`
        # can put the very same masked module back.
        self._masked = (masked,)
        self.cache_merged_weights = cache_merged_weights
        self._cache: dict[int, tuple[tuple, torch.Tensor, torch.Tensor]] = {}

    @property
    def masked(self) -> VitPoseBackboneMoeMLP:
        """The transformers module this one replaced (sharing its parameters)."""
        return self._masked[0]

    def forward(self, hidden_state: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        """hidden_state [B, N, C], indices [B] (any shape with B elements) -> [B, N, C]."""
        if indices is None:
            raise ValueError(f"dataset_index is required with {self.num_experts} experts")
        hidden = self.act(self.fc1(hidden_state))  # [B, N, 4C]
        indices = indices.reshape(-1).to(device=hidden.device, dtype=torch.long)
        if indices.numel() != hidden.shape[0]:
            raise ValueError(f"dataset_index has {indices.numel()} entries for a batch of {hidden.shape[0]}")
        permutation, groups = expert_groups(indices, self.num_experts)
        if not groups:  # empty batch
            return hidden.new_zeros(*hidden.shape[:-1], self.fc2.out_features + self.part_features)
        weights = [self._merged(expert) for expert, _, _ in groups]
        zero = self._unused_experts_zero({expert for expert, _, _ in groups})
        if zero is not None:  # attach the unused experts with an exact 0 (see `_unused_experts_zero`)
            weights[0] = (weights[0][0], weights[0][1] + zero)
        if len(groups) == 1:  # one dataset: a single plain-ViT matmul
            return F.linear(hidden, *weights[0])
        if permutation is not None:
            hidden = hidden.index_select(0, permutation)
        parts = [F.linear(hidden[start:stop], *w) for (_, start, stop), w in zip(groups, weights, strict=True)]
        out = torch.cat(parts, dim=0)
        if permutation is not None:
            out = out.index_select(0, torch.argsort(permutation))  # back to the caller's sample order
        return out

    def _merged(self, expert: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`merged_expert_linear`, served from the cache in eval-mode inference (see the class docstring)."""
        if not self.cache_merged_weights or self.training or torch.is_grad_enabled():
            return merged_expert_linear(self, expert)
        if not 0 <= expert < self.num_experts:
            raise ValueError(f"expert index {expert} is out of range for {self.num_experts} experts")
        sources = (self.fc2.weight, self.fc2.bias, self.experts[expert].weight, self.experts[expert].bias)
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in sources)
        cached = self._cache.get(expert)
        if cached is None or cached[0] != key:
            cached = (key, *merged_expert_linear(self, expert))
            self._cache[expert] = cached
        return cached[1], cached[2]

    def clear_cache(self) -> None:
        """Drop the merged weights kept for inference."""
        self._cache.clear()

    def train(self, mode: bool = True) -> GroupedExpertMLP:
        self.clear_cache()  # training changes weights; never serve a merged copy across train()/eval()
        return super().train(mode)

    def _unused_experts_zero(self, used: set[int]) -> torch.Tensor | None:
        """0 * (sum of the unused experts' parameters) when autograd is recording, else None.

        The masked path multiplies every expert's output by a 0/1 mask, so experts absent from the batch still get
        a gradient: exactly zero. Keeping them in the graph the same way (through one scalar added to a bias) gives
        identical `.grad` tensors (zeros, not None), so optimisers (weight decay, momentum) and DDP (which expects
        a gradient for every parameter) behave exactly as with the masked path, at the cost of one sum per unused
        expert.
        """
        if not torch.is_grad_enabled():
            return None
        params = [p for e in range(self.num_experts) if e not in used for p in self.experts[e].parameters()
                  if p.requires_grad]
        if not params:
            return None
        return torch.stack([p.sum() for p in params]).sum() * 0.0

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, part_features={self.part_features}, dispatch=grouped"


def _moe_layers(model: nn.Module) -> list[VitPoseBackboneLayer]:
    return [m for m in model.modules() if isinstance(m, VitPoseBackboneLayer)
            and isinstance(m.mlp, (VitPoseBackboneMoeMLP, GroupedExpertMLP))]


def enable_grouped_experts(model: nn.Module, cache_merged_weights: bool = True) -> int:
    """Swap every MoE MLP inside `model` (any module containing ViTPose backbone layers) for a `GroupedExpertMLP`
    sharing its parameters. Idempotent; returns the number of layers now using grouped dispatch (0 for a plain,
    1-expert ViTPose). `cache_merged_weights`: see `GroupedExpertMLP`."""
    layers = _moe_layers(model)
    for layer in layers:
        if isinstance(layer.mlp, VitPoseBackboneMoeMLP):
            layer.mlp = GroupedExpertMLP(layer.mlp, cache_merged_weights)
            layer.mlp.train(layer.mlp.masked.training)
        elif layer.mlp.cache_merged_weights != cache_merged_weights:
            layer.mlp.cache_merged_weights = cache_merged_weights
            layer.mlp.clear_cache()
    return len(layers)


def clear_merged_weight_cache(model: nn.Module) -> None:
    """Drop the merged expert weights that grouped layers keep for inference (e.g. after `param.data` edits)."""
    for module in model.modules():
        if isinstance(module, GroupedExpertMLP):
            module.clear_cache()


def disable_grouped_experts(model: nn.Module) -> int:
    """Put transformers' masked MoE modules back (the originals, same parameters). Returns the layer count."""
    layers = _moe_layers(model)
    for layer in layers:
        if isinstance(layer.mlp, GroupedExpertMLP):
            layer.mlp = layer.mlp.masked
    return len(layers)


def expert_dispatch(model: nn.Module) -> str | None:
    """"grouped", "masked", or None when `model` has no MoE layer (a plain ViTPose backbone)."""
    layers = _moe_layers(model)
    if not layers:
        return None
    return "grouped" if isinstance(layers[0].mlp, GroupedExpertMLP) else "masked"


def set_expert_dispatch(model: nn.Module, mode: Literal["masked", "grouped"]) -> int:
    """`enable_grouped_experts` / `disable_grouped_experts` by name (for a config flag `expert_dispatch`)."""
    if mode not in EXPERT_DISPATCH_MODES:
        raise ValueError(f"expert_dispatch must be one of {EXPERT_DISPATCH_MODES}, got {mode!r}")
    return enable_grouped_experts(model) if mode == "grouped" else disable_grouped_experts(model)


def _configs(model: nn.Module) -> list:
    """Every distinct transformers config reachable from `model`'s PreTrainedModel submodules (nested backbones
    carry their own config, and the backbone's self-attention reads that one)."""
    seen, out = set(), []
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation") and id(config) not in seen:
            seen.add(id(config))
            out.append(config)
    return out


def set_attention_implementation(model: nn.Module, implementation: Literal["sdpa", "eager"]) -> None:
    """Select the attention kernel of every ViTPose backbone inside `model` ("sdpa": torch's fused
    scaled-dot-product attention; "eager": explicit softmax(QK^T)V, needed for `output_attentions`)."""
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLEMENTATIONS}, "
                         f"got {implementation!r}")
    for config in _configs(model):
        config._attn_implementation = implementation


def attention_implementation(model: nn.Module) -> str | None:
    """The attention implementation the backbone layers of `model` use (None without a ViTPose backbone)."""
    for module in model.modules():
        if isinstance(module, VitPoseBackboneLayer):
            return module.attention.attention.config._attn_implementation
    return None


def heads_to_channels_last(module: nn.Module) -> nn.Module:
    """Convert the 4-D conv/deconv weights under `module` (e.g. `model.heads`) to channels-last in place.

    Only the memory layout changes (same values, same state dict); oneDNN / cuDNN then pick NHWC kernels.
    Whether this helps is hardware-dependent: see docs/benchmarks.md before turning it on.
    """
    return module.to(memory_format=torch.channels_last)
