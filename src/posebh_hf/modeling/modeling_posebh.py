"""`PoseBHForPoseEstimation`: ViTPose++ backbone -> one heatmap head per dataset, plus the keypoint embedding head
and the prototype bank (spec §2). The forward pass is pure: no loss, no decoding, no flip averaging.

Symbols: B batch, C backbone width, h x w token grid, K_d keypoints of dataset d, K prototype rows, M prototypes
per keypoint, D embedding dim, H x W heatmap size (4h x 4w).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from ..configuration_posebh import PoseBHConfig
from ..skeletons import Skeleton
from .backbone import backbone_feature_map, build_backbone
from .embedding import EmbeddingHead, LinearEmbeddingHead
from .heads import HeatmapHead, SimpleHeatmapHead
from .outputs import PoseBHOutput
from .prototypes import KeypointPrototypes, init_unit_prototypes_

__all__ = ["DatasetIndex", "PoseBHForPoseEstimation", "PoseBHPreTrainedModel"]

DatasetIndex = int | str | Sequence[int | str] | torch.Tensor


class PoseBHPreTrainedModel(PreTrainedModel):
    """Weight init and loading rules shared by PoseBH models."""

    config: PoseBHConfig
    config_class = PoseBHConfig
    base_model_prefix = "posebh"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["VitPoseBackboneEmbeddings", "VitPoseBackboneLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    # ViTPose(++) checkpoints carry no prototypes: they are initialised by `_init_weights`, not reported missing.
    _keys_to_ignore_on_load_missing = [r"keypoint_prototypes\.prototypes", r"keypoint_prototypes\.cluster_prototypes"]
    _keys_to_ignore_on_load_unexpected = [r"^backbone\.cls_token$"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Official head init (convs N(0, 0.001^2), bias 0; BN 1/0) and unit-norm truncated-normal prototypes.

        Only `transformers.initialization` helpers are used, so tensors loaded from a checkpoint are kept. The
        backbone (a nested `PreTrainedModel`) is initialised by its own `_init_weights`.
        """
        if isinstance(module, KeypointPrototypes):
            init_unit_prototypes_(module.prototypes, self.config.prototype_init_std)
            if module.cluster_prototypes is not None:
                init_unit_prototypes_(module.cluster_prototypes, self.config.prototype_init_std)
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            init.normal_(module.weight, mean=0.0, std=self.config.head_init_std)
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            super()._init_weights(module)


class PoseBHForPoseEstimation(PoseBHPreTrainedModel):
    """PoseBH multi-dataset pose model.

    Attributes (state-dict prefixes): `backbone` (transformers `VitPoseBackbone`), `heads` (ModuleList, one head
    per `config.dataset_names` entry, index = `dataset_index`), `embedding_head`, `keypoint_prototypes`
    (buffers `prototypes` [K, M, D] and optionally `cluster_prototypes` [C, M, D]).

    Example:
        >>> model = PoseBHForPoseEstimation(PoseBHConfig.tiny())
        >>> out = model(torch.randn(2, 3, 256, 192), dataset_index=[0, 3], output_prototype_heatmaps=True)
        >>> out.heatmaps["ap10k"].shape, out.prototype_heatmaps["coco"].shape
        (torch.Size([2, 17, 64, 48]), torch.Size([2, 17, 64, 48]))
    """

    def __init__(self, config: PoseBHConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        self.heads = nn.ModuleList([self._make_head(k) for k in config.num_keypoints])
        self.embedding_head = self._make_embedding_head()
        self.keypoint_prototypes = KeypointPrototypes(config.num_prototype_rows, config.num_prototypes,
                                                      config.embed_dim, config.num_cluster_prototypes,
                                                      config.similarity)
        self._skeleton_cache: dict[str, Skeleton] = {}
        self.post_init()

    def _make_embedding_head(self) -> nn.Module:
        width, config = self.config.backbone_config.hidden_size, self.config
        if config.embedding_head_type == "linear":
            return LinearEmbeddingHead(width, config.embed_dim)
        return EmbeddingHead(width, config.embedding_deconv_channels, config.embedding_channels, config.embed_dim)

    def _make_head(self, num_keypoints: int) -> nn.Module:
        width = self.config.backbone_config.hidden_size
        if self.config.head_type == "simple":
            return SimpleHeatmapHead(width, num_keypoints, self.config.scale_factor)
        return HeatmapHead(width, num_keypoints, self.config.head_channels)

    # ------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        dataset_index: DatasetIndex | None = None,
        heads: str | Iterable[str | int] | None = None,
        output_embeddings: bool = False,
        output_prototype_heatmaps: bool = False,
        prototype_skeletons: Iterable[str] | None = None,
        route_heads: bool = False,
        **kwargs: Any,
    ) -> PoseBHOutput:
        """Heatmaps for the requested heads (+ embeddings / prototype heatmaps on request).

        Args:
            pixel_values: normalised crops [B, 3, 256, 192] (the backbone's `image_size`).
            dataset_index: expert routing per sample: an int or name (whole batch), a list of B ints/names, or a
                LongTensor [B]. Optional only for single-dataset models.
            heads: names (or indices) of the heads to run, or "all"; default: the datasets present in
                `dataset_index`, in dataset order. Each head runs on the whole batch unless `route_heads`.
            output_embeddings: also return the raw embedding map [B, D, H, W].
            output_prototype_heatmaps: also return prototype heatmaps {name: [B, K_d, H, W]} (fp32).
            prototype_skeletons: skeletons for `prototype_heatmaps` (datasets or attached extra skeletons);
                default: the requested heads.
            route_heads: run each dataset head only on the samples routed to its dataset: `heatmaps[name]` is then
                [n_d, K_d, H, W], the rows of `dataset_index == d` in batch order (training asks for this when its
                loss reads a head only on its own samples; attached prototype skeletons still see the whole batch).
            **kwargs: `output_hidden_states` / `output_attentions` for the backbone.

        Returns:
            `PoseBHOutput` with `heatmaps` {name: [B, K_d, H, W]} (raw, no activation).
        """
        index = self.dataset_index_tensor(dataset_index, pixel_values.shape[0], pixel_values.device)
        head_names = self._resolve_heads(heads, index)
        features, backbone_out = backbone_feature_map(self.backbone, pixel_values, index, **kwargs)  # [B, C, h, w]
        datasets = self.config.dataset_names
        embeddings = prototype_maps = None
        if output_embeddings or output_prototype_heatmaps or any(n not in datasets for n in head_names):
            embeddings = self.embedding_head(features)  # [B, D, H, W]
        # attached (head-less) skeletons answer with their prototype heatmaps
        heatmaps = {name: self._run_head(datasets.index(name), features, index, route_heads) if name in datasets
                    else self.prototype_heatmaps(embeddings, name) for name in head_names}
        if output_prototype_heatmaps:
            names = head_names if prototype_skeletons is None else self._check_prototype_names(prototype_skeletons)
            prototype_maps = {name: self.prototype_heatmaps(embeddings, name) for name in names}
        return PoseBHOutput(
            heatmaps=heatmaps,
            embeddings=embeddings if output_embeddings else None,
            prototype_heatmaps=prototype_maps,
            hidden_states=backbone_out.hidden_states,
            attentions=backbone_out.attentions,
        )

    def backbone_features(self, pixel_values: torch.Tensor, dataset_index: DatasetIndex | None = None
                          ) -> torch.Tensor:
        """The backbone feature map [B, C, h, w] (after the final LayerNorm) that every head reads."""
        index = self.dataset_index_tensor(dataset_index, pixel_values.shape[0], pixel_values.device)
        return backbone_feature_map(self.backbone, pixel_values, index)[0]

    # ------------------------------------------------------------------------------------------- helpers
    def _run_head(self, d: int, features: torch.Tensor, index: torch.Tensor, routed: bool) -> torch.Tensor:
        """Head d on every sample [B, K_d, H, W], or (routed) on the samples of dataset d only [n_d, K_d, H, W]."""
        if routed:
            features = features[index == d]
        return self.heads[d](features)

    def prototype_heatmaps(self, embeddings: torch.Tensor, dataset_name: str) -> torch.Tensor:
        """Prototype heatmaps [B, K_d, H, W] (fp32, clamped to [1e-4, 1 - 1e-4]) of one skeleton's rows, from a
        raw embedding map [B, D, H, W]. Works for datasets and attached extra prototype skeletons."""
        return self.keypoint_prototypes.heatmaps(embeddings, self.prototype_rows(dataset_name))

    def prototype_rows(self, name: str) -> slice:
        """The block of prototype rows owned by skeleton `name`."""
        offsets = self.config.prototype_offsets
        if name not in offsets:
            raise ValueError(f"no prototypes for {name!r}; this model has prototypes for {list(offsets)}")
        return slice(*offsets[name])

    def skeleton(self, name: str) -> Skeleton:
        """The `Skeleton` (names, flip pairs, sigmas, edges, ...) stored in the config for `name`."""
        if name not in self._skeleton_cache:
            self._skeleton_cache[name] = self.config.get_skeleton(name)
        return self._skeleton_cache[name]

    def dataset_index_tensor(self, dataset_index: DatasetIndex | None, batch_size: int,
                             device: torch.device | str | None = None) -> torch.Tensor:
        """Normalise `dataset_index` (int, name, list of ints/names, or tensor) to a LongTensor [B]."""
        n = self.config.num_datasets
        if dataset_index is None:
            if n != 1:
                raise ValueError(f"dataset_index is required: this model has {n} datasets {self.config.dataset_names}")
            dataset_index = 0
        if isinstance(dataset_index, str):
            dataset_index = self.config.dataset_index_of(dataset_index)
        if isinstance(dataset_index, torch.Tensor):
            index = dataset_index.to(device=device, dtype=torch.long)
            if dataset_index.is_floating_point() or dataset_index.is_complex():
                raise ValueError(f"dataset_index must hold integers, got dtype {dataset_index.dtype}")
        elif isinstance(dataset_index, Sequence):
            values = [self.config.dataset_index_of(v) if isinstance(v, str) else int(v) for v in dataset_index]
            index = torch.tensor(values, dtype=torch.long, device=device)
        elif isinstance(dataset_index, (int, np.integer)):
            index = torch.tensor(int(dataset_index), dtype=torch.long, device=device)
        else:  # numpy arrays and other array-likes
            index = torch.as_tensor(np.asarray(dataset_index), device=device)
            if index.is_floating_point() or index.is_complex():
                raise ValueError(f"dataset_index must hold integers, got dtype {index.dtype}")
            index = index.long()
        if index.ndim == 0:
            index = index.expand(batch_size)
        if index.shape != (batch_size,):
            raise ValueError(f"dataset_index must be an int or have shape ({batch_size},) for a batch of "
                             f"{batch_size}, got shape {tuple(index.shape)}")
        if not _is_tracing() and batch_size > 0 and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"dataset_index values must lie in [0, {n}) ({self.config.dataset_names}), got "
                             f"{sorted(set(index.tolist()))}")
        return index

    def _resolve_heads(self, heads: str | Iterable[str | int] | None, index: torch.Tensor) -> list[str]:
        names = self.config.dataset_names
        extra = list(self.config.extra_prototype_skeletons)
        if heads is None:
            present = set(index.unique().tolist())
            return [name for i, name in enumerate(names) if i in present]
        if isinstance(heads, str):
            heads = names if heads == "all" else [heads]
        wanted = set()
        for head in heads:
            if isinstance(head, str):
                if head not in names and head not in extra:
                    raise ValueError(f"unknown head {head!r}; this model has heads for {names} and attached "
                                     f"prototype skeletons {extra}")
                wanted.add(head)
            elif not 0 <= int(head) < len(names):
                raise ValueError(f"head index {head} is out of range for {len(names)} heads {names}")
            else:
                wanted.add(names[int(head)])
        return [name for name in [*names, *extra] if name in wanted]

    def _check_prototype_names(self, requested: Iterable[str]) -> list[str]:
        requested = [requested] if isinstance(requested, str) else list(requested)
        known = self.config.prototype_skeleton_names
        for name in requested:
            if name not in known:
                raise ValueError(f"no prototypes for {name!r}; this model has prototypes for {known}")
        return requested

    # ------------------------------------------------------------------------------------------- prototype bank
    # The model owns its prototype bank: these methods add, replace, remove and list skeletons (with their routing
    # and provenance in declared config fields). `posebh_hf.hub` reads, checks and writes prototype packs and calls
    # them (`hub.attach_prototype_pack(model, "org/pack")`), like PEFT's load/delete adapter pair.
    @torch.no_grad()
    def add_prototype_skeleton(self, skeleton: Skeleton, prototypes: torch.Tensor | None = None, *,
                               dataset_index: int | None = None, provenance: dict[str, Any] | None = None) -> slice:
        """Attach a head-less skeleton with its prototype block [K_s, M, D] (fresh unit-norm init when None).

        The rows are appended after the existing ones; the skeleton, the expert its images are routed through
        (`dataset_index`, default 0) and `provenance` go into declared config fields, so `save_pretrained` /
        `from_pretrained` round-trip them. Returns the new rows' slice.
        """
        name = skeleton.name
        if name in self.config.prototype_skeleton_names:
            raise ValueError(f"skeleton {name!r} already has prototypes in this model; use "
                             "replace_prototype_skeleton")
        index = 0 if dataset_index is None else int(dataset_index)
        if not 0 <= index < self.config.num_datasets:
            raise ValueError(f"dataset_index {index} for {name!r} is not an expert of this model "
                             f"(0..{self.config.num_datasets - 1})")
        shape = (skeleton.num_keypoints, self.config.num_prototypes, self.config.embed_dim)
        if prototypes is None:
            prototypes = init_unit_prototypes_(torch.empty(shape), self.config.prototype_init_std)
        if tuple(prototypes.shape) != shape:
            raise ValueError(f"prototypes for {name!r} must have shape {shape} (K, M, D), got "
                             f"{tuple(prototypes.shape)}")
        rows = self.keypoint_prototypes.append_rows(prototypes)
        config = self.config
        config.skeletons = {**config.skeletons, name: skeleton.to_dict()}
        config.extra_prototype_skeletons = [*config.extra_prototype_skeletons, name]
        config.extra_prototype_dataset_index = {**(config.extra_prototype_dataset_index or {}), name: index}
        self._set_provenance(name, provenance)
        return rows

    @torch.no_grad()
    def replace_prototype_skeleton(self, name: str, prototypes: torch.Tensor, *, skeleton: Skeleton | None = None,
                                   dataset_index: int | None = None,
                                   provenance: dict[str, Any] | None = None) -> slice:
        """Overwrite the prototypes of skeleton `name` [K_s, M, D]. A dataset with a heatmap head keeps its
        keypoints and expert (a different `skeleton` or `dataset_index` is refused); an attached skeleton is
        replaced whole (new keypoints and routing allowed). Returns its rows."""
        config = self.config
        if name in config.dataset_names:
            own = self.skeleton(name)
            if skeleton is not None and skeleton.keypoint_names != own.keypoint_names:
                raise ValueError(f"cannot replace the prototypes of dataset {name!r}: the new skeleton has keypoints "
                                 f"{list(skeleton.keypoint_names)[:4]}... ({skeleton.num_keypoints}), the model's "
                                 f"head has {list(own.keypoint_names)[:4]}... ({own.num_keypoints})")
            if dataset_index is not None and int(dataset_index) != config.dataset_index_of(name):
                raise ValueError(f"cannot replace the prototypes of dataset {name!r}: the replacement routes through "
                                 f"dataset_index={dataset_index}, the dataset's expert is "
                                 f"{config.dataset_index_of(name)}")
            self.set_skeleton_prototypes(name, prototypes)
            self._set_provenance(name, provenance)
            return self.prototype_rows(name)
        if name not in config.extra_prototype_skeletons:
            raise ValueError(f"no skeleton {name!r} to replace; this model has prototypes for "
                             f"{config.prototype_skeleton_names}")
        new_skeleton = skeleton or self.skeleton(name)
        routing = config.dataset_index_of(name) if dataset_index is None else dataset_index
        self.remove_prototype_skeleton(name)
        return self.add_prototype_skeleton(new_skeleton, prototypes, dataset_index=routing, provenance=provenance)

    @torch.no_grad()
    def remove_prototype_skeleton(self, name: str) -> None:
        """Detach an attached (head-less) skeleton: its rows, routing and provenance go; every other block keeps
        its rows in order. Datasets with a heatmap head cannot be removed."""
        config = self.config
        if name in config.dataset_names:
            raise ValueError(f"{name!r} is a dataset with a heatmap head and an expert; only attached prototype "
                             f"skeletons can be removed ({list(config.extra_prototype_skeletons)})")
        if name not in config.extra_prototype_skeletons:
            raise ValueError(f"no attached skeleton {name!r}; attached: {list(config.extra_prototype_skeletons)}")
        self.keypoint_prototypes.remove_rows(self.prototype_rows(name))
        config.extra_prototype_skeletons = [n for n in config.extra_prototype_skeletons if n != name]
        config.skeletons = {n: s for n, s in config.skeletons.items() if n != name}
        config.extra_prototype_dataset_index = {
            n: i for n, i in (config.extra_prototype_dataset_index or {}).items() if n != name}
        self._set_provenance(name, None, drop=True)
        if config.default_skeletons and name in config.default_skeletons:
            config.default_skeletons = [n for n in config.default_skeletons if n != name] or None

    def list_prototype_skeletons(self) -> list[dict[str, Any]]:
        """Every skeleton with prototypes, in row order: name, rows, keypoints, expert, whether it has a heatmap
        head, and the provenance of an attached pack."""
        config = self.config
        provenance = config.prototype_pack_provenance or {}
        return [{"name": name, "rows": [start, stop], "num_keypoints": stop - start,
                 "dataset_index": config.dataset_index_of(name), "has_head": name in config.dataset_names,
                 "provenance": provenance.get(name)}
                for name, (start, stop) in config.prototype_offsets.items()]

    def _set_provenance(self, name: str, provenance: dict[str, Any] | None, drop: bool = False) -> None:
        table = dict(self.config.prototype_pack_provenance or {})
        if drop:
            table.pop(name, None)
        elif provenance is not None:
            table[name] = dict(provenance)
        self.config.prototype_pack_provenance = table or None
        self._skeleton_cache.pop(name, None)

    @torch.no_grad()
    def set_skeleton_prototypes(self, name: str, prototypes: torch.Tensor) -> None:
        """Overwrite the prototype block [K_s, M, D] of an existing skeleton (stored L2-normalised)."""
        self.keypoint_prototypes.set_rows(self.prototype_rows(name), prototypes)

    @torch.no_grad()
    def set_cluster_prototypes(self, bank: torch.Tensor) -> None:
        """Install or replace the cross-dataset cluster bank [C, M, D] (CPS) and record C in the config."""
        self.keypoint_prototypes.set_cluster_prototypes(bank)
        self.config.num_cluster_prototypes = int(bank.shape[0])


def _is_tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()
