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

__all__ = ["STATE_FILE", "TrainingState", "find_checkpoint", "list_checkpoints", "prune_checkpoints"]

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
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"checkpoint state {path} has unknown fields {unknown} (written by another version?)")
        return cls(**data)


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
