"""An installed wheel behaves like the checkout: the card templates ship as package data (`posebh_hf/hub_cards`)
and are found through `importlib.resources`, not by walking up from the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RENDER = """
import posebh_hf, sys
from posebh_hf import PoseBHConfig
from posebh_hf.hub.cards import find_template, render_model_card
from posebh_hf.data.push import find_card_template
assert posebh_hf.__file__.startswith(sys.argv[1]), posebh_hf.__file__
for name in ("model_card.md", "pack_card.md", "default_model_card.md", "space_README.md"):
    assert str(find_template(name)).startswith(sys.argv[1]), (name, find_template(name))
assert str(find_card_template()).startswith(sys.argv[1])
print(render_model_card(PoseBHConfig.tiny(), repo_id="org/tiny"))
"""


@pytest.mark.timeout(600)
def test_a_wheel_install_renders_the_packaged_cards(tmp_path: Path) -> None:
    wheels, site, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    # build from a copy of what the wheel is made of, so the checkout gets no build/ or egg-info folders
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("posebh_hf-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "posebh_hf/hub_cards/model_card.md" in names and "posebh_hf/hub_cards/pack_card.md" in names
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-2000:]
    # a separate interpreter whose posebh_hf is the installed copy (PYTHONPATH precedes the editable checkout),
    # run far from the source tree
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    env.pop("POSEBH_HUB_CARDS", None)
    card = subprocess.run([sys.executable, "-c", RENDER, str(site)], capture_output=True, text=True, cwd=tmp_path,
                          env=env)
    assert card.returncode == 0, card.stderr[-2000:]
    template = (ROOT / "src" / "posebh_hf" / "hub_cards" / "model_card.md").read_text()
    heading = next(line for line in template.splitlines() if line.startswith("## "))
    assert heading in card.stdout  # the packaged template, not the short built-in fallback
