"""Distributed launch checks, FSDP2 on CPU, and what processes must agree on before saving or scoring.

- `check_launch`: the launcher's process count (``WORLD_SIZE``) must equal what Accelerate sees; otherwise every
  process would train its own copy into the same `output_dir` (what an FSDP Accelerate config with
  ``use_cpu: true`` does on a machine without a GPU: torchrun starts 2 processes, each sees a single-process run).
- `enable_fsdp2_on_cpu`: Accelerate enables FSDP only for GPU-like devices; with ``ACCELERATE_USE_CPU=1`` it
  silently falls back to DDP over gloo. FSDP2 (`fully_shard`) does work on CPU with gloo, so this switches the
  Accelerate state to FSDP with the plugin the launcher described; `accelerator.prepare`, `save_state`,
  `load_state`, `clip_grad_norm_` and `get_state_dict` then take Accelerate's FSDP2 paths. Combinations that cannot
  work are refused with one line (`DistributedLaunchError`).
- `sync_batchnorm_stats`: BatchNorm running statistics are per process under DDP and FSDP (buffers are not
  sharded or reduced); they are averaged over processes before every validation, checkpoint and final save, so
  every process scores and saves the same model.
- `describe_sharding`: which modules are FSDP units and the parameter bytes each process holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import Tensor, nn

from .config import ConfigError

__all__ = ["DistributedLaunchError", "ShardingReport", "check_fsdp_version_on_cpu", "check_launch", "describe_sharding", "enable_fsdp2_on_cpu",
           "fsdp_prepare_compat", "fsdp_requested", "full_tensor", "is_fsdp", "launch_kind", "prepare_launch", "sync_batchnorm_stats"]

_CPU_HINT = ("on a machine without a GPU set ACCELERATE_USE_CPU=1 in the environment (accelerate's `use_cpu: true` "
             "and `--cpu` do not reach processes started by the multi-GPU/FSDP launcher)")


class DistributedLaunchError(ConfigError):
    """A launch that would not train what it says (one line; the entry point exits with code 2)."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes")


def fsdp_requested() -> bool:
    """`accelerate launch --use_fsdp` / an FSDP config file (it exports ``ACCELERATE_USE_FSDP=true``)."""
    return _env_flag("ACCELERATE_USE_FSDP")


def is_fsdp(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.FSDP


def launch_kind(accelerator: Accelerator) -> str:
    """"single", "ddp" or "fsdp<version>" (recorded in checkpoints: their formats differ)."""
    if is_fsdp(accelerator):
        return f"fsdp{accelerator.state.fsdp_plugin.fsdp_version}"
    return "ddp" if accelerator.num_processes > 1 else "single"


def check_launch(accelerator: Accelerator) -> None:
    """Stop when the launcher started a different number of processes than Accelerate runs together."""
    raw = os.environ.get("WORLD_SIZE")
    if raw is None:
        return
    try:
        expected = int(raw)
    except ValueError:
        raise DistributedLaunchError(f"WORLD_SIZE={raw!r} in the environment is not an integer") from None
    if expected != accelerator.num_processes:
        hint = _CPU_HINT if not torch.cuda.is_available() and not _env_flag("ACCELERATE_USE_CPU") else \
            "check the launcher's --num_processes and the accelerate config"
        raise DistributedLaunchError(
            f"the launcher started {expected} processes (WORLD_SIZE={expected}) but Accelerate runs "
            f"{accelerator.num_processes} together (distributed type {accelerator.distributed_type.value}): each "
            f"process would train its own copy into the same output_dir; {hint}")


def check_fsdp_version_on_cpu() -> None:
    """Refuse FSDP1 without a GPU in one line. Called before the Accelerator is built too: Accelerate's FSDP1
    plugin raises its own traceback ("no available devices found") when it is constructed on a CPU machine."""
    if not fsdp_requested() or torch.cuda.is_available():
        return
    version = os.environ.get("FSDP_VERSION", "1").strip()
    if version != "2":
        raise DistributedLaunchError(f"FSDP version {version} cannot run on CPU (FSDP1 needs CUDA); launch with "
                                     f"--fsdp_version 2 (fsdp_config.fsdp_version: 2), e.g. configs/accelerate/"
                                     f"fsdp2_cpu.yaml")


def enable_fsdp2_on_cpu(accelerator: Accelerator, mixed_precision: str) -> bool:
    """Switch a multi-CPU (gloo) Accelerate state to FSDP2 when FSDP was asked for; True when switched.

    Refuses FSDP1 (needs CUDA), parameter offload (parameters already live in CPU memory) and fp16 (no CPU
    gradient scaling under FSDP2) with one line each.
    """
    if not fsdp_requested() or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return False
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin

    check_fsdp_version_on_cpu()
    if _env_flag("FSDP_OFFLOAD_PARAMS"):
        raise DistributedLaunchError("fsdp_offload_params=true on CPU: the parameters already live in CPU memory; "
                                     "set fsdp_offload_params: false")
    if mixed_precision == "fp16":
        raise DistributedLaunchError("mixed precision fp16 with FSDP2 on CPU is not supported (no CPU gradient "
                                     "scaler); use mixed_precision no or bf16")
    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables the launcher exported
    if mixed_precision not in (None, "no"):
        plugin.set_mixed_precision(mixed_precision)
    # the state is a Borg: AcceleratorState() copies PartialState's fields on every construction, so set both
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["fsdp_plugin"] = plugin
    return True


@dataclass
class LaunchInfo:
    """What `prepare_launch` found and changed (printed once by the trainer)."""

    kind: str
    notes: list[str] = field(default_factory=list)


def prepare_launch(accelerator: Accelerator, *, mode: str, mixed_precision: str | None) -> LaunchInfo:
    """Every check and switch before the model is prepared (call right after creating the Accelerator)."""
    notes = []
    if enable_fsdp2_on_cpu(accelerator, accelerator.mixed_precision if mixed_precision is None else mixed_precision):
        notes.append("FSDP2 on CPU (gloo): Accelerate's multi-CPU state switched to FSDP")
    check_launch(accelerator)
    if fsdp_requested() and not is_fsdp(accelerator) and accelerator.num_processes > 1:
        raise DistributedLaunchError(f"FSDP was requested but Accelerate runs {accelerator.distributed_type.value} "
                                     f"(it would silently train with plain data parallelism)")
    if is_fsdp(accelerator):
        plugin = accelerator.state.fsdp_plugin
        if plugin.fsdp_version != 2:
            raise DistributedLaunchError("posebh_hf supports FSDP through FSDP2 only (fsdp_version: 2)")
        if mode == "transfer":
            raise DistributedLaunchError("mode transfer exports a prototype pack from the main process only; run "
                                         "it without FSDP (plain data parallel or one process)")
        if plugin.cpu_ram_efficient_loading:
            # Accelerate's FSDP2 loader treats every state-dict entry as a sharded DTensor and fails on buffers
            # (BatchNorm statistics, the prototype banks); every process builds the same model from the seed anyway
            plugin.cpu_ram_efficient_loading = False
            notes.append("fsdp_cpu_ram_efficient_loading turned off (the model has buffers)")
    return LaunchInfo(launch_kind(accelerator), notes)


@contextmanager
def fsdp_prepare_compat(model: nn.Module) -> Iterator[None]:
    """Around `accelerator.prepare` under FSDP2: Accelerate asks the model for its input/output embeddings (to give
    them their own shard units); transformers raises `NotImplementedError` for a model without token embeddings,
    so answer None for the duration (instance attributes, removed afterwards)."""
    patched = []
    for name in ("get_input_embeddings", "get_output_embeddings"):
        try:
            getattr(model, name)()
        except NotImplementedError:
            object.__setattr__(model, name, lambda: None)
            patched.append(name)
    try:
        yield
    finally:
        for name in patched:
            model.__dict__.pop(name, None)


def full_tensor(tensor: Tensor) -> Tensor:
    """The whole tensor of an FSDP2 parameter (a collective: every process must call it), else itself."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _local(tensor: Tensor) -> Tensor:
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


@torch.no_grad()
def sync_batchnorm_stats(model: nn.Module, world_size: int) -> int:
    """Average BatchNorm running mean / variance over processes, in place; returns the number of buffers.

    Each process's statistics are an exponential average of its own batches; their mean is the average of the
    per-process batch means (the global batch mean for equal batch sizes) and of the per-process variances
    (the "reduce" of timm's `distribute_bn`). All-reduce gives every process the same bits.
    """
    buffers = [buf for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
               for buf in (module.running_mean, module.running_var) if buf is not None]
    if not buffers or world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return 0
    flat = torch.cat([b.detach().float().reshape(-1) for b in buffers])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for buf in buffers:
        n = buf.numel()
        buf.copy_(flat[offset:offset + n].view_as(buf).to(buf.dtype))
        offset += n
    return len(buffers)


@dataclass
class ShardingReport:
    """Sharding of one process's model (FSDP units, parameter bytes held)."""

    kind: str
    world_size: int
    sharded_modules: list[str]
    param_bytes_local: int
    param_bytes_full: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "world_size": self.world_size, "sharded_modules": self.sharded_modules,
                "param_bytes_local": self.param_bytes_local, "param_bytes_full": self.param_bytes_full}


def describe_sharding(model: nn.Module, kind: str, world_size: int) -> ShardingReport:
    """FSDP units (module paths, "" = the root) and parameter bytes on this process vs the whole model."""
    from torch.distributed.fsdp import FSDPModule

    units = [name for name, module in model.named_modules() if isinstance(module, FSDPModule)]
    local = sum(_local(p).numel() * p.element_size() for p in model.parameters())
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    return ShardingReport(kind, world_size, units, int(local), int(full))
