"""The app/ folder pushes as a Space unchanged: README header, requirements, entry point, public-API imports only."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app"
# The demo may use the package root and these public modules, nothing deeper (architecture.md).
PUBLIC_MODULES = {"posebh_hf", "posebh_hf.pipeline", "posebh_hf.visualize", "posebh_hf.images",  # the one image loader
                  "posebh_hf.detection"}  # the offline HOG detector the CLI uses too


def space_header() -> dict:
    text = (REPO / "src" / "posebh_hf" / "hub_cards" / "space_README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_space_readme_header_points_at_this_folder():
    header = space_header()
    assert header["sdk"] == "gradio" and (APP / header["app_file"]).is_file()
    import gradio

    assert header["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0]
    assert header["colorFrom"] in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert len(header["short_description"]) <= 60


def test_requirements_parse_and_keep_out_torchvision_and_timm():
    lines = [ln.split("#")[0].strip() for ln in (APP / "requirements.txt").read_text().splitlines()]
    names = {Requirement(ln).name.lower() for ln in lines if ln}
    assert "posebh-hf" in names
    assert not names & {"torchvision", "timm"}


def test_app_imports_only_the_public_api():
    found: set[str] = set()
    for path in APP.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("posebh_hf"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("posebh_hf"))
    assert found and found <= PUBLIC_MODULES, found - PUBLIC_MODULES


def test_no_images_or_weights_are_committed_in_app():
    # Photos are used from scikit-image / ../shared at run time; default_model/ is the one allowed weight folder.
    suffixes = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".pth", ".pt", ".bin"}
    assert not [p for p in APP.rglob("*") if p.suffix.lower() in suffixes]
