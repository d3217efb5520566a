"""The stage schedule (spec §5.2) and the learning-rate schedule (spec §5.3), as pure functions of the epoch/step.

Parts of the model and their freeze/thaw events:
- ``backbone``, ``heads``, ``embedding``: `requires_grad` of their parameters;
- ``prototypes``: whether the momentum update (and its cross-process reduce) runs.
The state of a part at epoch e is set by the *last* event with epoch <= e (no event: trainable). Because it is
recomputed from the event list, not accumulated by hooks, a "thaw" always thaws, however often the part was
frozen before (the released `BackboneFreezeHook` records already-frozen parameters as permanently frozen, so the
ViT-B backbone never trains: Q10), and resuming at any epoch restores the same flags (the released hooks fire
only at their exact epoch and their flags are not checkpointed).

Stage defaults (paper, "posebh" mode, E epochs): 0 .. E/2-1 embedding head + prototypes; E/2 .. 0.9E-1 heads +
embedding, prototypes frozen, cluster loss on; 0.9E .. E-1 everything but the prototypes, CSS on (Q7: the paper
starts CSS in the last 10 %, the released code at 50 %).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from .config import NEVER, ConfigError, ScheduleConfig

__all__ = [
    "PARTS",
    "LRSchedule",
    "StageEvent",
    "StageFlags",
    "StageSchedule",
    "apply_stage",
    "parameter_part",
    "parse_event",
]

PARTS: tuple[str, ...] = ("backbone", "heads", "embedding", "prototypes")
_PREFIXES = {"backbone.": "backbone", "heads.": "heads", "embedding_head.": "embedding"}


@dataclass(frozen=True, order=True)
class StageEvent:
    """"freeze" or "thaw" of one part at the start of `epoch`."""

    epoch: int
    action: str

    def __str__(self) -> str:
        return f"{self.action}@{self.epoch}"


def parse_event(text: str | StageEvent, where: str = "schedule.events") -> StageEvent:
    """``"freeze@50"`` / ``"thaw@90"`` -> `StageEvent`; anything else is a `ConfigError` naming `where`."""
    if isinstance(text, StageEvent):
        return text
    action, sep, epoch = str(text).partition("@")
    if not sep or action not in ("freeze", "thaw") or not epoch.strip().isdigit():
        raise ConfigError(f"{where}: event {text!r} must look like 'freeze@EPOCH' or 'thaw@EPOCH'")
    return StageEvent(int(epoch), action)


@dataclass(frozen=True)
class StageFlags:
    """What trains at one epoch."""

    epoch: int
    train_backbone: bool
    train_heads: bool
    train_embedding: bool
    update_prototypes: bool
    cps: bool
    css: bool

    @property
    def stage(self) -> int:
        """1-based paper stage: 1 prototypes, 2 heads, 3 backbone (for logs)."""
        return 3 if self.train_backbone else 2 if self.train_heads else 1

    def as_dict(self) -> dict[str, float]:
        return {"stage": float(self.stage), "train_backbone": float(self.train_backbone),
                "train_heads": float(self.train_heads), "train_embedding": float(self.train_embedding),
                "update_prototypes": float(self.update_prototypes), "cps": float(self.cps), "css": float(self.css)}


def _fraction(epochs: int, frac: float) -> int:
    return int(round(epochs * frac))


def _start(value: int | str | None, default: int | None) -> int | None:
    """An explicit epoch, None for 'never', or the default when unset."""
    if value is None:
        return default
    if value == NEVER:
        return None
    return int(value)


class StageSchedule:
    """Freeze/thaw events per part plus the CPS / CSS start epochs.

    Args:
        events: part -> events (strings like "freeze@0" or `StageEvent`s); parts without events train.
        cps_start: first epoch with the cluster loss (None = never).
        css_start: first epoch with CSS (None = never).
    """

    def __init__(self, events: Mapping[str, Iterable[str | StageEvent]], cps_start: int | None = None,
                 css_start: int | None = None) -> None:
        unknown = sorted(set(events) - set(PARTS))
        if unknown:
            raise ConfigError(f"schedule.events: unknown part(s) {unknown}; parts are {list(PARTS)}")
        # stable sort by epoch: for equal epochs the later entry in the list wins
        self.events = {part: tuple(sorted((parse_event(e, f"schedule.events.{part}") for e in events.get(part, ())),
                                          key=lambda ev: ev.epoch))
                       for part in PARTS}
        self.cps_start = cps_start
        self.css_start = css_start

    @classmethod
    def from_config(cls, config: ScheduleConfig, mode: str = "posebh") -> StageSchedule:
        """Derive the events of `mode` ("posebh", "multihead", "transfer") from `config` (module docstring)."""
        e = config.epochs
        half, late = _fraction(e, 0.5), _fraction(e, 0.9)
        if mode == "posebh":
            defaults = {"heads": half, "backbone": late, "prototypes": half,
                        "embedding": None, "cps": half, "css": late}
        elif mode == "multihead":
            defaults = {"heads": 0, "backbone": 0, "prototypes": 0, "embedding": 0, "cps": None, "css": None}
        elif mode == "transfer":
            defaults = {"heads": 0, "backbone": half, "prototypes": half, "embedding": 0, "cps": None, "css": None}
        else:
            raise ConfigError(f"unknown mode {mode!r}")
        heads = _start(config.heads_thaw_epoch, defaults["heads"])
        backbone = _start(config.backbone_thaw_epoch, defaults["backbone"])
        proto_freeze = _start(config.prototype_freeze_epoch, defaults["prototypes"])
        emb_freeze = _start(config.embedding_freeze_epoch, defaults["embedding"])
        if mode == "multihead":  # no embedding head, no prototypes in the baseline, whatever the config says
            proto_freeze, emb_freeze = 0, 0
        events: dict[str, list[str | StageEvent]] = {
            "heads": _thaw_events(heads),
            "backbone": _thaw_events(backbone),
            "prototypes": [] if proto_freeze is None else [StageEvent(proto_freeze, "freeze")],
            "embedding": [] if emb_freeze is None else [StageEvent(emb_freeze, "freeze")],
        }
        for part, override in config.events.items():
            if part not in PARTS:
                raise ConfigError(f"schedule.events: unknown part {part!r}; parts are {list(PARTS)}")
            events[part] = list(override)
        cps = None if mode != "posebh" else _start(config.cps_start_epoch, defaults["cps"])
        css = None if mode != "posebh" else _start(config.css_start_epoch, defaults["css"])
        return cls(events, cps, css)

    def trainable(self, part: str, epoch: int) -> bool:
        """State of `part` at `epoch`: the last event with event.epoch <= epoch decides (default: trainable)."""
        state = True
        for event in self.events[part]:
            if event.epoch <= epoch:
                state = event.action == "thaw"
        return state

    def flags(self, epoch: int) -> StageFlags:
        return StageFlags(
            epoch=epoch,
            train_backbone=self.trainable("backbone", epoch),
            train_heads=self.trainable("heads", epoch),
            train_embedding=self.trainable("embedding", epoch),
            update_prototypes=self.trainable("prototypes", epoch),
            cps=self.cps_start is not None and epoch >= self.cps_start,
            css=self.css_start is not None and epoch >= self.css_start,
        )

    def boundaries(self) -> list[int]:
        """Epochs at which any flag may change (sorted, unique)."""
        epochs = {ev.epoch for evs in self.events.values() for ev in evs}
        epochs |= {e for e in (self.cps_start, self.css_start) if e is not None}
        return sorted(epochs)

    def stage_ranges(self, epochs: int) -> list[tuple[int, int, StageFlags]]:
        """(first epoch, last epoch, flags) of every run of epochs in [0, epochs) between flag boundaries."""
        starts = sorted({0, *[b for b in self.boundaries() if 0 < b < epochs]})
        stops = [s - 1 for s in starts[1:]] + [epochs - 1]
        return [(start, stop, self.flags(start)) for start, stop in zip(starts, stops, strict=True)]

    def idle_epochs(self, epochs: int) -> tuple[int, int] | None:
        """The first range of epochs (first, last) in [0, epochs) where no part learns by gradient (backbone,
        heads and embedding head all frozen): a step there has nothing to backpropagate. None when there is none."""
        for start, stop, f in self.stage_ranges(epochs):
            if not (f.train_backbone or f.train_heads or f.train_embedding):
                return start, stop
        return None

    def describe(self, epochs: int) -> str:
        """One line per distinct stage, e.g. for the start-up log."""
        lines = []
        for start, stop, f in self.stage_ranges(epochs):
            parts = [name for name, on in (("backbone", f.train_backbone), ("heads", f.train_heads),
                                           ("embedding", f.train_embedding), ("prototypes", f.update_prototypes),
                                           ("cps", f.cps), ("css", f.css)) if on]
            lines.append(f"epochs {start}-{stop}: {', '.join(parts) or 'nothing'}")
        return "\n".join(lines)


def _thaw_events(thaw_epoch: int | None) -> list[str | StageEvent]:
    if thaw_epoch is None:
        return [StageEvent(0, "freeze")]
    if thaw_epoch == 0:
        return []
    return [StageEvent(0, "freeze"), StageEvent(thaw_epoch, "thaw")]


def parameter_part(name: str) -> str | None:
    """The schedule part owning parameter `name` (None for parameters outside the four parts)."""
    for prefix, part in _PREFIXES.items():
        if name.startswith(prefix):
            return part
    return None


def apply_stage(model: nn.Module, flags: StageFlags) -> dict[str, int]:
    """Set `requires_grad` of the backbone / heads / embedding head from `flags`; returns trainable counts.

    Frozen parts stay in train mode (as released: drop-path and BatchNorm statistics keep running) and stay in
    the optimizer; with no gradient AdamW neither steps nor decays them.
    """
    wanted = {"backbone": flags.train_backbone, "heads": flags.train_heads, "embedding": flags.train_embedding}
    counts = dict.fromkeys(wanted, 0)
    for name, param in model.named_parameters():
        part = parameter_part(name)
        if part is None:
            continue
        param.requires_grad_(wanted[part])
        if wanted[part]:
            counts[part] += param.numel()
    return counts


@dataclass
class LRSchedule:
    """Linear warm-up then step decay, as a factor of each group's base lr (mmcv `step` + linear warm-up).

    factor(step) = warmup(step) * decay_factor ** (number of decay epochs <= epoch(step)), with
    warmup(step) = ratio + (1 - ratio) * step / warmup_steps for step < warmup_steps, else 1.
    The only state is `last_step`, saved in checkpoints (`state_dict` / `load_state_dict`).
    """

    steps_per_epoch: int
    warmup_steps: int = 500
    warmup_ratio: float = 0.001
    decay_epochs: Sequence[int] = ()
    decay_factor: float = 0.1
    last_step: int = 0

    @classmethod
    def from_config(cls, config: ScheduleConfig, steps_per_epoch: int) -> LRSchedule:
        decay = config.lr_decay_epochs
        if decay is None:
            decay = [_fraction(config.epochs, 0.5), _fraction(config.epochs, 0.9)]
        return cls(steps_per_epoch, config.warmup_steps, config.warmup_ratio, sorted(decay), config.lr_decay_factor)

    def factor(self, step: int) -> float:
        epoch = step // max(self.steps_per_epoch, 1)
        decay = self.decay_factor ** bisect.bisect_right(list(self.decay_epochs), epoch)
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return decay * (self.warmup_ratio + (1.0 - self.warmup_ratio) * step / self.warmup_steps)
        return decay

    def apply(self, optimizer: object, step: int) -> float:
        """Set every group's lr to base_lr * lr_scale * factor(step); returns the factor."""
        factor = self.factor(step)
        for group in optimizer.param_groups:  # type: ignore[attr-defined]
            group["lr"] = group["base_lr"] * group.get("lr_scale", 1.0) * factor
        self.last_step = step
        if not math.isfinite(factor):
            raise ValueError(f"learning-rate factor at step {step} is not finite")
        return factor

    def state_dict(self) -> dict[str, int]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.last_step = int(state["last_step"])
