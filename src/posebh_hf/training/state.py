"""The run's explicit training state and its checkpoints.

`TrainingState` holds what cannot be recomputed from the config: the data position, the optimizer-step count,
the stage flags last applied, the cluster bank's keypoint map and the non-finite counters. It is saved as JSON
beside Accelerate's `save_state` files (model, optimizer, GradScaler, RNG of every process), so a resumed run
restores the stage flags (the released code loses its CPS/CSS flags after epoch 50).

Checkpoints are written atomically: every process saves into ``checkpoints/.step_<N>.partial``, then the main
process writes `training_state.json`, renames the folder to ``checkpoints/step_<N>`` (`os.replace`) and prunes
old checkpoints. A folder without `training_state.json` is never picked up by ``resume: latest``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError

__all__ = ["STATE_FILE", "TrainingState", "check_checkpoint_files", "find_checkpoint", "list_checkpoints",
           "prune_checkpoints"]

STATE_FILE = "training_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class TrainingState:
    """Counters and flags of a run (JSON-serialisable).

    Attributes:
        step: batches consumed (data position; the epoch is step // steps_per_epoch).
        optimizer_steps: optimizer updates actually applied.
        stage: the `StageFlags` last applied, as a dict (for resume checks and logs).
        cluster_built: whether the cluster bank was built (stored in the model's `cluster_prototypes`).
        closest_keypoint: [C] global keypoint index of each cluster (the CPS targets' mapping).
        nonfinite_streak / nonfinite_total: consecutive / total skipped steps with a non-finite loss.
        steps_per_epoch, world_size: the geometry the data position refers to.
        lr_schedule: `LRSchedule.state_dict()`.
        launch: "single", "ddp" or "fsdp2" (sharded checkpoints resume only under FSDP; "" = not recorded).
    """

    step: int = 0
    optimizer_steps: int = 0
    stage: dict[str, float] = field(default_factory=dict)
    cluster_built: bool = False
    closest_keypoint: list[int] = field(default_factory=list)
    nonfinite_streak: int = 0
    nonfinite_total: int = 0
    steps_per_epoch: int = 0
    world_size: int = 1
    lr_schedule: dict[str, int] = field(default_factory=dict)
    launch: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> TrainingState:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"checkpoint state {path} is unreadable: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"checkpoint state {path} must hold a JSON object, got a {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"checkpoint state {path} has unknown fields {unknown} (written by another version?)")
        defaults = asdict(cls())
        for name, value in data.items():  # the data position and counters must be what they claim to be
            want = type(defaults[name])
            ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
            if not ok or (want is int and value < 0):
                raise ConfigError(f"checkpoint state {path}: field {name!r} must be "
                                  f"{'a non-negative integer' if want is int else want.__name__}, got {value!r}")
        return cls(**data)


_RNG_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")


def _load_saved(path: Path) -> Any:
    """Accelerate's own loader (`torch.load` with `weights_only=True` and its allow-list): nothing is unpickled that
    a plain state file does not hold, exactly as `load_state` will read it."""
    from accelerate.utils import load  # noqa: PLC0415

    return load(path, map_location="cpu")


def check_checkpoint_files(folder: Path, process_index: int, *, allow_lost_rng: bool = False) -> list[str]:
    """Read this process's parts of an Accelerate checkpoint before `load_state` does, because `load_state`
    silently skips random states it cannot read (the resumed run then drifts from the uninterrupted one).

    Returns warnings (what a resume with `allow_lost_rng` loses); raises `ConfigError` naming the file otherwise.
    """
    weights = folder / "model.safetensors"
    if weights.is_file():
        from safetensors import SafetensorError, safe_open  # noqa: PLC0415

        try:
            with safe_open(str(weights), framework="pt") as handle:
                list(handle.keys())
        except (SafetensorError, OSError) as err:
            raise ConfigError(f"checkpoint {folder}: model weights {weights.name} cannot be read ({err})") from None
    optimizer = folder / "optimizer.bin"
    if optimizer.is_file():  # FSDP2 checkpoints keep the optimizer in a sharded folder that load_state checks
        try:
            state = _load_saved(optimizer)
        except Exception as err:  # noqa: BLE001 - any failure means the optimizer state is lost
            raise ConfigError(f"checkpoint {folder}: optimizer state {optimizer.name} cannot be read "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        if not (isinstance(state, dict) and {"state", "param_groups"} <= set(state)):
            raise ConfigError(f"checkpoint {folder}: optimizer state {optimizer.name} is not an optimizer state dict")
    rng = folder / f"random_states_{process_index}.pkl"
    problem = None
    if not rng.is_file():
        problem = "is missing"
    else:
        try:
            states = _load_saved(rng)
            if not (isinstance(states, dict) and all(k in states for k in _RNG_KEYS)):
                problem = "does not hold the random, numpy and torch generator states"
        except Exception as err:  # noqa: BLE001 - truncated, corrupt or holding objects outside the allow-list
            problem = f"cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
    if problem is None:
        return []
    message = f"checkpoint {folder}: random-generator state {rng.name} {problem}"
    if not allow_lost_rng:
        raise ConfigError(f"{message}; the resumed run would not repeat the interrupted one (augmentations and "
                          "sampling would differ). Resume from another checkpoint, or accept the loss with "
                          "checkpoint.allow_lost_rng=true")
    return [f"{message}: resuming with freshly seeded generators (checkpoint.allow_lost_rng=true); augmentations "
            "and sampling will not repeat the interrupted run's"]


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (with a state file) under `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def find_checkpoint(resume: str, output_dir: Path) -> Path:
    """A checkpoint folder from `resume`: a path, or "latest" (the newest complete one under the run)."""
    if resume == "latest":
        found = list_checkpoints(output_dir / "checkpoints")
        if not found:
            raise ConfigError(f"resume=latest: no complete checkpoint under {output_dir / 'checkpoints'}")
        return found[-1][1]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"resume: {path} is not a complete checkpoint folder (no {STATE_FILE})")
    return path


def prune_checkpoints(folder: Path, keep: int | None) -> None:
    """Delete all but the `keep` newest complete checkpoints (and stale partial folders)."""
    for child in folder.glob(".step_*.partial"):
        shutil.rmtree(child, ignore_errors=True)
    if keep is None:
        return
    found = list_checkpoints(folder)
    for _, path in found[:max(len(found) - keep, 0)]:
        shutil.rmtree(path, ignore_errors=True)


def state_summary(state: TrainingState) -> dict[str, Any]:
    return {"step": state.step, "optimizer_steps": state.optimizer_steps, **state.stage}
