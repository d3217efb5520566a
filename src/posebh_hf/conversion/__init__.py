"""Checkpoint converters (layer 3): transformers ViTPose(++) folders and official PoseBH / ViTPose++ `.pth` files
into PoseBH `save_pretrained` folders, with strict key/shape checks and numeric parity helpers."""

from __future__ import annotations

from .common import ConversionError, ConversionReport
from .official import (
    DROPPED_KEYS,
    convert_official,
    load_official_state_dict,
    map_official_state_dict,
    official_config,
    official_to_posebh_model,
)
from .parity import PARITY_TOLERANCE, format_parity, vitpose_parity
from .vitpose import (
    convert_vitpose,
    map_vitpose_state_dict,
    posebh_config_from_vitpose,
    read_vitpose_folder,
    vitpose_to_posebh_model,
)

__all__ = [
    "DROPPED_KEYS",
    "PARITY_TOLERANCE",
    "ConversionError",
    "ConversionReport",
    "convert_official",
    "convert_vitpose",
    "format_parity",
    "load_official_state_dict",
    "map_official_state_dict",
    "map_vitpose_state_dict",
    "official_config",
    "official_to_posebh_model",
    "posebh_config_from_vitpose",
    "read_vitpose_folder",
    "vitpose_parity",
    "vitpose_to_posebh_model",
]
