"""Files and lines per package of src/posebh_hf at a commit against HEAD, and the largest function of each:
    python benchmarks/package_stats.py COMMIT
(docs/layers.md)."""

from __future__ import annotations

import ast
import collections
import subprocess
import sys


def stats(commit):
    files = subprocess.run(["git","ls-tree","-r","--name-only",commit,"src/posebh_hf"],capture_output=True,text=True).stdout.split()
    per = collections.defaultdict(lambda:[0,0]); largest=("",0)
    for f in files:
        if not f.endswith(".py"): continue
        text = subprocess.run(["git","show",f"{commit}:{f}"],capture_output=True,text=True).stdout
        parts = f.split("/")[2:]
        pkg = parts[0] if len(parts)>1 else parts[0].removesuffix(".py")
        per[pkg][0]+=1; per[pkg][1]+=len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node,(ast.FunctionDef,ast.AsyncFunctionDef)):
                n=node.end_lineno-node.lineno+1
                if n>largest[1]: largest=(f"{f}:{node.name}",n)
    return per, largest
a, la = stats(sys.argv[1]); b, lb = stats("HEAD")
print("| package / module | files before | lines before | files after | lines after |"); print("|---|---|---|---|---|")
for k in sorted(set(a)|set(b)):
    fa,la_=a.get(k,[0,0]); fb,lb_=b.get(k,[0,0])
    print(f"| {k} | {fa} | {la_} | {fb} | {lb_} |")
print(f"largest function before: {la}; after: {lb}")
