"""Files and lines per package of src/posebh_hf at a commit against HEAD, and the largest function of each:

    python benchmarks/package_stats.py COMMIT

(the before/after table of docs/layers.md)."""

from __future__ import annotations

import ast
import collections
import subprocess
import sys


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def stats(commit: str) -> tuple[dict[str, list[int]], tuple[str, int]]:
    """{package or top-level module: [files, lines]} and (file:function, lines) of the largest function."""
    per: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    largest = ("", 0)
    for path in _git("ls-tree", "-r", "--name-only", commit, "src/posebh_hf").split():
        if not path.endswith(".py"):
            continue
        text = _git("show", f"{commit}:{path}")
        parts = path.split("/")[2:]
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        per[package][0] += 1
        per[package][1] += len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > largest[1]:
                    largest = (f"{path}:{node.name}", size)
    return per, largest


def main() -> None:
    before, largest_before = stats(sys.argv[1])
    after, largest_after = stats("HEAD")
    print("| package / module | files before | lines before | files after | lines after |")
    print("|---|---|---|---|---|")
    for key in sorted(set(before) | set(after)):
        files_b, lines_b = before.get(key, [0, 0])
        files_a, lines_a = after.get(key, [0, 0])
        print(f"| {key} | {files_b} | {lines_b} | {files_a} | {lines_a} |")
    print(f"largest function before: {largest_before}; after: {largest_after}")


if __name__ == "__main__":
    main()
