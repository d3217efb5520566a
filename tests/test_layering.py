"""The one-way layering of architecture.md: a module imports only from its own or earlier layers.

Every way a module can reach another is seen: `import posebh_hf.x`, `from posebh_hf.x import y`, relative imports,
root imports (`from posebh_hf import X` resolves X to the submodule it is, or to the package root, layer 5), and
strings naming a package module in `importlib.import_module(...)` / `__import__(...)`. A name that resolves to
nothing is an error, not a skip. `app/` and `scripts/` (programs built on the package) may import only public names
of public modules: no module or name starting with an underscore.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "posebh_hf"
PROGRAMS = (ROOT / "app", ROOT / "scripts")

# Longest prefix wins. Module paths are relative to posebh_hf, dotted ("__init__" is the package root).
LAYERS: dict[str, int] = {
    "skeletons": 0,
    "geometry": 0,
    "atomic_files": 0,
    "images": 0,
    "version": 0,
    "templates": 0,
    "detection": 0,
    "video": 4,
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
    "pose_results": 4,
    "pipeline_task": 4,
    "visualize": 4,
    "model_evaluation": 4,
    "cli": 5,
    "train": 5,  # `python -m posebh_hf.train` (accelerate launch -m), an entry point like cli
    "__init__": 5,  # the package root registers the Auto classes and re-exports the public API
}
IMPORT_FUNCTIONS = {"import_module", "__import__"}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise AssertionError(f"module posebh_hf.{module} has no layer: add it to LAYERS in {__file__}")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def is_module(dotted: str, package: Path = PACKAGE) -> bool:
    """Whether posebh_hf.<dotted> is a module or package of the source tree ("" = the root)."""
    if not dotted:
        return True
    path = package.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def resolve(target: str, names: list[str], package: Path = PACKAGE) -> list[str]:
    """`from posebh_hf.<target> import <names>` -> the modules it reaches: each name that is a submodule, else
    the target package itself ("__init__" for the root). Raises for a target that is not a module."""
    if not is_module(target, package):
        raise AssertionError(f"posebh_hf.{target} is not a module of the package")
    out = []
    for name in names:
        sub = f"{target}.{name}" if target else name
        if is_module(sub, package):
            out.append(sub)
        else:
            out.append(target or "__init__")
    return sorted(set(out))


def _own_package_fstring(node: ast.JoinedStr) -> bool:
    """f"{__name__}.NAME": a submodule of the importing package, chosen at run time (the CLI's verbs, the data
    converters)."""
    parts = node.values
    return (len(parts) >= 2 and isinstance(parts[0], ast.FormattedValue) and isinstance(parts[0].value, ast.Name)
            and parts[0].value.id == "__name__" and isinstance(parts[1], ast.Constant)
            and str(parts[1].value).startswith("."))


def _import_strings(node: ast.Call) -> list[str]:
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if called not in IMPORT_FUNCTIONS or not node.args:
        return []
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.split(".")[0] == "posebh_hf":
        return [first.value]
    if isinstance(first, ast.JoinedStr):
        return ["<own package>"] if _own_package_fstring(first) else ["<dynamic f-string import>"]
    return []


def imported_modules(path: Path, module: str, package: Path = PACKAGE) -> list[tuple[str, int]]:
    """posebh_hf modules reached by `path` (module = its dotted name; "" for a file outside the package), with line
    numbers. Unresolvable targets come back as "<unresolved ...>" so the caller fails on them."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if module in ("__init__", ""):
        base = []
    out: list[tuple[str, int]] = []

    def add(target: str, names: list[str], line: int) -> None:
        try:
            out.extend((m, line) for m in resolve(target, names, package))
        except AssertionError:
            out.append((f"<unresolved posebh_hf.{target}>", line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "posebh_hf":
                    out.append(("__init__", node.lineno))
                elif alias.name.startswith("posebh_hf."):
                    dotted = alias.name[len("posebh_hf."):]
                    out.append((dotted, node.lineno) if is_module(dotted, package)
                               else (f"<unresolved {alias.name}>", node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*anchor, node.module] if node.module else anchor)
            elif node.module and (node.module == "posebh_hf" or node.module.startswith("posebh_hf.")):
                target = node.module[len("posebh_hf."):] if node.module != "posebh_hf" else ""
            else:
                continue
            add(target, [alias.name for alias in node.names], node.lineno)
        elif isinstance(node, ast.Call):
            for text in _import_strings(node):
                if text == "<own package>":  # reaches the package's own submodules: their layers are checked
                    out.extend((key, node.lineno) for key in LAYERS if key.startswith(f"{module}."))
                elif text.startswith("<"):
                    out.append((text, node.lineno))
                else:
                    dotted = text[len("posebh_hf."):] if text != "posebh_hf" else ""
                    out.append((dotted or "__init__", node.lineno) if is_module(dotted, package)
                               else (f"<unresolved {text}>", node.lineno))
    return out


def layering_violations(package: Path = PACKAGE) -> list[str]:
    violations = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        own_module = module_name(path, package)
        own = layer_of(own_module)
        for target, line in imported_modules(path, own_module, package):
            if target.startswith("<"):
                violations.append(f"{rel}:{line} {target}: import a real module, statically")
                continue
            theirs = layer_of(target)
            if theirs > own:
                violations.append(f"{rel}:{line} (layer {own}) imports posebh_hf.{target} (layer {theirs})")
    return violations


def private_imports(folders: tuple[Path, ...] = PROGRAMS) -> list[str]:
    """Imports of private modules or names of posebh_hf by the programs in `folders`."""
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                modules: list[str] = []
                names: list[str] = []
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names if a.name.split(".")[0] == "posebh_hf"]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module \
                        and node.module.split(".")[0] == "posebh_hf":
                    modules, names = [node.module], [a.name for a in node.names]
                elif isinstance(node, ast.Call):
                    modules = [t for t in _import_strings(node) if not t.startswith("<")]
                for module in modules:
                    private = [p for p in module.split(".") if p.startswith("_")]
                    if private or not is_module(module.removeprefix("posebh_hf").lstrip(".")):
                        found.append(f"{path.relative_to(folder.parent)}:{node.lineno} imports {module}")
                found.extend(f"{path.relative_to(folder.parent)}:{node.lineno} imports the private name {n} from {modules[0]}"
                             for n in names if n.startswith("_"))
    return found


# ----------------------------------------------------------------------------------------------- the rules
def test_layer_table_matches_the_package():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))  # raises for a module nobody placed in a layer


def test_no_module_imports_from_a_later_layer():
    violations = layering_violations()
    assert not violations, "imports against the layering of architecture.md:\n" + "\n".join(violations)


def test_programs_use_only_the_public_api():
    found = private_imports()
    assert not found, "app/ and scripts/ may import public modules and names only:\n" + "\n".join(found)


# ----------------------------------------------------------------------------------------------- the checker
def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A fake posebh_hf package under tmp_path with the given modules (relative paths -> source)."""
    package = tmp_path / "posebh_hf"
    for rel, text in {"__init__.py": "", "skeletons/__init__.py": "", "skeletons/skeleton.py": "",
                      "modeling/__init__.py": "", "modeling/heads.py": "", "training/__init__.py": "",
                      "training/loop.py": "", **files}.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_verdict_catches_every_kind_of_upward_edge(tmp_path):
    package = _plant(tmp_path, {"skeletons/skeleton.py": (
        "import importlib\n"
        "from posebh_hf.training import loop\n"                       # static, absolute
        "from ..modeling import heads\n"                               # relative
        "from posebh_hf import PoseBHConfig\n"                        # a root name: the root is layer 5
        "importlib.import_module('posebh_hf.training.loop')\n"         # an importlib string
        "importlib.import_module(f'posebh_hf.{name}')\n"              # a dynamic name
        "from posebh_hf.nowhere import thing\n")})                     # a name that resolves to nothing
    found = layering_violations(package)
    text = "\n".join(found)
    assert "skeleton.py:2 (layer 0) imports posebh_hf.training.loop (layer 4)" in text
    assert "skeleton.py:3 (layer 0) imports posebh_hf.modeling.heads (layer 2)" in text
    assert "skeleton.py:4 (layer 0) imports posebh_hf.__init__ (layer 5)" in text
    assert "skeleton.py:5 (layer 0) imports posebh_hf.training.loop (layer 4)" in text
    assert "skeleton.py:6 <dynamic f-string import>" in text
    assert "skeleton.py:7 <unresolved posebh_hf.nowhere>" in text
    assert len(found) == 6, found


def test_the_verdict_accepts_downward_edges(tmp_path):
    package = _plant(tmp_path, {"training/loop.py": ("from posebh_hf.modeling import heads\nfrom ..skeletons import "
                                                     "skeleton\nimport importlib\n"
                                                     "importlib.import_module('posebh_hf.modeling.heads')\n"),
                                "modeling/__init__.py": "import importlib\nimportlib.import_module(f'{__name__}.heads')\n"})
    assert layering_violations(package) == []


def test_programs_may_not_import_private_modules_or_names(tmp_path):
    program = tmp_path / "app"
    program.mkdir()
    (program / "ok.py").write_text("from posebh_hf.pipeline import PoseBHPipeline\n")
    (program / "bad.py").write_text("from posebh_hf.modeling.modeling_posebh import _is_tracing\n"
                                    "from posebh_hf.hub import _private_module\n"
                                    "import posebh_hf.hub._helpers\n")
    found = private_imports((program,))
    assert len(found) == 3 and all("bad.py" in f for f in found), found
