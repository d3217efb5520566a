"""Standalone remote code for Hub model repos (`trust_remote_code=True` without `posebh_hf` installed).

transformers' `register_for_auto_class` copies the files that define the config/model classes, but ours live in a
package (`configuration_posebh` -> `skeletons/`, `modeling/` -> several modules, `ops/`), and a Hub repo holds flat
files only. So at push time we *generate* flat copies of exactly the modules the two classes need:

  configuration_posebh.py   posebh_hf/configuration_posebh.py
  modeling_posebh.py        posebh_hf/modeling/modeling_posebh.py
  posebh_<path>.py          every other posebh_hf module they import, e.g. posebh_modeling_prototypes.py,
                            posebh_skeletons.py (a package's __init__), posebh_ops_similarity.py, and
                            posebh_pipeline_task.py (the `keypoint-detection` pipeline, named in config.json's
                            `custom_pipelines`, so `pipeline(..., trust_remote_code=True)` works too)

Each file is its module's source, unchanged except that every import of posebh_hf (`from ..ops.similarity import
A as B`, `from posebh_hf.skeletons import S`) is rewritten to the flat sibling (`from .posebh_ops_similarity import A
as B`), which transformers' dynamic-module loader follows and downloads. Modules keep their own namespaces, so
nothing can shadow anything. Refused (a `RemoteCodeError` at generation time, so a refactor that breaks the remote
code fails the tests, not the user): `import posebh_hf...` and `from . import module` (module objects), and imports
from the package root. There is one source of truth: the package itself.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..atomic_files import write_text_atomically

__all__ = ["CONFIG_MODULE", "MODEL_MODULE", "RemoteCodeError", "auto_map", "build_remote_code", "custom_pipelines",
           "write_remote_code"]

PACKAGE = "posebh_hf"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONFIG_MODULE = "configuration_posebh"
MODEL_MODULE = "modeling_posebh"
CONFIG_ROOT = "configuration_posebh"  # module paths relative to the package
MODEL_ROOT = "modeling.modeling_posebh"
PIPELINE_ROOT = "pipeline_task"
PIPELINE_CLASS = "KeypointDetectionPipeline"
CONFIG_CLASS = "PoseBHConfig"
MODEL_CLASS = "PoseBHForPoseEstimation"
AUTO_CLASSES = ("AutoModel", "AutoModelForPoseEstimation")


class RemoteCodeError(RuntimeError):
    """The package sources cannot be turned into remote code (a bug to fix in the package, not user input)."""


def _module_path(name: str) -> Path:
    base = PACKAGE_DIR.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    raise RemoteCodeError(f"cannot find module {PACKAGE}.{name} under {PACKAGE_DIR}")


def flat_name(module: str) -> str:
    """The repo file (without .py) that holds package module `module` ("modeling.prototypes")."""
    if module == CONFIG_ROOT:
        return CONFIG_MODULE
    if module == MODEL_ROOT:
        return MODEL_MODULE
    return "posebh_" + module.replace(".", "_")


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The package-relative module an import refers to ("" = the package root), or None for external imports."""
    if node.level == 0:
        if node.module == PACKAGE:
            return ""
        if node.module and node.module.startswith(PACKAGE + "."):
            return node.module[len(PACKAGE) + 1:]
        return None
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_submodule(package: str, name: str) -> bool:
    base = PACKAGE_DIR.joinpath(*package.split("."), name)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _rewrite(module: str) -> tuple[str, list[str]]:
    """The flat-file source of `module` and the package modules it imports."""
    path = _module_path(module)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    is_package = path.name == "__init__.py"
    edits: list[tuple[int, int, int, int, str]] = []
    deps: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == PACKAGE or a.name.startswith(PACKAGE + ".")
                                                for a in node.names):
            raise RemoteCodeError(f"{path}:{node.lineno}: `import {PACKAGE}...` binds a module object; import "
                                  "names with `from ... import name` instead")
        if not isinstance(node, ast.ImportFrom):
            continue
        target = _resolve(node, module, is_package)
        if target is None:
            continue
        for alias in node.names:
            if _is_submodule(target, alias.name):
                raise RemoteCodeError(f"{path}:{node.lineno}: `from ... import {alias.name}` imports a module "
                                      "object; import its names")
        if target == "":
            raise RemoteCodeError(f"{path}:{node.lineno}: imports from the {PACKAGE} package root, which pulls in "
                                  "every layer; import from the defining module instead")
        names = ", ".join(a.name if a.asname is None else f"{a.name} as {a.asname}" for a in node.names)
        edits.append((node.lineno, node.col_offset, node.end_lineno or node.lineno, node.end_col_offset or 0,
                      f"from .{flat_name(target)} import {names}"))
        if target not in deps:
            deps.append(target)
    lines = source.splitlines(keepends=True)
    for line, col, end_line, end_col, text in sorted(edits, reverse=True):
        head, tail = lines[line - 1][:col], lines[end_line - 1][end_col:]
        lines[line - 1: end_line] = [head + text + tail]
    return "".join(lines), deps


def _closure(roots: Iterable[str]) -> dict[str, tuple[str, list[str]]]:
    """{module: (flat source, deps)} for `roots` and every package module they import, transitively."""
    out: dict[str, tuple[str, list[str]]] = {}
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in out:
            continue
        out[module] = _rewrite(module)
        todo.extend(out[module][1])
    return out


def _header(module: str) -> str:
    from ..version import __version__

    return (f"# Generated from {PACKAGE}.{module} ({PACKAGE} {__version__}) for `trust_remote_code=True` loading; only\n"
            f"# its {PACKAGE} imports were rewritten to the sibling files of this repo. Do not edit: regenerate with\n"
            f"# {PACKAGE}.hub.remote_code.write_remote_code. Needs torch, transformers>=5.10,<6 and numpy.\n")


def build_remote_code() -> dict[str, str]:
    """{file name: source} of the remote-code modules, generated from the package sources."""
    modules = _closure([CONFIG_ROOT, MODEL_ROOT, PIPELINE_ROOT])
    files = {}
    for module, (source, _) in sorted(modules.items()):
        files[f"{flat_name(module)}.py"] = _header(module) + source
    for filename, cls in ((f"{CONFIG_MODULE}.py", CONFIG_CLASS), (f"{MODEL_MODULE}.py", MODEL_CLASS),
                          (f"{flat_name(PIPELINE_ROOT)}.py", PIPELINE_CLASS)):
        if not re.search(rf"^class {cls}\b", files[filename], flags=re.MULTILINE):
            raise RemoteCodeError(f"{cls} is not defined in {filename}")
    return files


def auto_map() -> dict[str, str]:
    """The `auto_map` entry of config.json that points the Auto classes at the generated modules."""
    mapping = {"AutoConfig": f"{CONFIG_MODULE}.{CONFIG_CLASS}"}
    mapping.update({auto: f"{MODEL_MODULE}.{MODEL_CLASS}" for auto in AUTO_CLASSES})
    return mapping


def custom_pipelines() -> dict[str, dict[str, object]]:
    """The `custom_pipelines` entry of config.json: transformers' `pipeline(task, model=repo, trust_remote_code=True)`
    loads the task's class from the repo's generated pipeline file (the installed package ignores it)."""
    from ..pipeline_task import TASK  # noqa: PLC0415 - the task name the package registers (imports transformers)

    return {TASK: {"impl": f"{flat_name(PIPELINE_ROOT)}.{PIPELINE_CLASS}", "pt": ["AutoModelForPoseEstimation"],
                   "tf": [], "type": "image"}}


def write_remote_code(folder: str | os.PathLike[str], files: Iterable[tuple[str, str]] | None = None) -> list[Path]:
    """Write the remote-code modules into a saved model folder and add `auto_map` and `custom_pipelines` to its
    config.json."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} does not exist; call save_pretrained(folder) first")
    written = []
    for filename, source in (files if files is not None else build_remote_code().items()):
        written.append(write_text_atomically(folder / filename, source))
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = auto_map()
    config["custom_pipelines"] = custom_pipelines()
    write_text_atomically(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return written
