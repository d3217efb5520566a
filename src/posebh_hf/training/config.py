"""Training configuration: dataclasses mirrored 1:1 by the YAML file (spec §4.9, §5, §8, §10).

`load_train_config(path, overrides)` reads a YAML file, applies dotted ``key=value`` overrides and returns a
validated `TrainConfig`. Every default is the paper recipe for ViT-B (AdamW 1e-3, wd 0.1, layer decay 0.75,
warm-up 500 steps from 0.001 x lr, x0.1 at 50 % and 90 % of the epochs, grad clip 1.0, the loss weights of
§4.9); `configs/posebh_vitb.yaml` spells them out.

Every value is checked when the config is read (type, range, finiteness), so a bad value fails at start-up with
one line naming its dotted key and the value, instead of deep inside torch at step 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..losses.weights import LossWeights
from ..ops.similarity import SIMILARITY_MODES
from .config_io import ConfigError, apply_overrides, from_dict, load_yaml, to_dict

__all__ = [
    "MODES",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DatasetConfig",
    "EvalConfig",
    "LoggingConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TransferConfig",
    "load_train_config",
]

MODES = ("posebh", "multihead", "transfer")
PROTOTYPE_INITS = ("class_mean", "fit", "random")
NEVER = "never"


def _require(ok: bool, name: str, rule: str, value: Any) -> None:
    """ConfigError ``"<name> must be <rule>, got <value>"`` unless `ok`."""
    if not ok:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class ModelConfig:
    """Which network to train.

    Attributes:
        init: a converted ViTPose++ / PoseBH folder or Hub id (`from_pretrained`); None = from scratch.
        revision: Hub revision of `init`.
        variant: backbone size when built from scratch: "base", "huge" or "tiny" (tests, smoke runs).
        similarity: "abs_cosine" (released, |cos|) or "cosine" (paper); scratch builds only.
        num_cluster_prototypes: C, rows of the cross-dataset cluster bank (96; clipped to the number of keypoint
            rows; 0 = no CPS).
        config_overrides: extra `PoseBHConfig` / backbone keyword arguments (e.g. ``{num_hidden_layers: 1}``).
        init_map: target dataset -> source dataset whose expert, head and prototypes initialise it (default: the
            same name; unknown names fall back to the source's first dataset).
        grouped_experts: run only each sample's expert in the MoE MLPs (`modeling.fast_backbone`; same
            parameters and function, less compute with many experts).
        activation_checkpointing: recompute backbone block activations in the backward pass (less memory,
            ~30 % more compute; for ViT-H with DDP, FSDP configs set it in the Accelerate config instead).
    """

    init: str | None = None
    revision: str | None = None
    variant: str = "base"
    similarity: str = "abs_cosine"
    num_cluster_prototypes: int = 96
    config_overrides: dict[str, Any] = field(default_factory=dict)
    init_map: dict[str, str] = field(default_factory=dict)
    grouped_experts: bool = False
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.variant not in ("base", "huge", "tiny"):
            raise ConfigError(f"model.variant must be 'base', 'huge' or 'tiny', got {self.variant!r}")
        if self.similarity not in SIMILARITY_MODES:
            raise ConfigError(f"model.similarity must be one of {SIMILARITY_MODES}, got {self.similarity!r}")
        if self.num_cluster_prototypes < 0:
            raise ConfigError(f"model.num_cluster_prototypes must be >= 0, got {self.num_cluster_prototypes}")


@dataclass
class DatasetConfig:
    """One training dataset (one skeleton, one head, one expert).

    Attributes:
        name: the skeleton / dataset name; its position in `data.datasets` is its `dataset_index`.
        train: a COCO-style keypoint JSON, a folder saved with `datasets.save_to_disk`, a Hub dataset id, or
            `synth:KIND[?train=N&val=N&seed=S]`: generated figures with known keypoints (`posebh_hf.data.synth`).
        val: the same for validation (optional; evaluation skips datasets without one).
        images: image root for JSON inputs (default: the JSON's folder).
        val_images: image root of the validation JSON (default: `images`, else the JSON's folder).
        format: converter format for JSON inputs (`posebh data build --format`); "coco-custom" reads the
            skeleton from the file's keypoint category.
        skeleton: built-in skeleton name or JSON path overriding the file's (default: from the data).
        ratio: mixing weight in the training stream; null on every dataset = proportional to the dataset sizes
            (each instance once per epoch, the paper's setting).
        split, val_split: split names of `train` / `val` when they are Hub dataset ids.
        keypoint_mapping: dataset merging (the baseline PoseBH argues against, and a way to train one skeleton's
            head on corpora whose skeletons overlap): ``{OTHER_DATASET: {keypoints: by_name, ratio: R}}`` makes
            this dataset's expert and head also train on OTHER_DATASET's training instances, with their keypoints
            mapped onto this skeleton by name (or an explicit ``{other_name: this_name}`` mapping); keypoints of
            this skeleton without a source stay unlabelled. `ratio` is the mixing weight of those samples (required
            when the datasets give ratios; otherwise proportional to their count).
    """

    name: str = ""
    train: str = ""
    val: str | None = None
    images: str | None = None
    val_images: str | None = None
    format: str = "coco-custom"
    skeleton: str | None = None
    ratio: float | None = None
    split: str = "train"
    val_split: str = "validation"
    keypoint_mapping: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("data.datasets: every dataset needs a non-empty 'name'")
        if not self.train:
            raise ConfigError(f"data.datasets[{self.name!r}].train is required (a JSON file, a saved dataset "
                              "folder or a Hub id)")
        if self.ratio is not None and not (_finite(self.ratio) and self.ratio > 0):
            raise ConfigError(f"data.datasets[{self.name!r}].ratio must be a finite number > 0, got {self.ratio}")
        for source, entry in self.keypoint_mapping.items():
            where = f"data.datasets[{self.name!r}].keypoint_mapping[{source!r}]"
            if not isinstance(entry, dict) or set(entry) - {"keypoints", "ratio"}:
                raise ConfigError(f"{where} must be a mapping with 'keypoints' (by_name or {{source: target}}) and "
                                  f"'ratio', got {entry!r}")
            ratio = entry.get("ratio")
            if ratio is not None and not (isinstance(ratio, (int, float)) and ratio > 0):
                raise ConfigError(f"{where}.ratio must be > 0, got {ratio!r}")
            if source == self.name:
                raise ConfigError(f"{where}: a dataset cannot be mapped onto itself")


@dataclass
class DataConfig:
    """Datasets and loading.

    Attributes:
        datasets: the training datasets in `dataset_index` order.
        batch_size: samples per process and step.
        num_workers: DataLoader workers per process.
        cache_dir: where JSON inputs are converted to HF datasets (default: ``<output_dir>/data_cache``).
        augment: keyword overrides of the training transform's config (data helper's schema).
    """

    datasets: list[DatasetConfig] = field(default_factory=list)
    batch_size: int = 32
    num_workers: int = 0
    cache_dir: str | None = None
    augment: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        given = [d.ratio is not None for d in self.datasets]
        if any(given) and not all(given):
            raise ConfigError("data.datasets: give a ratio for every dataset or for none (proportional mixing)")
        names = [d.name for d in self.datasets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"data.datasets: names {dupes} appear more than once")
        for d in self.datasets:
            for source, entry in d.keypoint_mapping.items():
                if source not in names:
                    raise ConfigError(f"data.datasets[{d.name!r}].keypoint_mapping names {source!r}, which is not "
                                      f"a configured dataset ({names})")
                if any(given) and entry.get("ratio") is None:
                    raise ConfigError(f"data.datasets[{d.name!r}].keypoint_mapping[{source!r}] needs a 'ratio' "
                                      "because the datasets give ratios")


@dataclass
class ScheduleConfig:
    """Epochs, learning-rate schedule and the stage switches (spec §5.2; Q7, Q10).

    Stage epochs left null are derived from `epochs` with the paper's fractions: heads thaw, prototypes freeze
    and CPS start at 50 %, backbone thaws and CSS starts at 90 % (the paper's "last 10 epochs"; the released
    code starts CSS at 50 %: set ``css_start_epoch: 50``). Any stage epoch may be "never".

    Attributes:
        epochs: total epochs.
        steps_per_epoch: optimizer steps per epoch (default: one pass over the training instances).
        warmup_steps: linear warm-up steps from `warmup_ratio` x lr (500, 0.001).
        lr_decay_epochs: epochs where the lr is multiplied by `lr_decay_factor` (default 50 % and 90 %).
        heads_thaw_epoch: first epoch the heatmap heads train.
        backbone_thaw_epoch: first epoch the backbone trains.
        embedding_freeze_epoch: epoch from which the embedding head is frozen (transfer: 0).
        prototype_freeze_epoch: epoch from which the prototype bank stops its momentum updates.
        cps_start_epoch: epoch at which the cluster bank is built and the cluster loss starts.
        css_start_epoch: epoch at which cross-type self-supervision starts.
        events: advanced: part -> list of "freeze@E" / "thaw@E" (parts: backbone, heads, embedding,
            prototypes) replacing the derived events of that part. The state at epoch e is set by the last event
            with E <= e, so ``backbone: [freeze@0, freeze@50, thaw@90]`` (the released ViT-B hooks) does thaw
            at 90 (the released code never does, Q10).
    """

    epochs: int = 100
    steps_per_epoch: int | None = None
    warmup_steps: int = 500
    warmup_ratio: float = 0.001
    lr_decay_epochs: list[int] | None = None
    lr_decay_factor: float = 0.1
    heads_thaw_epoch: int | str | None = None
    backbone_thaw_epoch: int | str | None = None
    embedding_freeze_epoch: int | str | None = None
    prototype_freeze_epoch: int | str | None = None
    cps_start_epoch: int | str | None = None
    css_start_epoch: int | str | None = None
    events: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"schedule.epochs must be >= 1, got {self.epochs}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"schedule.steps_per_epoch must be >= 1 or null, got {self.steps_per_epoch}")
        if self.warmup_steps < 0 or not 0 < self.warmup_ratio <= 1:
            raise ConfigError(f"schedule.warmup_steps must be >= 0 and warmup_ratio in (0, 1], got "
                              f"{self.warmup_steps}, {self.warmup_ratio}")
        _require(_finite(self.lr_decay_factor) and self.lr_decay_factor > 0, "schedule.lr_decay_factor",
                 "a finite number > 0", self.lr_decay_factor)
        for epoch in self.lr_decay_epochs or ():
            _require(epoch >= 0, "schedule.lr_decay_epochs", "epochs >= 0", self.lr_decay_epochs)
        for name in ("heads_thaw_epoch", "backbone_thaw_epoch", "embedding_freeze_epoch", "prototype_freeze_epoch",
                     "cps_start_epoch", "css_start_epoch"):
            value = getattr(self, name)
            if isinstance(value, str) and value != NEVER:
                raise ConfigError(f"schedule.{name} must be an epoch number, null or 'never', got {value!r}")
            if isinstance(value, int) and value < 0:
                raise ConfigError(f"schedule.{name} must be >= 0, got {value}")


@dataclass
class OptimizerConfig:
    """AdamW with layer-wise lr decay (spec §5.3).

    Attributes:
        name: "adamw" (MDT) or "adam" (transfer configs).
        lr: base learning rate.
        betas, eps: Adam moments.
        weight_decay: decoupled weight decay (0 for biases, norms and position embeddings).
        layer_decay: lr scale rate^(L-1-layer_id) with L = layers + 2 (0.75 ViT-B, 0.8 ViT-H; null = none).
        grad_clip: max global L2 norm of the gradients (null = no clipping).
    """

    name: str = "adamw"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.1
    layer_decay: float | None = 0.75
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        if self.name not in ("adamw", "adam"):
            raise ConfigError(f"optimizer.name must be 'adamw' or 'adam', got {self.name!r}")
        _require(_finite(self.lr) and self.lr > 0, "optimizer.lr", "a finite number > 0", self.lr)
        _require(len(self.betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in self.betas), "optimizer.betas",
                 "two numbers in [0, 1)", self.betas)
        _require(_finite(self.eps) and self.eps > 0, "optimizer.eps", "a finite number > 0", self.eps)
        _require(_finite(self.weight_decay) and self.weight_decay >= 0, "optimizer.weight_decay",
                 "a finite number >= 0", self.weight_decay)
        if self.layer_decay is not None and not (_finite(self.layer_decay) and 0 < self.layer_decay <= 1):
            raise ConfigError(f"optimizer.layer_decay must be in (0, 1] or null, got {self.layer_decay}")
        if self.grad_clip is not None and not (_finite(self.grad_clip) and self.grad_clip > 0):
            raise ConfigError(f"optimizer.grad_clip must be a finite number > 0 or null, got {self.grad_clip}")


@dataclass
class LossConfig:
    """Every loss weight of spec §4.9 and the prototype-learning constants of §4.3-4.8, §10.

    Attributes:
        head: each heatmap head's MSE (1.0).
        proto: common factor on PPC + PPD (1.25e-5); ppc (0.01) and ppd (0.001) inside it.
        phm: prototype-heatmap MSE (3.33e-6 MDT, 1.25e-5 transfer).
        cps: cross-dataset cluster term (1e-2).
        css: cross-type self-supervision term (1e-3).
        css_conf_thr, css_match_dist: CSS thresholds (0.25, 2.1 heatmap pixels).
        momentum: prototype momentum gamma (0.999).
        sinkhorn_epsilon, sinkhorn_iters, gumbel_tau: online clustering (0.05, 3, 0.5).
        sample_threshold: foreground threshold of the pixel sampling (0.0 MDT, 0.2 transfer).
        hard_cluster: momentum update weights 1[correct] instead of the GT confidence (transfer: true).
        cluster_iters, cluster_beta: soft K-means of the cluster bank (500, 20).
    """

    # the weights and CSS thresholds default to the losses package's `LossWeights` (one source of the values)
    head: float = LossWeights.head
    proto: float = LossWeights.proto
    ppc: float = LossWeights.ppc
    ppd: float = LossWeights.ppd
    phm: float = LossWeights.phm
    cps: float = LossWeights.cps
    css: float = LossWeights.css
    css_conf_thr: float = LossWeights.css_conf_thr
    css_match_dist: float = LossWeights.css_match_dist
    momentum: float = 0.999
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iters: int = 3
    gumbel_tau: float = 0.5
    sample_threshold: float = 0.0
    hard_cluster: bool = False
    cluster_iters: int = 500
    cluster_beta: float = 20.0

    def __post_init__(self) -> None:
        for name in (f.name for f in fields(LossWeights)):
            value = getattr(self, name)
            _require(_finite(value) and value >= 0, f"losses.{name}", "a finite number >= 0", value)
        _require(0 <= self.css_conf_thr <= 1, "losses.css_conf_thr", "in [0, 1]", self.css_conf_thr)
        _require(_finite(self.css_match_dist) and self.css_match_dist > 0, "losses.css_match_dist",
                 "a finite number > 0", self.css_match_dist)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"losses.momentum must be in [0, 1), got {self.momentum}")
        if not (_finite(self.sinkhorn_epsilon) and self.sinkhorn_epsilon > 0) or self.sinkhorn_iters < 1:
            raise ConfigError(f"losses.sinkhorn_epsilon must be a finite number > 0 and sinkhorn_iters >= 1, got "
                              f"{self.sinkhorn_epsilon}, {self.sinkhorn_iters}")
        _require(_finite(self.gumbel_tau) and self.gumbel_tau > 0, "losses.gumbel_tau", "a finite number > 0",
                 self.gumbel_tau)
        _require(0 <= self.sample_threshold <= 1, "losses.sample_threshold", "in [0, 1]", self.sample_threshold)
        _require(self.cluster_iters >= 1, "losses.cluster_iters", ">= 1", self.cluster_iters)
        _require(_finite(self.cluster_beta) and self.cluster_beta > 0, "losses.cluster_beta", "a finite number > 0",
                 self.cluster_beta)

    def weights(self) -> LossWeights:
        """The losses package's `LossWeights` with this config's values."""
        return LossWeights(**{f.name: getattr(self, f.name) for f in fields(LossWeights)})


@dataclass
class EvalConfig:
    """Periodic evaluation on the datasets' `val` files.

    Attributes:
        every_epochs: evaluate after every N epochs and at the end (null or 0 = only at the end).
        at_start: also evaluate the initial model before the first step (the untrained baseline).
        at_end: evaluate after the last step.
        batch_size: crops per forward pass.
        max_samples: cap on instances per dataset (null = all).
        pck_threshold: PCK threshold as a fraction of the box size max(w, h) (0.2; logged with OKS AP).
        flip_test: also run every crop mirrored and average the flipped-back heatmaps (the paper's test protocol,
            spec §6.2; skeletons whose flip test does not apply are never flipped). Off: twice as cheap.
    """

    every_epochs: int | None = 10
    at_start: bool = False
    at_end: bool = True
    batch_size: int = 32
    max_samples: int | None = None
    pck_threshold: float = 0.2
    flip_test: bool = False

    def __post_init__(self) -> None:
        _require(self.every_epochs is None or self.every_epochs >= 0, "eval.every_epochs", ">= 0 or null",
                 self.every_epochs)
        _require(self.batch_size >= 1, "eval.batch_size", ">= 1", self.batch_size)
        _require(self.max_samples is None or self.max_samples >= 1, "eval.max_samples", ">= 1 or null",
                 self.max_samples)
        _require(0 < self.pck_threshold <= 1, "eval.pck_threshold", "in (0, 1]", self.pck_threshold)


@dataclass
class CheckpointConfig:
    """`accelerate save_state` checkpoints under ``<output_dir>/checkpoints/step_<N>`` (written atomically).

    Attributes:
        every_steps: save every N optimizer steps (null or 0 = only at the end).
        keep: how many of the newest checkpoints to keep, >= 1 (null = keep every checkpoint; 0 or negative
            numbers are refused: they would delete every checkpoint, the one to resume from included).
        resume: a checkpoint folder or "latest" (also `--resume` on the command line).
        allow_lost_rng: resume even when a process's random-generator state cannot be read (with a warning that
            the run will not repeat the interrupted one); by default such a checkpoint is refused.
    """

    every_steps: int | None = 500
    keep: int | None = 2
    resume: str | None = None
    allow_lost_rng: bool = False

    def __post_init__(self) -> None:
        _require(self.every_steps is None or self.every_steps >= 0, "checkpoint.every_steps", ">= 0 or null",
                 self.every_steps)
        _require(self.keep is None or self.keep >= 1, "checkpoint.keep",
                 ">= 1, or null to keep every checkpoint (0 or less would delete them all)", self.keep)


@dataclass
class LoggingConfig:
    """Trackers and console output.

    Attributes:
        trackers: Accelerate tracker names ("tensorboard", "wandb", ...; [] = none).
        project_name: run name passed to `init_trackers`.
        every_steps: log the loss terms, lr and prototype statistics every N steps (also to
            ``<output_dir>/metrics.jsonl``).
        param_digest: at the end, every process writes a hash of its parameters and prototypes to
            ``<output_dir>/param_digest/rank_<i>.txt`` (tests check that processes agree).
    """

    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    project_name: str = "posebh"
    every_steps: int = 10
    param_digest: bool = False

    def __post_init__(self) -> None:
        _require(self.every_steps >= 1, "logging.every_steps", ">= 1", self.every_steps)


@dataclass
class TransferConfig:
    """Transfer to a new skeleton (spec §8): a single-dataset model built from a trained PoseBH model.

    Attributes:
        source_dataset: the expert (merged into the plain backbone) and head (deconvs) to start from.
        export_pack: write the learned prototypes as a prototype pack under ``<output_dir>/prototype_pack``.
        pack_base_model: base-model id recorded in the pack (default: `model.init`).
        prototype_init: how the new skeleton's prototypes start (docs/deviations.md). "random" (released): the
            truncated-normal init, then the momentum rule. "class_mean" (ours, default): before the first step
            every prototype starts at its keypoint's mean unit embedding over the foreground pixels of the first
            `prototype_init_batches` training batches (through the frozen embedding head), then the momentum rule,
            so keypoints the random bank never classifies right still learn. "fit": from those class means, the
            prototypes are fitted by gradient to the same batches (each keypoint's prototype heatmap peaks at its
            GT pixel, `losses.fit_prototypes`) and then kept: no momentum updates.
        prototype_init_batches: batches of the first epoch that "class_mean" and "fit" read (>= 1).
    """

    source_dataset: str = "coco"
    export_pack: bool = True
    pack_base_model: str | None = None
    prototype_init: str = "class_mean"
    prototype_init_batches: int = 10

    def __post_init__(self) -> None:
        _require(self.prototype_init in PROTOTYPE_INITS, "transfer.prototype_init", f"one of {PROTOTYPE_INITS}",
                 self.prototype_init)
        _require(self.prototype_init_batches >= 1, "transfer.prototype_init_batches", ">= 1",
                 self.prototype_init_batches)


@dataclass
class TrainConfig:
    """The whole run.

    Attributes:
        mode: "posebh" (the method), "multihead" (ablation baseline: heads only, no embedding head, prototypes,
            CPS or CSS) or "transfer" (spec §8).
        output_dir: run folder (checkpoints, tracker logs, the final model).
        seed: same on every process.
        mixed_precision: "no", "fp16" or "bf16"; null = whatever `accelerate launch` sets.
        gradient_accumulation_steps: micro-batches per optimizer step.
        max_steps: stop after this many optimizer steps (null = epochs x steps_per_epoch).
        max_nonfinite_steps: stop after this many consecutive steps with a non-finite loss.
        find_unused_parameters: DDP flag; needed because stages freeze parts of the model.
        repo_id: the Hub id written into the final model card (``org/name``; nothing is pushed).
    """

    mode: str = "posebh"
    output_dir: str = "outputs/posebh"
    seed: int = 0
    mixed_precision: str | bool | None = None
    gradient_accumulation_steps: int = 1
    max_steps: int | None = None
    max_nonfinite_steps: int = 10
    find_unused_parameters: bool = True
    repo_id: str = "local/posebh-model"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mixed_precision is False:  # YAML 1.1 reads an unquoted `no` as false
            self.mixed_precision = "no"
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision must be no, fp16, bf16 or null, got {self.mixed_precision!r}")
        if self.gradient_accumulation_steps < 1:
            raise ConfigError(f"gradient_accumulation_steps must be >= 1, got {self.gradient_accumulation_steps}")
        if self.max_nonfinite_steps < 1:
            raise ConfigError(f"max_nonfinite_steps must be >= 1, got {self.max_nonfinite_steps}")
        _require(self.max_steps is None or self.max_steps >= 1, "max_steps", ">= 1 or null", self.max_steps)
        if self.mode == "transfer" and len(self.data.datasets) != 1:
            raise ConfigError(f"mode 'transfer' trains one new skeleton: data.datasets must have exactly one "
                              f"entry, got {len(self.data.datasets)}")
        self._check_every_stage_learns()

    def _check_every_stage_learns(self) -> None:
        """Refuse a schedule with epochs where backbone, heads and embedding head are all frozen (within the run's
        length: `max_steps` cuts it short when the epoch length is known)."""
        from .schedule import StageSchedule  # schedule.py imports this module

        sched = self.schedule
        epochs = sched.epochs
        if self.max_steps is not None and sched.steps_per_epoch:
            epochs = min(epochs, -(-self.max_steps // sched.steps_per_epoch))
        idle = StageSchedule.from_config(sched, self.mode).idle_epochs(epochs)
        if idle is not None:
            raise ConfigError(f"schedule: in mode {self.mode!r} nothing learns by gradient in epochs {idle[0]}-{idle[1]} "
                              f"(backbone, heads and embedding head all frozen); move schedule.heads_thaw_epoch, "
                              f"schedule.backbone_thaw_epoch or schedule.embedding_freeze_epoch (or schedule.events)")

    @property
    def dataset_names(self) -> list[str]:
        return [d.name for d in self.data.datasets]

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for YAML dumps and tracker hyper-parameters)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return from_dict(cls, data)


def load_train_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read `path` (YAML; None = all defaults), apply dotted overrides (``schedule.epochs=3``), validate."""
    data = load_yaml(path) if path is not None else {}
    apply_overrides(data, overrides, schema=TrainConfig)
    return from_dict(TrainConfig, data)
