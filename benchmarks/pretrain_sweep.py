"""Short accuracy sweep of the pretraining architecture at an equal, small CPU budget (docs/mdt_mini.md, section 1).

Each candidate trains from random weights with `configs/mdt_mini/pretrain.yaml` (the five mdt_mini skeletons, the
7961 LSPe people, heads routed to their own samples) for a number of steps that gives every candidate about the same
wall time on these cores (steps in inverse proportion to the per-step cost measured by `benchmarks/head_routing.py`),
then scores the val splits (every instance, GT-box crops, no flip test). The schedule is pretrain.yaml's, compressed:
warm-up over the first 10 %, x0.1 at 80 % and 90 %.

    python benchmarks/pretrain_sweep.py run              # every candidate, one after the other
    python benchmarks/pretrain_sweep.py run --only 128x96
    python benchmarks/pretrain_sweep.py table            # prints the table, rewrites it in docs/mdt_mini.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mdt_mini_study import _write_atomic, machine, parse_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "mdt_mini" / "pretrain.yaml"
RUNS = ROOT / "outputs" / "mdt_mini" / "sweep"
DOC = ROOT / "docs" / "mdt_mini.md"
BEGIN, END = "<!-- sweep-table:begin -->", "<!-- sweep-table:end -->"
DATASETS = ("lspe", "coco_mini", "bee", "mirror_mouse", "dlc_openfield")
# name -> (input H x W, steps). The steps keep CPU time equal: routed simple-head step costs of head_routing.py on
# the quiet Xeon VM were 0.45 (128 x 96), 0.88 (192 x 144, the chosen model) and 1.50 CPU s (256 x 192).
CANDIDATES: dict[str, tuple[tuple[int, int], int]] = {
    "128x96": ((128, 96), 1170),
    "192x144": ((192, 144), 600),
    "256x192": ((256, 192), 350),
}


def overrides(name: str, seed: int) -> list[str]:
    """Config overrides for candidate `name`: input and heatmap size, the compressed schedule, no checkpoints."""
    (height, width), steps = CANDIDATES[name]
    per_epoch = -(-steps // 10)
    return [f"seed={seed}", f"output_dir={RUNS / name}", f"model.config_overrides.image_size=[{height}, {width}]",
            f"data.augment.input_size=[{width}, {height}]", f"data.augment.heatmap_size=[{width // 4}, {height // 4}]",
            "schedule.epochs=10", f"schedule.steps_per_epoch={per_epoch}", f"schedule.warmup_steps={per_epoch}",
            "schedule.lr_decay_epochs=[8, 9]", "eval.every_epochs=null", "eval.at_end=true",
            "checkpoint.every_steps=null", "logging.every_steps=100"]


def run_candidate(name: str, seed: int = 0) -> dict[str, Any]:
    import torch

    from posebh_hf.training import Trainer, load_train_config

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    cfg = load_train_config(CONFIG, overrides(name, seed))
    t0 = time.perf_counter()
    result = Trainer(cfg).train()
    metrics = parse_metrics(result.evaluations[-1] if result.evaluations else {})
    data = {"candidate": name, "seed": seed, "steps": result.step, "wall_s": time.perf_counter() - t0,
            "metrics": metrics, "machine": machine(), "command": " ".join([sys.executable, *sys.argv])}
    _write_atomic(RUNS / name / "result.json", json.dumps(data, indent=1))
    return data


def render_table() -> str:
    lines = ["| input H x W | steps (batch 16) | wall min | " + " | ".join(DATASETS) + " | mean (5 heads) |",
             "|---|---|---|" + "---|" * (len(DATASETS) + 1)]
    for name in CANDIDATES:
        path = RUNS / name / "result.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        pcks = [100 * data["metrics"].get(d, {}).get("pck", float("nan")) for d in DATASETS]
        (height, width), _ = CANDIDATES[name]
        lines.append(f"| {height} x {width} | {data['steps']} | {data['wall_s'] / 60:.1f} | "
                     + " | ".join(f"{v:.1f}" for v in pcks) + f" | {sum(pcks) / len(pcks):.1f} |")
    return "\n".join(lines)


def write_doc_table(table: str, doc: Path = DOC) -> bool:
    """Replace the sweep table between the markers of `doc`; False (doc untouched) when the markers are absent."""
    text = doc.read_text() if doc.is_file() else ""
    if BEGIN not in text or END not in text:
        return False
    _write_atomic(doc, text[:text.index(BEGIN)] + f"{BEGIN}\n{table}\n{END}" + text[text.index(END) + len(END):])
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="train and score the candidates")
    p.add_argument("--only", choices=list(CANDIDATES), nargs="*")
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("table", help="print the markdown table of the stored results and rewrite it in docs/mdt_mini.md")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        for name in args.only or CANDIDATES:
            data = run_candidate(name, args.seed)
            print(name, json.dumps({d: round(100 * m["pck"], 1) for d, m in data["metrics"].items()}), flush=True)
    else:
        table = render_table()
        print(table)
        if not write_doc_table(table):
            print(f"(no {BEGIN} block in {DOC}: the table was only printed)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # gloo may abort during interpreter shutdown on CPU (hf_notes §10)
