"""Checkpoints of a training run (layer 4): Accelerate's `save_state` plus the run's `TrainingState`, written
atomically under ``<output_dir>/checkpoints/step_<N>``, and resuming from one after reading all of it first.

Functions of a `Trainer` (the loop stays in `trainer.py`)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic_files import as_write_error, write_text_atomically
from .config import ConfigError
from .schedule import apply_stage
from .state import STATE_FILE, TrainingState, check_checkpoint_files, prune_checkpoints

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(trainer: Trainer, final: bool = False) -> Path:
    folder = trainer.output_dir / "checkpoints"
    target = folder / f"step_{trainer.state.step}"
    partial = folder / f".step_{trainer.state.step}.partial"
    if trainer.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    trainer.acc.wait_for_everyone()
    trainer.sync_buffers()
    trainer.state.lr_schedule = trainer.lr.state_dict()
    trainer.state.launch = trainer.launch.kind
    try:
        trainer.acc.save_state(str(partial))  # model, optimizer, scaler, RNG of every process
    except Exception as err:  # a full disk: one line naming the checkpoint, the half-written copy removed
        shutil.rmtree(partial, ignore_errors=True)
        failure = as_write_error(target, err)
        if failure is None:
            raise
        raise failure from None
    trainer.acc.wait_for_everyone()
    if trainer.is_main:
        write_text_atomically(partial / STATE_FILE, trainer.state.to_json())
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
        prune_checkpoints(folder, trainer.cfg.checkpoint.keep)
    trainer.acc.wait_for_everyone()
    return target


def load_checkpoint(trainer: Trainer, folder: Path) -> None:
    """Restore model, optimizer, RNG, lr schedule, data position, stage flags and cluster bank state."""
    state = TrainingState.from_file(folder / STATE_FILE)
    if state.steps_per_epoch != trainer.data.steps_per_epoch or state.world_size != trainer.world:
        raise ConfigError(f"checkpoint {folder} was taken with {state.world_size} process(es) x "
                          f"{state.steps_per_epoch} steps/epoch; this run has {trainer.world} x "
                          f"{trainer.data.steps_per_epoch} (the data position would not match)")
    if state.launch and state.launch != trainer.launch.kind and "fsdp" in (state.launch + trainer.launch.kind):
        raise ConfigError(f"checkpoint {folder} was written by a {state.launch} run; this run is "
                          f"{trainer.launch.kind} (sharded and unsharded checkpoints have different formats)")
    # the trainable set of the checkpoint's last epoch: FSDP2 loads the optimizer state into a template made
    # for the parameters that require grad, which must be exactly those the checkpoint holds state for
    apply_stage(trainer.unwrapped, trainer.schedule.flags(trainer.epoch_of(max(state.step - 1, 0))))
    for warning in check_checkpoint_files(folder, trainer.acc.process_index,
                                          allow_lost_rng=trainer.cfg.checkpoint.allow_lost_rng):
        print(f"warning (process {trainer.acc.process_index}): {warning}", file=sys.stderr, flush=True)
    trainer.acc.load_state(str(folder))
    trainer.state = state
    trainer.lr.load_state_dict(state.lr_schedule or {"last_step": state.optimizer_steps})
    trainer.flags = None
    trainer._print(f"resumed from {folder} at step {state.step} (epoch {trainer.epoch_of(state.step)}, stage flags "
                f"{state.stage})")
