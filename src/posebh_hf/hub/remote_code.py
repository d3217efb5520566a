"""Standalone remote code for Hub model repos (`trust_remote_code=True` without `posebh_hf` installed).

transformers' `register_for_auto_class` copies the files that define the config/model classes, but ours live in a
package with relative imports (`configuration_posebh` -> `skeletons/`, `modeling/` -> six modules), which a Hub repo
cannot hold. Instead we *generate* two flat modules from the installed sources at push time:

  configuration_posebh.py   the config module and everything it imports from posebh_hf (skeletons)
  modeling_posebh.py        the model module and its posebh_hf imports, minus what the config file already has,
                            which it imports with `from .configuration_posebh import ...`

The flattener follows `from .x import ...` / `from posebh_hf.x import ...` statements, orders modules dependencies
first, drops the internal imports and `__all__`, and concatenates the rest. It refuses what it cannot flatten
faithfully (two modules defining the same top-level name, module-object imports, internal imports inside functions),
so a refactor that breaks the remote code fails at generation time, and the fresh-process test loads the result.
There is one source of truth: the package itself.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CONFIG_MODULE", "MODEL_MODULE", "RemoteCodeError", "build_remote_code", "write_remote_code"]

PACKAGE = "posebh_hf"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONFIG_MODULE = "configuration_posebh"
MODEL_MODULE = "modeling_posebh"
CONFIG_ROOT = "configuration_posebh"  # module paths relative to the package
MODEL_ROOT = "modeling.modeling_posebh"
CONFIG_CLASS = "PoseBHConfig"
MODEL_CLASS = "PoseBHForPoseEstimation"
AUTO_CLASSES = ("AutoModel", "AutoModelForPoseEstimation")


class RemoteCodeError(RuntimeError):
    """The package sources cannot be flattened into remote code (a bug to fix in the package, not user input)."""


@dataclass
class _Module:
    name: str  # dotted, relative to the package ("modeling.heads")
    path: Path
    deps: list[str] = field(default_factory=list)  # internal modules it imports from
    imported: list[tuple[str, str, str]] = field(default_factory=list)  # (module, name, alias)
    external: list[str] = field(default_factory=list)  # import statements kept verbatim
    chunks: list[tuple[frozenset[str], str]] = field(default_factory=list)  # (names defined, source text)

    @property
    def defined(self) -> set[str]:
        return {name for names, _ in self.chunks for name in names}


def _module_path(name: str) -> Path:
    base = PACKAGE_DIR.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    raise RemoteCodeError(f"cannot find module {PACKAGE}.{name} under {PACKAGE_DIR}")


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The package-relative module an import refers to, or None for external imports."""
    if node.level == 0:
        if node.module == PACKAGE:
            return ""
        if node.module and node.module.startswith(PACKAGE + "."):
            return node.module[len(PACKAGE) + 1:]
        return None
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_internal_import(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name == PACKAGE or a.name.startswith(PACKAGE + ".") for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or bool(node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")))
    return False


def _defined_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _parse(name: str) -> _Module:
    path = _module_path(name)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    is_package = path.name == "__init__.py"
    mod = _Module(name, path)
    top_level = set(map(id, tree.body))
    for node in ast.walk(tree):  # internal imports anywhere but the top level cannot be flattened
        if _is_internal_import(node) and id(node) not in top_level and not _in_type_checking(tree, node):
            raise RemoteCodeError(f"{path}:{node.lineno}: an import of {PACKAGE} inside a function or block; "
                                  "use importlib.import_module(...) for lazy imports so remote code can be generated")
    previous_end = 0
    for index, node in enumerate(tree.body):
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
        segment = "".join(lines[previous_end: node.end_lineno])
        previous_end = node.end_lineno or previous_end
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # module docstring
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if _is_type_checking_block(node):
            continue  # typing-only imports: annotations are strings (`from __future__ import annotations`)
        if isinstance(node, ast.Assign) and _defined_names(node) == {"__all__"}:
            continue
        if isinstance(node, ast.Import):
            if _is_internal_import(node):
                raise RemoteCodeError(f"{path}:{node.lineno}: `import {PACKAGE}...` binds a module object; "
                                      "import names with `from ... import name` instead")
            mod.external.append("".join(lines[start: node.end_lineno]).strip())
            continue
        if isinstance(node, ast.ImportFrom):
            target = _resolve(node, name, is_package)
            if target is None:
                mod.external.append("".join(lines[start: node.end_lineno]).strip())
                continue
            for alias in node.names:
                if target == "" or _is_submodule(target, alias.name):
                    raise RemoteCodeError(f"{path}:{node.lineno}: `from {'.' * node.level}{node.module or ''} "
                                          f"import {alias.name}` imports a module object; import its names")
                mod.imported.append((target, alias.name, alias.asname or alias.name))
            if target not in mod.deps:
                mod.deps.append(target)
            continue
        mod.chunks.append((frozenset(_defined_names(node)), segment))
    return mod


def _is_submodule(package: str, name: str) -> bool:
    base = PACKAGE_DIR.joinpath(*package.split("."), name)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_type_checking_block(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" \
        and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body) and not node.orelse


def _in_type_checking(tree: ast.Module, target: ast.AST) -> bool:
    return any(_is_type_checking_block(n) and target in n.body for n in tree.body)


def _closure(root: str) -> list[_Module]:
    """`root` and every internal module it imports from, dependencies first."""
    order: list[_Module] = []
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            raise RemoteCodeError(f"import cycle through {PACKAGE}.{name}")
        state[name] = "active"
        mod = _parse(name)
        for dep in mod.deps:
            visit(dep)
        state[name] = "done"
        order.append(mod)

    visit(root)
    return order


def _flatten(modules: list[_Module], provided: dict[str, str], header: str) -> tuple[str, dict[str, str]]:
    """Concatenate `modules`; names they import from modules in `provided` (name -> file) come from that file.

    Returns the source and {defined name: module name} for the names this file defines.
    """
    owners: dict[str, str] = {}
    sources: dict[str, str] = {}
    bodies: dict[str, str] = {}
    for mod in modules:
        kept = []
        for names, text in mod.chunks:
            clashes = [n for n in names if n in owners]
            if clashes and all(sources[n] == text.strip() for n in clashes) and set(clashes) == set(names):
                continue  # the same helper, word for word, in two modules: keep the first copy
            for name in clashes:
                raise RemoteCodeError(f"top-level name {name!r} is defined differently in {PACKAGE}.{owners[name]} "
                                      f"and {PACKAGE}.{mod.name}; flattening would let one shadow the other")
            for name in names:
                owners[name], sources[name] = mod.name, text.strip()
            kept.append(text)
        bodies[mod.name] = "".join(kept).strip("\n") + "\n"
    names_here = {m.name for m in modules}
    external: list[str] = []
    from_sibling: dict[str, list[str]] = {}
    aliases: list[str] = []
    for mod in modules:
        for statement in mod.external:
            if statement not in external:
                external.append(statement)
        for target, name, alias in mod.imported:
            if target in names_here:
                if alias != name:
                    aliases.append(f"{alias} = {name}")
                continue
            sibling = provided.get(name)
            if sibling is None:
                raise RemoteCodeError(f"{PACKAGE}.{mod.name} imports {name!r} from {PACKAGE}.{target}, which is not "
                                      "part of the generated remote code")
            entry = name if alias == name else f"{name} as {alias}"
            if entry not in from_sibling.setdefault(sibling, []):
                from_sibling[sibling].append(entry)
    parts = [header, "from __future__ import annotations\n", "\n".join(external) + "\n"]
    for sibling, names in sorted(from_sibling.items()):
        parts.append(f"from .{sibling} import {', '.join(sorted(names))}\n")
    for mod in modules:
        parts.append(f"\n# {'-' * 40} from {PACKAGE}.{mod.name}\n\n{bodies[mod.name]}")
    if aliases:
        parts.append("\n" + "\n".join(dict.fromkeys(aliases)) + "\n")
    return "\n".join(parts), owners


def _header(kind: str) -> str:
    from .. import __version__

    return (f'"""PoseBH {kind}, generated from posebh_hf {__version__} for `trust_remote_code=True` loading.\n\n'
            "Do not edit: regenerate with `posebh_hf.hub.remote_code.write_remote_code`. Needs torch, transformers "
            '(>=5.10,<6), huggingface_hub and numpy; posebh_hf itself is not needed.\n"""\n')


def build_remote_code() -> dict[str, str]:
    """{file name: source} of the two remote-code modules, generated from the package sources."""
    config_modules = _closure(CONFIG_ROOT)
    config_source, config_names = _flatten(config_modules, {}, _header("configuration"))
    config_module_names = {m.name for m in config_modules}
    model_modules = [m for m in _closure(MODEL_ROOT) if m.name not in config_module_names]
    provided = dict.fromkeys(config_names, CONFIG_MODULE)
    model_source, model_names = _flatten(model_modules, provided, _header("model"))
    for required, names in ((CONFIG_CLASS, config_names), (MODEL_CLASS, model_names)):
        if required not in names:
            raise RemoteCodeError(f"{required} is not defined by the generated remote code")
    return {f"{CONFIG_MODULE}.py": config_source, f"{MODEL_MODULE}.py": model_source}


def auto_map() -> dict[str, str]:
    """The `auto_map` entry of config.json that points the Auto classes at the generated modules."""
    mapping = {"AutoConfig": f"{CONFIG_MODULE}.{CONFIG_CLASS}"}
    mapping.update({auto: f"{MODEL_MODULE}.{MODEL_CLASS}" for auto in AUTO_CLASSES})
    return mapping


def write_remote_code(folder: str | os.PathLike[str], files: Iterable[tuple[str, str]] | None = None) -> list[Path]:
    """Write the remote-code modules into a saved model folder and add `auto_map` to its config.json."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} does not exist; call save_pretrained(folder) first")
    written = []
    for filename, source in (files if files is not None else build_remote_code().items()):
        path = folder / filename
        tmp = path.with_name(f".{filename}.tmp")
        tmp.write_text(source, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = auto_map()
    tmp = config_path.with_name(".config.json.tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, config_path)
    return written
