"""The Accelerate training loop (spec §5): stages, optimisation, prototype learning, evaluation, checkpoints.

One optimizer step (spec App. C): forward -> every loss term of the stage -> non-finite check (agreed by all
processes) -> backward -> clip to `grad_clip` -> (Adam)W step with layer-wise lr -> write the momentum-updated
prototype bank (fp32, no_grad, averaged over processes). Stage flags, the learning rate and the data position
are functions of the step, so `--resume` continues exactly where a checkpoint was taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, gather_object, set_seed
from tqdm.auto import tqdm

from ..atomic_files import write_text_atomically
from ..losses import class_mean_sums, cluster_keypoint_map, fit_prototypes, peak_pixels, warm_start_prototypes
from ..modeling import PoseBHForPoseEstimation
from .checkpointing import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import (
    check_fsdp_version_on_cpu,
    describe_sharding,
    fsdp_prepare_compat,
    full_tensor,
    is_fsdp,
    prepare_launch,
    sync_batchnorm_stats,
)
from .final_model import save_final
from .model_init import build_model
from .param_groups import build_optimizer
from .prototype_sync import (
    average_across_processes,
    broadcast_,
    build_cluster_bank,
    make_all_reduce,
    prototype_stats,
)
from .schedule import LRSchedule, StageFlags, StageSchedule, apply_stage
from .state import TrainingState, find_checkpoint
from .step import LossContext, PrototypeBankView, StepResult, compute_losses
from .train_data import TrainData, build_train_data, load_source
from .validation import ValidationSet, build_validation_sets, validate

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "train"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training stopped after too many consecutive steps with a non-finite loss."""


@dataclass
class TrainResult:
    """What a finished run returns (on every process)."""

    is_main: bool
    output_dir: Path
    final_model: Path | None
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    pack: Path | None = None


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """Accelerator with TensorBoard (or the configured trackers) under ``<output_dir>/logs``.

    DDP: `find_unused_parameters` because stages freeze parts of the model, and no buffer broadcast at every
    forward (prototypes are synchronised explicitly; BatchNorm statistics are averaged over processes before every
    validation and save, `distributed.sync_batchnorm_stats`). FSDP comes from the launcher (``--use_fsdp``, an
    FSDP config file); on CPU `distributed.prepare_launch` switches Accelerate to FSDP2.
    """
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters, broadcast_buffers=False)
    project = ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=str(Path(cfg.output_dir) / "logs"))
    kwargs: dict[str, Any] = {"kwargs_handlers": [ddp], "project_config": project,
                              "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
                              "log_with": list(cfg.logging.trackers) or None}
    if cfg.mixed_precision is not None:
        kwargs["mixed_precision"] = cfg.mixed_precision
    check_fsdp_version_on_cpu()
    return Accelerator(**kwargs)


class Trainer:
    """Builds everything from a `TrainConfig` and runs the loop (`train()`); see the module docstring."""

    def __init__(self, cfg: TrainConfig, accelerator: Accelerator | None = None) -> None:
        self.cfg = cfg
        self.acc = accelerator or make_accelerator(cfg)
        # before anything is built: a launch that would train several copies, or an FSDP combination that cannot
        # run, stops here with one line
        self.launch = prepare_launch(self.acc, mode=cfg.mode, mixed_precision=cfg.mixed_precision)
        self.output_dir = Path(cfg.output_dir)
        self.world = self.acc.num_processes
        set_seed(cfg.seed)  # same seed on every process: identical init, as released
        self.cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else self.output_dir / "data_cache"
        self.data, self.val_sets = self._build_data()
        model, self.init_description = build_model(cfg, self.data.skeletons)
        # how each dataset's targets are made is how its heatmaps must be decoded: the saved model carries it
        # (the first len(dataset_names) transforms are the datasets' own, in order; mapped ones follow)
        model.config.decoding = {**(model.config.decoding or {}), **{
            name: "udp" if t.spec.augment.use_udp else "default"
            for name, t in zip(cfg.dataset_names, self.data.transforms, strict=False)}}
        self.num_layers = model.config.backbone_config.num_hidden_layers
        optimizer = build_optimizer(model, cfg.optimizer, self.num_layers)
        # fitted transfer prototypes are the pack: frozen from epoch 0, so no momentum update ever moves them
        schedule = dataclasses.replace(cfg.schedule, prototype_freeze_epoch=0) if self.prototypes_fixed \
            else cfg.schedule
        self.schedule = StageSchedule.from_config(schedule, cfg.mode)
        self.lr = LRSchedule.from_config(cfg.schedule, self.data.steps_per_epoch)
        # every parameter requires grad here, so DDP registers all of them; stages are applied after prepare
        with warnings.catch_warnings():
            # torch >= 2.12 deprecates DDP's broadcast_buffers, which Accelerate still passes; its replacement
            # would also sync buffers at init (harmless here), but Accelerate cannot pass it yet
            warnings.filterwarnings("ignore", message=".*broadcast_buffers.*deprecated", category=FutureWarning)
            with fsdp_prepare_compat(model) if is_fsdp(self.acc) else contextlib.nullcontext():
                self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.unwrapped: PoseBHForPoseEstimation = self.acc.unwrap_model(self.model)
        self.sharding = describe_sharding(self.unwrapped, self.launch.kind, self.world)
        self.bank = PrototypeBankView(self.unwrapped.keypoint_prototypes) if cfg.mode != "multihead" else None
        self.ctx = LossContext(list(self.unwrapped.config.num_keypoints), cfg.losses,
                               self.unwrapped.config.similarity, use_prototypes=cfg.mode != "multihead",
                               all_reduce=make_all_reduce(self.world))
        self.state = TrainingState(steps_per_epoch=self.data.steps_per_epoch, world_size=self.world)
        self.flags: StageFlags | None = None
        self.total_steps = cfg.max_steps or cfg.schedule.epochs * self.data.steps_per_epoch
        self.history: list[dict[str, float]] = []
        self.evaluations: list[dict[str, float]] = []

    # ------------------------------------------------------------------------------------------- setup
    def _build_data(self) -> tuple[TrainData, list[ValidationSet]]:
        cfg = self.cfg
        with self.acc.main_process_first():  # the main process converts JSON sources; the others reuse them
            train_sources = [load_source(spec, "train", self.cache_dir) for spec in cfg.data.datasets]
            val_sources = [load_source(spec, "val", self.cache_dir) if spec.val else None
                           for spec in cfg.data.datasets]
        data = build_train_data(cfg.data, self.cache_dir, seed=cfg.seed, rank=self.acc.process_index,
                                world_size=self.world, steps_per_epoch=cfg.schedule.steps_per_epoch,
                                sources=train_sources)
        vals = build_validation_sets(cfg.data.datasets, val_sources, cfg.data.augment, cfg.eval)
        return data, vals

    @property
    def is_main(self) -> bool:
        return self.acc.is_main_process

    def epoch_of(self, step: int) -> int:
        return step // self.data.steps_per_epoch

    # ------------------------------------------------------------------------------------------- stages
    @property
    def prototypes_fixed(self) -> bool:
        """Transfer with fitted prototypes: the fit is the pack, the momentum rule never moves it."""
        return self.cfg.mode == "transfer" and self.cfg.transfer.prototype_init == "fit"

    def _enter_epoch(self, epoch: int) -> None:
        flags = self.schedule.flags(epoch)
        if flags != self.flags:
            counts = apply_stage(self.unwrapped, flags)
            if self.cfg.mode == "transfer":
                # a frozen embedding head also keeps its BatchNorm statistics, so the exported prototype pack
                # stays compatible with the base model's embedding head (its fingerprint is unchanged)
                self.unwrapped.embedding_head.train(flags.train_embedding)
            if self.flags is None or flags.stage != self.flags.stage or flags.css != self.flags.css:
                self._print(f"epoch {epoch}: stage {flags.stage} (trainable parameters {counts}, "
                            f"prototypes {'updated' if flags.update_prototypes else 'frozen'}, "
                            f"cps {'on' if flags.cps else 'off'}, css {'on' if flags.css else 'off'})")
            self.flags = flags
            self.state.stage = flags.as_dict()
        if flags.cps and not self.state.cluster_built and self.bank is not None:
            self._build_clusters()
        if self.state.cluster_built and self.ctx.keypoint_map is None:
            closest = torch.tensor(self.state.closest_keypoint, dtype=torch.long, device=self.acc.device)
            self.ctx.keypoint_map = cluster_keypoint_map(closest, self.ctx.num_keypoints)

    def _build_clusters(self) -> None:
        assert self.bank is not None
        c = self.cfg.losses
        num = self.unwrapped.config.num_cluster_prototypes
        if num <= 0:
            self._print("cluster stage reached but model.num_cluster_prototypes is 0: no cluster loss")
            self.state.cluster_built, self.state.closest_keypoint = False, []
            self.schedule.cps_start = None
            return
        t0 = time.perf_counter()
        bank, closest = build_cluster_bank(self.bank.prototypes[:self.ctx.num_rows], num, iters=c.cluster_iters,
                                           beta=c.cluster_beta, world_size=self.world, is_main=self.is_main)
        self.bank.write_clusters(bank)
        self.state.cluster_built = True
        self.state.closest_keypoint = [int(v) for v in closest.tolist()]
        self._print(f"built {num} cluster prototypes in {time.perf_counter() - t0:.1f}s")

    @torch.no_grad()
    def _start_prototypes(self) -> None:
        """Transfer: start the new bank from the frozen embedding (`transfer.prototype_init` "class_mean" / "fit").

        Reads the first `prototype_init_batches` batches of epoch 0 (the loader is deterministic per epoch, so the
        loop sees the same batches again) through the model as the first stage runs it (embedding head in eval
        mode when frozen). Class-mean sums are added over processes; "fit" runs on each process's own batches and
        the main process's result is broadcast, so every process holds the same bank.
        """
        assert self.bank is not None
        self._enter_epoch(0)
        rule, wanted = self.cfg.transfer.prototype_init, self.cfg.transfer.prototype_init_batches
        k = self.ctx.num_keypoints[0]  # transfer trains one skeleton
        sums, kept, read = None, [], 0
        for batch in self.data.loader(0):
            if read >= wanted:
                break
            read += 1
            batch = {key: v.to(self.acc.device, non_blocking=True) for key, v in batch.items()}
            out = self.model(batch["pixel_values"], dataset_index=batch["dataset_index"], heads=[],
                             output_embeddings=True)
            part = class_mean_sums(out.embeddings, batch["target"], batch["dataset_index"], self.ctx.num_keypoints,
                                   self.cfg.losses.sample_threshold)
            sums = part if sums is None else sums + part
            if rule == "fit":
                kept.append((out.embeddings, batch["target"][:, :k]))  # fit_prototypes normalises
        if sums is None:
            return
        if self.ctx.all_reduce is not None:
            sums = self.ctx.all_reduce(sums)
        bank = warm_start_prototypes(self.bank.prototypes[:self.ctx.num_rows], sums)
        if rule == "fit":
            embeddings = torch.cat([e for e, _ in kept])
            peak_index, visible = peak_pixels(torch.cat([t for _, t in kept]))
            bank = broadcast_(fit_prototypes(embeddings, peak_index, visible, bank,
                                             similarity=self.unwrapped.config.similarity).contiguous(), self.world)
        self.bank.write_rows(bank, self.ctx.num_rows)
        self._print(f"prototypes {'fitted' if rule == 'fit' else 'warm-started'} on {read} batch(es) "
                    f"of epoch 0: {int((sums[:, -1] > 0).sum())} of {self.ctx.num_rows} rows had pixels"
                    + ("; no momentum updates" if rule == "fit" else ""))

    # ------------------------------------------------------------------------------------------- one step
    def _agree_finite(self, value: torch.Tensor) -> bool:
        flag = torch.tensor([0.0 if bool(torch.isfinite(value)) else 1.0], device=self.acc.device)
        if self.world > 1:
            flag = self.acc.reduce(flag, reduction="sum")
        return float(flag.item()) == 0.0

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Forward, losses, backward, clip, optimizer step and prototype write for one batch."""
        assert self.flags is not None
        batch = {k: v.to(self.acc.device, non_blocking=True) for k, v in batch.items()}
        self.lr.apply(self.optimizer, self.state.optimizer_steps)
        logs: dict[str, float] = {}
        with self.acc.accumulate(self.model):
            result: StepResult = compute_losses(self.model, self.bank, batch, self.flags, self.ctx)
            check = result.loss.detach() if result.new_prototypes is None else \
                result.loss.detach() + result.new_prototypes.sum() * 0.0  # NaN/inf in either -> non-finite
            finite = self._agree_finite(check)
            # backward even when skipping: DDP expects a backward after every forward; the grads are dropped
            self.acc.backward(result.loss)
            if not finite:
                self.optimizer.zero_grad(set_to_none=True)
                return self._skip(result)
            if self.acc.sync_gradients and self.cfg.optimizer.grad_clip is not None:
                params = [p for p in self.model.parameters() if p.requires_grad]
                norm = self.acc.clip_grad_norm_(params, self.cfg.optimizer.grad_clip)
                logs["grad_norm"] = float(full_tensor(norm)) if norm is not None else math.nan
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.acc.sync_gradients and not self.acc.optimizer_step_was_skipped:
            self.state.optimizer_steps += 1
        self.state.nonfinite_streak = 0
        if result.new_prototypes is not None and self.bank is not None:
            before = self.bank.prototypes[:self.ctx.num_rows].detach().clone()
            new = average_across_processes(result.new_prototypes, self.world)
            self.bank.write_rows(new, self.ctx.num_rows)
            if self._log_now():
                logs.update(prototype_stats(before, self.bank.prototypes[:self.ctx.num_rows]))
        logs.update(result.logs)
        logs["lr"] = self.optimizer.param_groups[-1]["lr"]
        return logs

    def _skip(self, result: StepResult) -> dict[str, float]:
        self.state.nonfinite_streak += 1
        self.state.nonfinite_total += 1
        limit = self.cfg.max_nonfinite_steps
        self._print(f"step {self.state.step + 1}: non-finite loss ({result.logs.get('loss')}) on at least one process; "
                    f"step skipped ({self.state.nonfinite_streak} in a row, limit {limit})")
        if self.state.nonfinite_streak >= limit:
            raise NonFiniteLossError(
                f"stopping: {self.state.nonfinite_streak} consecutive steps had a non-finite loss (last at step "
                f"{self.state.step + 1}, epoch {self.epoch_of(self.state.step)}); last terms: "
                f"{ {k: v for k, v in result.logs.items() if not k.startswith('css_')} }. Lower optimizer.lr, "
                f"check the data, or use mixed_precision=no / bf16; raise max_nonfinite_steps to tolerate more.")
        return {"nonfinite": 1.0, "nonfinite_total": float(self.state.nonfinite_total)}

    # ------------------------------------------------------------------------------------------- loop
    def _log_now(self) -> bool:
        every = max(self.cfg.logging.every_steps, 1)
        return (self.state.step + 1) % every == 0

    def train(self, resume: str | None = None) -> TrainResult:
        """Run (or resume) until `total_steps`; evaluate, checkpoint and save the final model."""
        resume = resume or self.cfg.checkpoint.resume
        if resume:
            self.load_checkpoint(find_checkpoint(resume, self.output_dir))
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomically(self.output_dir / "train_config.yaml", yaml.safe_dump(self.cfg.to_dict(),
                                                                                   sort_keys=False))
        self._init_trackers()
        self._write_sharding_report()
        self._print(f"{self.init_description}; {self.world} process(es) ({self.launch.kind}), "
                    f"{self.data.steps_per_epoch} steps/epoch, {self.total_steps} steps\n"
                    f"{self.schedule.describe(self.cfg.schedule.epochs)}")
        if self.cfg.eval.at_start and self.state.step == 0:
            self._evaluate()
        if self.state.step == 0 and self.cfg.mode == "transfer" and self.cfg.transfer.prototype_init != "random":
            self._start_prototypes()
        # an explicit `disable` would override tqdm's TQDM_DISABLE variable, so honour it here
        quiet = os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")
        bar = tqdm(total=self.total_steps, initial=self.state.step, disable=quiet or not self.is_main, desc="train",
                   dynamic_ncols=True)
        window: dict[str, list[float]] = defaultdict(list)
        try:
            while self.state.step < self.total_steps:
                epoch = self.epoch_of(self.state.step)
                start = self.state.step - epoch * self.data.steps_per_epoch
                stop = min(self.data.steps_per_epoch, self.total_steps - epoch * self.data.steps_per_epoch)
                self._enter_epoch(epoch)
                loader = self.data.loader(epoch, start)
                for batch in loader:
                    if start >= stop:
                        break
                    tic = time.perf_counter()
                    logs = self.train_step(batch)
                    logs["time/step_s"] = time.perf_counter() - tic
                    for key, value in logs.items():
                        window[key].append(value)
                    self.state.step += 1
                    start += 1
                    bar.update(1)
                    if "loss" in logs:
                        bar.set_postfix(loss=f"{logs['loss']:.4g}", stage=self.flags.stage if self.flags else 0)
                    if self.state.step % max(self.cfg.logging.every_steps, 1) == 0:
                        self._log_window(window)
                    self._maybe_checkpoint()
                if self._epoch_done(epoch):
                    self._maybe_evaluate(epoch)
            if window:
                self._log_window(window)
        finally:
            bar.close()
        self._save_checkpoint(final=True)  # before the evaluation: the saved RNG state is the loop's
        if self.cfg.eval.at_end and not self.evaluations_at(self.state.step):
            self._evaluate()
        if self.cfg.logging.param_digest:
            self.write_param_digest()
        final, pack = self._save_final()
        self.acc.end_training()
        return TrainResult(self.is_main, self.output_dir, final, self.state.step, self.history, self.evaluations,
                           pack)

    def _epoch_done(self, epoch: int) -> bool:
        return self.state.step == (epoch + 1) * self.data.steps_per_epoch

    def evaluations_at(self, step: int) -> bool:
        return any(e.get("step") == step for e in self.evaluations)

    def _log_window(self, window: dict[str, list[float]]) -> None:
        values = {k: float(sum(v) / len(v)) for k, v in window.items() if v}
        window.clear()
        if "loss" in values and self.world > 1:  # the loss averaged over processes
            loss = torch.tensor([values["loss"]], device=self.acc.device)
            values["loss"] = float(self.acc.reduce(loss, reduction="mean").item())
        values.update({f"stage/{k}": v for k, v in (self.flags.as_dict() if self.flags else {}).items()})
        values["epoch"] = self.state.step / self.data.steps_per_epoch
        values["step"] = float(self.state.step)
        self.history.append(values)
        self.acc.log({k: v for k, v in values.items() if k != "step"}, step=self.state.step)
        self._append_metrics({"type": "train", **values})

    def _maybe_evaluate(self, epoch: int) -> None:
        every = self.cfg.eval.every_epochs
        if every and (epoch + 1) % every == 0 and self.state.step < self.total_steps:
            self._evaluate()

    def _evaluate(self) -> dict[str, float]:
        if not self.val_sets:
            return {}
        self.sync_buffers()  # every process scores its share with the same BatchNorm statistics
        metrics = validate(self.unwrapped, self.val_sets, self.cfg.eval, rank=self.acc.process_index,
                           world_size=self.world, gather=gather_object, device=self.acc.device)
        metrics["step"] = float(self.state.step)
        self.evaluations.append(metrics)
        self._append_metrics({"type": "eval", **metrics})
        self.acc.log({k: v for k, v in metrics.items() if k != "step"}, step=self.state.step)
        summary = ", ".join(f"{k[4:]} {v:.4f}" for k, v in metrics.items()
                            if k in ("val/pck", "val/ap", "val/epe"))
        self._print(f"step {self.state.step}: validation {summary}")
        return metrics

    def _append_metrics(self, record: dict[str, float | str]) -> None:
        """One JSON line per log window / evaluation in ``<output_dir>/metrics.jsonl`` (main process)."""
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with (self.output_dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

    def write_param_digest(self) -> Path:
        """SHA-256 of this process's parameters and buffers (prototype banks, BatchNorm statistics), to check that
        processes agree. Under FSDP each parameter is gathered whole first (every process takes part)."""
        self.sync_buffers()
        digest = hashlib.sha256()
        tensors = dict(self.unwrapped.named_parameters())
        tensors.update(dict(self.unwrapped.named_buffers()))
        for name in sorted(tensors):
            digest.update(name.encode())
            # a copy: `.numpy()` marks a storage non-resizable, and FSDP2 frees its unsharded parameters by resizing
            data = full_tensor(tensors[name].detach()).float().cpu().clone()
            digest.update(data.numpy().tobytes())
        folder = self.output_dir / "param_digest"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"rank_{self.acc.process_index}.txt"
        write_text_atomically(path, digest.hexdigest())
        return path

    def sync_buffers(self) -> None:
        """Average BatchNorm statistics over processes (before anything is scored or saved)."""
        sync_batchnorm_stats(self.unwrapped, self.world)

    def _write_sharding_report(self) -> None:
        """``<output_dir>/distributed.json``: launch kind, FSDP units, parameter bytes held by each process."""
        report = self.sharding.to_dict()
        per_rank = gather_object([report["param_bytes_local"]]) if self.world > 1 else [report["param_bytes_local"]]
        if self.is_main:
            report["param_bytes_per_rank"] = [int(v) for v in per_rank]
            del report["param_bytes_local"]
            report["notes"] = self.launch.notes
            write_text_atomically(self.output_dir / "distributed.json", json.dumps(report, indent=1) + "\n")
            if self.launch.kind.startswith("fsdp"):
                units = [u or "<root>" for u in self.sharding.sharded_modules]
                self._print(f"{self.launch.kind}: {len(units)} FSDP units ({', '.join(units)}); parameter bytes "
                            f"per process {report['param_bytes_per_rank']} of {report['param_bytes_full']}"
                            + (f"; {'; '.join(self.launch.notes)}" if self.launch.notes else ""))

    def _init_trackers(self) -> None:
        if not self.cfg.logging.trackers:
            return
        hparams = _flat_hparams(self.cfg.to_dict())
        self.acc.init_trackers(self.cfg.logging.project_name, config=hparams)

    def _print(self, text: str) -> None:
        if self.is_main:
            tqdm.write(text)

    # ------------------------------------------------------------------------------------------- checkpoints
    def _maybe_checkpoint(self) -> None:
        every = self.cfg.checkpoint.every_steps
        if every and self.state.step % every == 0 and self.state.step < self.total_steps:
            self._save_checkpoint()

    def _save_checkpoint(self, final: bool = False) -> Path:
        return save_checkpoint(self, final)

    def load_checkpoint(self, folder: Path) -> None:
        """Restore model, optimizer, RNG, lr schedule, data position, stage flags and cluster bank state."""
        load_checkpoint(self, folder)

    def _save_final(self) -> tuple[Path | None, Path | None]:
        return save_final(self)



def _flat_hparams(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """TensorBoard hparams accept only scalars and strings: flatten and stringify the rest."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_hparams(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def train(cfg: TrainConfig, resume: str | None = None) -> TrainResult:
    """Build a `Trainer` from `cfg` and run it."""
    return Trainer(cfg).train(resume)
