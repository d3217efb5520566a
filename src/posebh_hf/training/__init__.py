"""Training (layer 4): YAML config, stage schedule, layer-wise lr decay, the PoseBH step and the Accelerate loop.

Entry points: `scripts/train.py` (`accelerate launch scripts/train.py --config FILE.yaml [key=value ...]`),
`load_train_config` + `Trainer(cfg).train()` from Python.
"""

from __future__ import annotations

from .config import (
    MODES,
    CheckpointConfig,
    ConfigError,
    DataConfig,
    DatasetConfig,
    EvalConfig,
    LoggingConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TransferConfig,
    load_train_config,
)
from .config_io import apply_overrides, parse_override
from .model_init import InitReport, build_model, transplant
from .param_groups import build_optimizer, layer_id, no_weight_decay, param_groups
from .schedule import PARTS, LRSchedule, StageEvent, StageFlags, StageSchedule, apply_stage, parse_event
from .state import TrainingState
from .step import LossContext, PrototypeBankView, StepResult, compute_losses, loss_weights
from .trainer import NonFiniteLossError, Trainer, TrainResult, make_accelerator, train

__all__ = [
    "MODES",
    "PARTS",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DatasetConfig",
    "EvalConfig",
    "InitReport",
    "LRSchedule",
    "LoggingConfig",
    "LossConfig",
    "LossContext",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimizerConfig",
    "PrototypeBankView",
    "ScheduleConfig",
    "StageEvent",
    "StageFlags",
    "StageSchedule",
    "StepResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingState",
    "TransferConfig",
    "apply_overrides",
    "apply_stage",
    "build_model",
    "build_optimizer",
    "compute_losses",
    "layer_id",
    "load_train_config",
    "loss_weights",
    "make_accelerator",
    "no_weight_decay",
    "param_groups",
    "parse_event",
    "parse_override",
    "train",
    "transplant",
]
