"""Which PoseBH model the demo serves, and the banner that says so.

Order: the `--model` argument, then the `POSEBH_MODEL` environment variable, then the default model shipped
beside this file (`default_model/`). When none of them exists the demo still starts, on a randomly initialised
tiny model, under a banner saying its keypoints are meaningless: the page must never present random weights as
if they meant something.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = APP_DIR / "default_model"
MODEL_ENV = "POSEBH_MODEL"
DETECTOR_ENV = "POSEBH_DETECTOR"

RANDOM_MODEL_BANNER = (
    "⚠️ **No trained model is loaded: these keypoints are meaningless.** This demo is running a *randomly "
    "initialised* tiny PoseBH model because no trained default model ships with this checkout yet "
    f"(`app/default_model/` is missing) and none was given with `--model` or `{MODEL_ENV}`. "
    "Start it with `posebh demo --model PATH_OR_HUB_ID` to see real predictions."
)


@dataclass(frozen=True)
class ModelChoice:
    """Where the model comes from. source: a folder or Hub repo id, or None for the random fallback."""

    source: str | None
    origin: str  # "argument", "environment", "default" or "random"

    @property
    def is_random(self) -> bool:
        return self.source is None

    def describe(self) -> str:
        if self.source is None:
            return "a randomly initialised tiny model (no trained model available)"
        where = {"argument": "--model", "environment": MODEL_ENV, "default": "the embedded default"}[self.origin]
        return f"`{self.source}` (from {where})"


PAPER = "https://arxiv.org/abs/2505.17475"
CODE = "https://github.com/uyoung-jeong/PoseBH"
REAL_WEIGHTS = (
    f"**Real weights:** the official PoseBH / ViTPose++ checkpoints ([code and checkpoints]({CODE})), converted "
    "with `posebh convert official --src posebh_base.pth --dst posebh-vit-b/`, then "
    "`posebh demo --model posebh-vit-b/`. Paper: [PoseBH, CVPR 2025]" f"({PAPER})."
)


def card_numbers(model_dir: Path) -> dict[str, str]:
    """PCK@0.2 rows of the default model's card (`| `head` | val crops | PCK | AP |`): {"head on crops": value}."""
    card = model_dir / "README.md"
    if not card.is_file():
        return {}
    out = {}
    for line in card.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[2].replace(".", "", 1).isdigit():
            out[f"{cells[0].strip('`')} on {cells[1]}"] = cells[2]
    return out


def model_note(choice: ModelChoice, default_dir: Path | None = None) -> str:
    """The note the page shows under its title: what the model is and where real weights come from."""
    default_dir = DEFAULT_MODEL_DIR if default_dir is None else default_dir
    if choice.is_random:
        return REAL_WEIGHTS
    if choice.origin != "default":
        return f"**Model:** `{choice.source}`. " + REAL_WEIGHTS
    numbers = card_numbers(default_dir)
    shown = [f"{key}: {numbers[key]}" for key in ("lspe on lspe", "coco on lspe (12 shared joints)") if key in numbers]
    measured = (" Val `PCK@0.2` (x100) " + "; ".join(shown) + "." if shown else "")
    return ("**About this model:** the embedded default is a *small* ViTPose++ (6 layers x 192 wide, 4.2 M "
            "parameters) trained from random weights on **2 CPU cores** on a few thousand people and animals "
            f"(`app/default_model/README.md`).{measured} It finds rough poses on clear, upright people and misses "
            "many keypoints; it is far weaker than the released models. " + REAL_WEIGHTS)


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def choose_model(model: str | None = None, *, env: dict[str, str] | None = None,
                 default_dir: Path | None = None) -> ModelChoice:
    """Resolve the model source without loading anything."""
    env = os.environ if env is None else env
    default_dir = DEFAULT_MODEL_DIR if default_dir is None else default_dir
    if model:
        return ModelChoice(str(model), "argument")
    if env.get(MODEL_ENV):
        return ModelChoice(env[MODEL_ENV], "environment")
    if _is_model_dir(default_dir):
        return ModelChoice(str(default_dir), "default")
    return ModelChoice(None, "random")


def build_random_tiny_model(out_dir: Path) -> Path:
    """Save a randomly initialised tiny PoseBH model to `out_dir` (only for the clearly labelled fallback)."""
    import torch

    from posebh_hf import PoseBHConfig, PoseBHForPoseEstimation

    torch.manual_seed(0)  # the same meaningless model each start, so screenshots are reproducible
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny()).eval()
    model.save_pretrained(out_dir)
    return out_dir


def load_pipeline(choice: ModelChoice):
    """Load the PoseBH pipeline for `choice`; the random fallback is written to a temporary folder first."""
    from posebh_hf.pipeline import PoseBHPipeline

    if choice.source is not None:
        if choice.source.startswith(("/", "./", "../", "~")) and not Path(choice.source).expanduser().is_dir():
            raise FileNotFoundError(f"the model folder {choice.source} does not exist")
        return PoseBHPipeline.from_pretrained(str(Path(choice.source).expanduser()) if choice.source.startswith("~")
                                              else choice.source)
    with tempfile.TemporaryDirectory(prefix="posebh_demo_random_") as tmp:
        return PoseBHPipeline.from_pretrained(str(build_random_tiny_model(Path(tmp))))
