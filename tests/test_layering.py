"""The one-way layering of architecture.md: a module imports only from its own or earlier layers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "posebh_hf"

# Longest prefix wins. Module paths are relative to posebh_hf, dotted.
LAYERS: dict[str, int] = {
    "skeletons": 0,
    "geometry": 0,
    "atomic_files": 0,
    "images": 0,
    "codecs": 1,
    "transforms": 1,
    "ops": 1,
    "evaluation": 1,
    "configuration_posebh": 2,
    "modeling": 2,
    "losses": 3,
    "processing_posebh": 3,
    "data": 3,
    "conversion": 3,
    "export": 4,
    "hub": 4,
    "training": 4,
    "pipeline": 4,
    "visualize": 4,
    "evaluation.loop": 4,
    "cli": 5,
    "train": 5,  # `python -m posebh_hf.train` (accelerate launch -m), an entry point like cli
    "__init__": 5,  # the package root registers the Auto classes and re-exports the public API
}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise AssertionError(f"module posebh_hf.{module} has no layer: add it to LAYERS in {__file__}")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, module: str) -> list[tuple[str, int]]:
    """posebh_hf-internal modules imported by `path` (relative imports resolved), with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if module == "__init__":
        base = []
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("posebh_hf."):
                    out.append((alias.name[len("posebh_hf."):], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*anchor, node.module] if node.module else anchor)
            elif node.module and node.module.startswith("posebh_hf"):
                target = node.module[len("posebh_hf."):] if node.module != "posebh_hf" else ""
            else:
                continue
            if target:
                out.append((target, node.lineno))
            else:  # `from . import x` / `from posebh_hf import x`: x are submodules or root names
                out.extend((alias.name, node.lineno) for alias in node.names)
    return out


def test_layer_table_matches_the_package():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))  # raises for a module nobody placed in a layer


def test_no_module_imports_from_a_later_layer():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        own = layer_of(module)
        for target, line in imported_modules(path, module):
            try:
                theirs = layer_of(target)
            except AssertionError:
                continue  # a name imported from the package root, e.g. __version__
            if theirs > own:
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line} (layer {own}) imports "
                                  f"posebh_hf.{target} (layer {theirs})")
    assert not violations, "imports against the layering of architecture.md:\n" + "\n".join(violations)


def test_the_checker_catches_a_violation(tmp_path):
    bad = PACKAGE / "skeletons" / "skeleton.py"
    src = "from posebh_hf.training import loop\nfrom ..modeling import heads\n"
    fake = tmp_path / "fake.py"
    fake.write_text(src)
    found = imported_modules(fake, "skeletons.skeleton")
    assert [t for t, _ in found] == ["training", "modeling"]
    assert all(layer_of(t) > layer_of(module_name(bad)) for t, _ in found)
