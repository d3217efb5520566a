"""Card templates shipped with the package (layer 0): `posebh_hf/hub_cards/*.md`, read through
`importlib.resources`, so an installed wheel renders the same cards as a source checkout."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["card_template"]


def card_template(name: str) -> Path | None:
    """`hub_cards/<name>` from `$POSEBH_HUB_CARDS` (a folder of your own templates) or the package; None when
    neither has it."""
    override = os.environ.get("POSEBH_HUB_CARDS")
    if override and (Path(override) / name).is_file():
        return Path(override) / name
    packaged = resources.files("posebh_hf").joinpath("hub_cards", name)
    return Path(str(packaged)) if packaged.is_file() else None
