"""The mdt_mini study (issue 9): single-dataset models, the multi-head baseline, + prototypes, + prototypes + CSS.

Every run trains from `configs/mdt_mini/<variant>.yaml` on the train splits of ../shared/data/mdt_mini/crops and is
scored on the val splits (every instance, GT-box crops, no flip test): PCK@0.2 of the keypoints' tight box and an
OKS AP (pycocotools; COCO sigmas for coco_mini, uniform 0.05 for the custom skeletons; area = the tight box).

Commands (from the repository root; 1 torch thread per run, `--jobs` runs side by side):
    python benchmarks/mdt_mini_study.py run --jobs 2 --seeds 0 1 2     # trains what is missing, then `table`
    python benchmarks/mdt_mini_study.py table                          # results -> docs/mdt_mini.md (table block)
    python benchmarks/mdt_mini_study.py analyze                        # prototype / CSS statistics of the runs
    python benchmarks/mdt_mini_study.py trainval                       # train+val JSONs for the default model
One run by hand (what `run` executes, plus a result.json with wall times and the loss history):
    python benchmarks/mdt_mini_study.py train-one --config configs/mdt_mini/multihead.yaml --seed 0 \
        --out outputs/mdt_mini/runs/multihead_s0 [key=value ...]
which trains exactly like `python scripts/train.py --config ... seed=0 output_dir=...`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machine_info import cpu_name

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "mdt_mini"
RUNS = ROOT / "outputs" / "mdt_mini" / "runs"
DOC = ROOT / "docs" / "mdt_mini.md"
SHARED_CROPS = ROOT.parent / "shared" / "data" / "mdt_mini" / "crops"
DATASETS = ("lspe", "coco_mini", "bee", "mirror_mouse", "dlc_openfield")
MULTI = ("multihead", "prototypes", "prototypes_css")
LABELS = {"mean_pose": "mean training pose (no model)", "single": "(a) single-dataset", "multihead": "(b) multi-head baseline",
          "prototypes": "(c) + prototypes", "prototypes_css": "(d) + prototypes + CSS"}
METRICS = ("pck", "ap")
BEGIN, END = "<!-- study-table:begin -->", "<!-- study-table:end -->"


# ----------------------------------------------------------------------------------------------- aggregation
@dataclass(frozen=True)
class RunResult:
    """One finished run: variant (`single` for the single-dataset models), seed, metrics per dataset, wall times."""

    variant: str
    seed: int
    metrics: dict[str, dict[str, float]]  # dataset -> {"pck": .., "ap": .., "epe": .., "instances": ..}
    train_s: float
    total_s: float
    config: str = ""


def parse_metrics(flat: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{"val/<dataset>/<metric>": v}`` (the trainer's evaluation) -> ``{dataset: {metric: v}}``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val":
            out.setdefault(parts[1], {})[parts[2]] = float(value)
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; 0 for one value) and count of the finite values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0, 1
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var), len(vals)


def aggregate(results: Sequence[RunResult]) -> dict[str, dict[str, dict[str, tuple[float, float, int]]]]:
    """variant -> dataset -> metric -> (mean, std, n) over seeds; datasets missing from a run are skipped."""
    grouped: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in results:
        for dataset, metrics in r.metrics.items():
            for metric, value in metrics.items():
                grouped.setdefault(r.variant, {}).setdefault(dataset, {}).setdefault(metric, []).append(value)
    return {v: {d: {m: mean_std(vals) for m, vals in ms.items()} for d, ms in ds.items()} for v, ds in grouped.items()}


def fmt(stat: tuple[float, float, int] | None, scale: float = 100.0) -> str:
    """``"61.2 ± 1.3"`` (x100, one decimal; no ± for a single seed; "–" when absent)."""
    if stat is None or stat[2] == 0:
        return "–"
    mean, std, n = stat
    return f"{mean * scale:.1f}" if n == 1 else f"{mean * scale:.1f} ± {std * scale:.1f}"


def render_table(results: Sequence[RunResult], datasets: Sequence[str] = DATASETS) -> str:
    """Markdown: one row per variant, PCK@0.2 and OKS AP (x100, mean ± std over seeds) per dataset, + the mean."""
    agg = aggregate(results)
    seeds = {v: sorted({r.seed for r in results if r.variant == v}) for v in agg}
    head = "| model | seeds | " + " | ".join(f"{d} PCK | {d} AP" for d in datasets) + " | mean PCK | mean AP |"
    rule = "|" + "---|" * (2 + 2 * len(datasets) + 2)
    lines = [head, rule]
    for variant in ("mean_pose", "single", *MULTI, *sorted(set(agg) - {"mean_pose", "single", *MULTI})):
        if variant not in agg:
            continue
        cells = [LABELS.get(variant, variant), ",".join(str(s) for s in seeds[variant])]
        for d in datasets:
            for m in METRICS:
                cells.append(fmt(agg[variant].get(d, {}).get(m)))
        for m in METRICS:  # the mean over datasets, per seed, then mean ± std over seeds
            cells.append(fmt(_mean_over_datasets(results, variant, m, datasets)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_over_datasets(results: Sequence[RunResult], variant: str, metric: str,
                        datasets: Sequence[str]) -> tuple[float, float, int] | None:
    if variant in ("single", "mean_pose"):  # separate models: average the per-dataset means
        agg = aggregate([r for r in results if r.variant == variant]).get(variant, {})
        vals = [agg[d][metric][0] for d in datasets if d in agg and metric in agg[d]]
        return (sum(vals) / len(vals), 0.0, 1) if len(vals) == len(datasets) else None
    per_seed = []
    for r in results:
        if r.variant == variant and all(d in r.metrics and metric in r.metrics[d] for d in datasets):
            per_seed.append(sum(r.metrics[d][metric] for d in datasets) / len(datasets))
    return mean_std(per_seed) if per_seed else None


def render_times(results: Sequence[RunResult]) -> str:
    """Markdown table of every run's wall time (training, and training + evaluation + saving)."""
    lines = ["| run | seed | train (min) | total (min) |", "|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r.variant, r.config, r.seed)):
        lines.append(f"| {r.config or r.variant} | {r.seed} | {r.train_s / 60:.1f} | {r.total_s / 60:.1f} |")
    return "\n".join(lines)


def load_results(runs: Path = RUNS) -> list[RunResult]:
    """Every ``<runs>/*/result.json``."""
    out = []
    for path in sorted(runs.glob("*/result.json")):
        data = json.loads(path.read_text())
        out.append(RunResult(data["variant"], int(data["seed"]), data["metrics"], float(data["train_s"]),
                             float(data["total_s"]), data.get("config", "")))
    return out


def write_table_block(doc: Path, block: str) -> None:
    """Replace the text between the BEGIN/END markers of `doc` (or append the block), atomically."""
    text = doc.read_text() if doc.is_file() else "# mdt_mini study\n\n"
    new = f"{BEGIN}\n{block}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + new + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    _write_atomic(doc, text)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def machine() -> str:
    cpu = cpu_name(fallback=platform.machine())
    return f"{cpu}, {os.cpu_count()} cores visible, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}"


# ----------------------------------------------------------------------------------------------- running
def variant_of(config: Path) -> str:
    return "single" if config.stem.startswith("single_") else config.stem


def train_one(config: Path, seed: int, out: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """Train one run in this process (as scripts/train.py does) and write ``<out>/result.json``."""
    import torch

    from posebh_hf.training import Trainer, load_train_config

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = load_train_config(config, [f"seed={seed}", f"output_dir={out}", *overrides])
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    result = trainer.train()
    total = time.perf_counter() - t0
    train_s = sum(h.get("time/step_s", 0.0) * cfg.logging.every_steps for h in result.history)
    flat = result.evaluations[-1] if result.evaluations else {}
    data = {"variant": variant_of(config), "config": config.stem, "seed": seed, "metrics": parse_metrics(flat),
            "train_s": train_s, "total_s": total, "steps": result.step, "machine": machine(),
            "command": " ".join([sys.executable, *sys.argv]), "overrides": list(overrides),
            "history": result.history, "final_model": str(result.final_model)}
    _write_atomic(out / "result.json", json.dumps(data, indent=1))
    return data


def prepare_cache(configs: Sequence[Path]) -> None:
    """Convert every JSON source once, sequentially, so parallel runs only read the shared cache."""
    from posebh_hf.training import load_train_config
    from posebh_hf.training.train_data import load_source

    seen = set()
    for config in configs:
        cfg = load_train_config(config)
        cache = Path(cfg.data.cache_dir or Path(cfg.output_dir) / "data_cache")
        for spec in cfg.data.datasets:
            for split in ("train", "val"):
                key = (spec.name, split, spec.train if split == "train" else spec.val, str(cache))
                if key in seen or (split == "val" and not spec.val):
                    continue
                seen.add(key)
                load_source(spec, split, cache)


def job_list(seeds: Sequence[int], only: Sequence[str] | None) -> list[tuple[Path, int]]:
    """The three multi-dataset variants seed by seed, then the single-dataset runs (first seed only)."""
    jobs = [(CONFIGS / f"{v}.yaml", s) for s in seeds for v in MULTI]
    jobs += [(CONFIGS / f"single_{d}.yaml", seeds[0]) for d in DATASETS]
    if only:
        jobs = [j for j in jobs if j[0].stem in only]
    return jobs


def run_all(seeds: Sequence[int], jobs: int, only: Sequence[str] | None, overrides: Sequence[str]) -> None:
    todo = [(c, s) for c, s in job_list(seeds, only) if not (RUNS / f"{c.stem}_s{s}" / "result.json").is_file()]
    prepare_cache(sorted({c for c, _ in todo}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    running: list[tuple[subprocess.Popen, str, float]] = []
    while todo or running:
        while todo and len(running) < jobs:
            config, seed = todo.pop(0)
            out = RUNS / f"{config.stem}_s{seed}"
            out.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "train-one", "--config",
                   str(config.relative_to(ROOT)), "--seed", str(seed), "--out", str(out.relative_to(ROOT)),
                   *overrides]
            log = open(out / "train.log", "w")  # noqa: SIM115 - closed with the process
            running.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                            out.name, time.time()))
            print(f"[{time.strftime('%H:%M:%S')}] start {out.name}: {' '.join(cmd[1:])}", flush=True)
        time.sleep(5)
        for item in list(running):
            proc, name, start = item
            if proc.poll() is not None:
                running.remove(item)
                print(f"[{time.strftime('%H:%M:%S')}] done {name} rc={proc.returncode} "
                      f"({(time.time() - start) / 60:.1f} min)", flush=True)
    write_doc_table()


def write_doc_table() -> None:
    results = load_results()
    if not results:
        print("no results yet")
        return
    table = render_table([*mean_pose_baseline(), *results])
    block = (f"Val splits, x100, mean ± std over seeds (single-dataset models: one seed). Machine: "
             f"{json.loads(next(RUNS.glob('*/result.json')).read_text())['machine']}.\n\n"
             f"{table}\n\nWall time per run (in-process; the process wall times printed by `run` add "
             f"0.5–1.5 min of imports and start-up):\n\n{render_times(results)}")
    write_table_block(DOC, block)
    print(table)


def mean_pose_baseline(shared: Path = SHARED_CROPS) -> list[RunResult]:
    """Chance level: predict every val instance as the mean training pose (crop pixels), scored like the runs.

    The val crops are the padded boxes themselves (mdt_mini's crop rule), so the trainer's validation crop of an
    instance is the whole crop image and crop-pixel keypoints compare directly (PCK and OKS are scale-free).
    """
    import numpy as np

    from posebh_hf.skeletons import Skeleton, get_skeleton
    from posebh_hf.training.validation import score_predictions

    metrics = {}
    for name in DATASETS:
        arrays = {}
        for split in ("train", "val"):
            data = json.loads((shared / name / f"{name}_{split}.json").read_text())
            kps = np.asarray([a["keypoints"] for a in data["annotations"]], np.float64).reshape(
                len(data["annotations"]), -1, 3)
            kps[..., 2] = (kps[..., 2] > 0).astype(np.float64)
            arrays[split] = kps
        train, val = arrays["train"], arrays["val"]
        vis = train[..., 2:3]
        mean = (train[..., :2] * vis).sum(0) / np.maximum(vis.sum(0), 1)  # [K, 2]
        skeleton = get_skeleton("coco") if name == "coco_mini" else Skeleton.from_coco_category(data["categories"][0])
        pred = np.repeat(mean[None], len(val), axis=0)
        scores = np.ones(val.shape[:2])
        metrics[name] = score_predictions(pred, scores, val, skeleton, 0.2)
    return [RunResult("mean_pose", 0, metrics, 0.0, 0.0, "mean training pose")]


# ----------------------------------------------------------------------------------------------- analysis
def analyze(runs: Path = RUNS) -> str:
    """Prototype statistics, cross-skeleton nearest keypoints and CSS acceptance of the prototype runs (Markdown)."""
    import numpy as np

    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.visualize.prototype_map import collect_prototypes, keypoint_similarity, nearest_keypoints

    out = []
    for path in sorted(runs.glob("prototypes*_s*/result.json")):
        data = json.loads(path.read_text())
        model = PoseBHForPoseEstimation.from_pretrained(data["final_model"])
        protos = collect_prototypes(model)
        sim = keypoint_similarity(protos.prototypes, protos.prototypes, protos.similarity)
        owners = np.asarray(protos.skeleton_of)
        same = owners[:, None] == owners[None, :]
        off = ~np.eye(len(owners), dtype=bool)
        p = protos.prototypes
        intra = np.einsum("kmd,knd->kmn", p, p)
        m = p.shape[1]
        intra_mean = float(intra[:, ~np.eye(m, dtype=bool)].mean()) if m > 1 else math.nan
        out.append(f"#### {path.parent.name}\n")
        out.append(f"- prototypes: {p.shape[0]} keypoints x M={m}, D={p.shape[2]}; mean |cos| between the M slots "
                   f"of a keypoint {intra_mean:.3f}; mean best-pair similarity between keypoints of the same "
                   f"skeleton {sim[same & off].mean():.3f}, of different skeletons {sim[~same].mean():.3f}")
        rng = np.random.default_rng(0)  # reference: a random unit bank of the same shape (the init distribution)
        rand = rng.normal(size=p.shape)
        rand /= np.linalg.norm(rand, axis=-1, keepdims=True)
        rsim = keypoint_similarity(rand, rand, protos.similarity)
        out.append(f"- the same statistics for a random unit bank of this shape: same skeleton "
                   f"{rsim[same & off].mean():.3f}, different skeletons {rsim[~same].mean():.3f}")
        hist = data.get("history", [])
        drift = [h["proto/drift"] for h in hist if "proto/drift" in h]
        if drift:
            steps = sum(1 for h in hist if "proto/drift" in h)
            n = int(max((h["step"] for h in hist if h.get("stage/update_prototypes") == 1.0), default=0))
            out.append(f"- momentum updates: per-step drift 1 - cos(before, after) logged in {steps} windows, mean "
                       f"{sum(drift) / len(drift):.2e}; with momentum 0.999 a prototype keeps at least 0.999^n of "
                       f"its random init after n updates: n = {n} here, 0.999^{n} = {0.999 ** n:.3f}")
        out.extend(css_summary(hist, list(model.config.dataset_names)))
        last = hist[-1] if hist else {}
        terms = {k: v for k, v in last.items() if k.endswith("loss") or k.startswith("proto/")}
        out.append("- last logged loss terms: " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(terms.items())))
        table = nearest_keypoints(protos, top_k=1)
        pairs = []
        for skel, rows in table.items():
            for name, others in rows.items():
                for other, best in others.items():
                    if best and skel < other:
                        back = table[other][best[0]["keypoint"]][skel][0]["keypoint"]
                        if back == name:  # mutual nearest
                            pairs.append((best[0]["similarity"], f"{skel}.{name} ↔ {other}.{best[0]['keypoint']}"))
        pairs.sort(reverse=True)
        out.append(f"- mutual nearest keypoints across skeletons ({len(pairs)}), strongest first: "
                   + "; ".join(f"{t} ({s:.2f})" for s, t in pairs[:20]) + "\n")
    return "\n".join(out)


def css_summary(history: Sequence[dict[str, float]], names: Sequence[str]) -> list[str]:
    """CSS acceptance from the logged windows (means per step): confident and accepted shares per skeleton."""
    css = [h for h in history if "css_candidates" in h]
    if not css:
        return []
    cand = sum(h["css_candidates"] for h in css)
    acc = sum(h.get("css_accepted", 0.0) for h in css)
    lines = [f"- CSS ({len(css)} logged windows): per step {cand / len(css):.0f} candidate (sample, joint) pairs, "
             f"{acc / len(css):.1f} accepted ({100 * acc / max(cand, 1):.2f} %); mean css_loss "
             f"{sum(h.get('css_loss', 0.0) for h in css) / len(css):.3g}"]
    per = []
    for d, name in enumerate(names):
        c = sum(h.get(f"css_candidates_{d}", 0.0) for h in css)
        conf = sum(h.get(f"css_confident_{d}", 0.0) for h in css)
        a = sum(h.get(f"css_accepted_{d}", 0.0) for h in css)
        per.append(f"{name} confident {100 * conf / max(c, 1):.1f} % / accepted {100 * a / max(c, 1):.2f} %")
    lines.append("  - per skeleton (pseudo labels for skeleton d on other datasets' samples): " + "; ".join(per))
    return lines


def best_variant(results: Sequence[RunResult], datasets: Sequence[str] = DATASETS) -> tuple[str, float]:
    """The multi-dataset variant with the highest mean (over seeds) of the mean val PCK over datasets."""
    scores = {}
    for variant in MULTI:
        stat = _mean_over_datasets(results, variant, "pck", datasets)
        if stat is not None and stat[2] > 0:
            scores[variant] = stat[0]
    if not scores:
        raise ValueError("no finished multi-dataset run to choose from")
    best = max(scores, key=scores.__getitem__)
    return best, scores[best]


# ----------------------------------------------------------------------------------------------- default model data
# COCO image licence ids that allow redistribution of a derived model under Apache-2.0 without NC/ND/SA terms:
# 4 = CC BY 2.0, 7 = no known copyright restrictions, 8 = United States Government Work.
PERMISSIVE_COCO_LICENSES = (4, 7, 8)
TRAINVAL = ROOT / "outputs" / "mdt_mini" / "trainval"
SHARED = ROOT.parent / "shared" / "data" / "mdt_mini"


def merge_splits(train: dict[str, Any], val: dict[str, Any], keep_image: Any = None) -> dict[str, Any]:
    """One COCO-style dict with the images and annotations of both splits (ids must not collide)."""
    ids = {im["id"] for im in train["images"]}
    clash = ids & {im["id"] for im in val["images"]}
    if clash:
        raise ValueError(f"train and val share image ids {sorted(clash)[:5]}")
    images = [im for im in train["images"] + val["images"] if keep_image is None or keep_image(im)]
    kept = {im["id"] for im in images}
    anns = [a for a in train["annotations"] + val["annotations"] if a["image_id"] in kept]
    return {**train, "images": images, "annotations": anns}


def coco_licence_of(shared: Path = SHARED) -> dict[int, int]:
    """COCO image id -> licence id, from the raw coco_mini annotation files."""
    out = {}
    for path in sorted((shared / "raw" / "coco_mini" / "annotations").glob("*.json")):
        for im in json.loads(path.read_text())["images"]:
            out[int(im["id"])] = int(im["license"])
    return out


def write_trainval(shared: Path = SHARED, out: Path = TRAINVAL) -> dict[str, int]:
    """train+val JSONs of the datasets the default model may use (mirror_mouse, dlc_openfield, coco_mini CC BY)."""
    counts = {}
    licences = coco_licence_of(shared)
    for name in ("coco_mini", "mirror_mouse", "dlc_openfield"):
        crops = shared / "crops" / name
        train = json.loads((crops / f"{name}_train.json").read_text())
        val = json.loads((crops / f"{name}_val.json").read_text())
        keep = None
        if name == "coco_mini":
            def keep(im: dict[str, Any]) -> bool:
                return licences.get(int(im["source_image_id"])) in PERMISSIVE_COCO_LICENSES
        merged = merge_splits(train, val, keep)
        merged["info"] = {**merged.get("info", {}), "description": f"mdt_mini {name} train+val"
                          + (" (CC BY images only)" if name == "coco_mini" else "")}
        _write_atomic(out / f"{name}_trainval.json", json.dumps(merged))
        counts[name] = len(merged["annotations"])
    return counts


# ----------------------------------------------------------------------------------------------- default model export
APP_MODEL = ROOT / "app" / "default_model"
CARD = ROOT / "src" / "posebh_hf" / "hub_cards" / "study_default_model_card.md"  # the first (study) default model
DEFAULT_RUN = ROOT / "outputs" / "mdt_mini" / "default_model"
DATA_NOTES = {
    "coco": ("coco_mini, CC BY 2.0 images only", "COCO 2017 person keypoints via GitHub `Obmutescence/COCO-MINI`, "
             "only the images whose Flickr licence is CC BY 2.0 (COCO licence id 4); annotations CC BY 4.0 (COCO "
             "Consortium). Credit: the COCO Consortium and the Flickr authors of those images."),
    "mirror_mouse": ("mirror_mouse train+val", "lightning-pose mirror-mouse example (GitHub "
                     "`paninski-lab/lightning-pose`), MIT licence. Credit: the lightning-pose authors."),
    "dlc_openfield": ("dlc_openfield train+val", "DeepLabCut open-field example (GitHub `DeepLabCut/DeepLabCut`), "
                      "shipped in an LGPL-3.0 repository with no separate data licence. The frames and labels are "
                      "not redistributed here; only weights learned from them are. Credit: the DeepLabCut authors."),
}
EXCLUDED = (
    ("lspe", "no licence stated; LSP Extended is treated as research-only and its images keep their Flickr "
             "copyrights."),
    ("bee", "CC BY-NC-SA 4.0: non-commercial and share-alike terms are incompatible with Apache-2.0 weights."),
    ("coco_mini NC / ND / SA images", "most coco_mini photos are BY-NC(-SA/-ND), BY-ND or BY-SA; they were left out "
                                      "of the default model (they are used in the study, which ships no weights)."),
)


# What `posebh predict` with this model showed on ../shared/data/examples and three mdt_mini crops (looked at by eye;
# the commands and the full description are in docs/mdt_mini.md). Rendered into the card.
OVERLAY_NOTES = (
    "Looked at by eye; commands, distances to the labels and details in `docs/mdt_mini.md`.\n\n"
    "- **People (`coco` head)**: it has learned where human heads are, not limbs. On two people in an unseen "
    "photo (coco_000000442450) and an unseen coco_mini val crop, nose, eyes and ears land on the head (scores "
    "0.3-0.5; on the val crop 26-28 px from the labels in a 192x256 crop). Shoulders to ankles are mostly wrong. On "
    "the left rider of coco_000000214753 (a CC BY photo in its training data) shoulders, elbows and hips sit on the "
    "torso. On bus.jpg, zidane.jpg, astronaut.png and camera.png the few points above 0.3 are scattered.\n"
    "- **Lab mice, frames the model trained on**: on a mirror_mouse frame 7 of 17 keypoints are within 10 px of the "
    "label (tail base, nose, several paws); the obstacle points are far off. On a dlc_openfield frame snout and "
    "left ear are within 4 px, tail base 17 px.\n"
    "- **Cats, dogs (`dlc_openfield` / `mirror_mouse` heads)**: points with scores up to 0.96 scattered over fur and "
    "background. They mean nothing; no head was trained on these animals, and high scores do not mean a good fit.")


def export_default(run: Path = DEFAULT_RUN, out: Path = APP_MODEL) -> Path:
    """fp16 `save_pretrained` of the trained default model + its image processor + card, into `out` (atomically).

    The tensors are stored in float16 (half the size) while config.json keeps ``dtype: float32``, so
    `from_pretrained` casts them back and inference runs in float32 on any CPU.
    """
    import shutil

    from huggingface_hub import ModelCard, ModelCardData

    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.processing_posebh import PoseBHImageProcessor

    data = json.loads((run / "result.json").read_text())
    model = PoseBHForPoseEstimation.from_pretrained(data["final_model"])
    cfg = model.config
    height, width = (int(v) for v in cfg.backbone_config.image_size)
    tmp = Path(tempfile.mkdtemp(prefix=".default_model-", dir=out.parent))
    try:
        model.half().save_pretrained(tmp)
        config_file = tmp / "config.json"
        conf = json.loads(config_file.read_text())
        conf["dtype"] = "float32"
        config_file.write_text(json.dumps(conf, indent=2) + "\n")
        PoseBHImageProcessor(size={"height": height, "width": width},
                             heatmap_size={"height": height // 4, "width": width // 4}).save_pretrained(tmp)
        (tmp / "README.md").write_text(render_default_card(cfg, data, tmp, ModelCard, ModelCardData))
        tmp.chmod(0o755)  # mkdtemp creates 0700; this folder is committed
        for file in tmp.iterdir():
            file.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def render_default_card(cfg: Any, data: dict[str, Any], folder: Path, model_card: Any, card_data_cls: Any) -> str:
    """README.md of app/default_model from src/posebh_hf/hub_cards/default_model_card.md."""
    results = load_results()
    variant = data.get("variant_of_study") or _default_variant()
    agg = aggregate([r for r in results if r.variant == variant]).get(variant, {})
    seeds = sorted({r.seed for r in results if r.variant == variant})
    study_name = {"coco": "coco_mini"}
    const = aggregate(mean_pose_baseline()).get("mean_pose", {})
    metric_rows = [{"dataset": study_name.get(n, n), "pck": fmt(agg.get(study_name.get(n, n), {}).get("pck")),
                    "ap": fmt(agg.get(study_name.get(n, n), {}).get("ap")),
                    "mean_pose": fmt(const.get(study_name.get(n, n), {}).get("pck"))} for n in cfg.dataset_names]
    counts = [len(json.loads((TRAINVAL / f"{study_name.get(n, n)}_trainval.json").read_text())["annotations"])
              for n in cfg.dataset_names if (TRAINVAL / f"{study_name.get(n, n)}_trainval.json").is_file()]
    study_steps = next((json.loads(p.read_text()).get("steps") for p in sorted(RUNS.glob(f"{variant}_s*/result.json"))),
                       None)
    comparison = _comparison_text(agg, const, [study_name.get(n, n) for n in cfg.dataset_names], study_steps)
    val_sizes = ", ".join(f"{study_name.get(n, n)} {int(agg.get(study_name.get(n, n), {}).get('instances', (0,))[0])}"
                          for n in cfg.dataset_names)
    coco = json.loads((TRAINVAL / "coco_mini_trainval.json").read_text())
    size_mb = (folder / "model.safetensors").stat().st_size / 1e6
    import torch

    model_params = sum(int(torch.tensor(s).prod()) for s in _tensor_shapes(folder / "model.safetensors"))
    heads = [{"index": i, "name": n, "num_keypoints": k, "data": DATA_NOTES.get(n, (n,))[0]}
             for i, (n, k) in enumerate(zip(cfg.dataset_names, cfg.num_keypoints, strict=True))]
    card_data = card_data_cls(library_name="posebh_hf", pipeline_tag="keypoint-detection", license="apache-2.0",
                              tags=["posebh", "pose-estimation", "keypoint-detection", "demo", "tiny"],
                              datasets=["mdt_mini"])
    values = {
        "steps": data.get("steps"), "num_prototypes": cfg.num_prototypes, "embed_dim": cfg.embed_dim,
        "similarity": cfg.similarity, "num_layers": cfg.backbone_config.num_hidden_layers,
        "hidden_size": cfg.backbone_config.hidden_size, "num_parameters": f"{model_params / 1e6:.2f} M",
        "file_mb": f"{size_mb:.1f}", "image_width": cfg.backbone_config.image_size[1],
        "image_height": cfg.backbone_config.image_size[0], "heatmap_width": cfg.backbone_config.image_size[1] // 4,
        "heatmap_height": cfg.backbone_config.image_size[0] // 4, "recipe": "configs/mdt_mini/default_model.yaml",
        "variant": LABELS.get(variant, variant), "heads": heads,
        "data_rows": [{"name": n, "text": DATA_NOTES[n][1]} for n in cfg.dataset_names if n in DATA_NOTES],
        "excluded_rows": [{"name": n, "text": t} for n, t in EXCLUDED],
        "metric_rows": metric_rows, "study_seeds": len(seeds), "val_sizes": val_sizes,
        "coco_instances": len(coco["annotations"]), "coco_images": len({im["source_image_id"] for im in coco["images"]}),
        "num_instances": sum(counts), "study_steps": study_steps, "overlay_notes": OVERLAY_NOTES,
        "comparison": comparison,
    }
    card = model_card.from_template(card_data, template_path=str(CARD), **values)
    return str(card).rstrip() + "\n"


def _comparison_text(agg: dict, const: dict, names: Sequence[str], study_steps: int | None) -> str:
    """One sentence: on which datasets the study's mean PCK is above / not above the constant mean pose."""
    above, below = [], []
    for name in names:
        model_pck, const_pck = agg.get(name, {}).get("pck"), const.get(name, {}).get("pck")
        if model_pck is None or const_pck is None:
            continue
        (above if model_pck[0] > const_pck[0] else below).append(name)
    parts = []
    if above:
        parts.append(f"above the constant on {', '.join(above)}")
    if below:
        parts.append(f"**not above it** on {', '.join(below)}")
    return f"At {study_steps} steps the study models of this variant are " + " and ".join(parts) + "." if parts else ""


def _tensor_shapes(path: Path) -> list[list[int]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return [list(fh.get_slice(k).get_shape()) for k in fh.keys()]  # noqa: SIM118 - safe_open has no __iter__


def _default_variant() -> str:
    text = (CONFIGS / "default_model.yaml").read_text()
    for line in text.splitlines():
        if line.startswith("# study variant:"):
            return line.split(":", 1)[1].strip()
    return "prototypes_css"


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="train the missing runs, then write the table")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--only", nargs="*", help="config stems to run (default: all)")
    p.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. schedule.steps_per_epoch=90")
    p = sub.add_parser("train-one", help="one run in this process")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("overrides", nargs="*")
    sub.add_parser("table", help="write the table block of docs/mdt_mini.md from the finished runs")
    sub.add_parser("analyze", help="prototype and CSS statistics of the prototype runs (Markdown on stdout)")
    sub.add_parser("trainval", help="write the default model's train+val JSONs under outputs/mdt_mini/trainval")
    sub.add_parser("best", help="print the best multi-dataset variant (mean val PCK over datasets)")
    sub.add_parser("export-default", help="fp16 default model + card -> app/default_model")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        run_all(args.seeds, args.jobs, args.only, args.overrides)
    elif args.cmd == "train-one":
        data = train_one(args.config, args.seed, args.out, args.overrides)
        print(json.dumps({"metrics": data["metrics"], "train_s": data["train_s"], "total_s": data["total_s"]}))
    elif args.cmd == "table":
        write_doc_table()
    elif args.cmd == "analyze":
        print(analyze())
    elif args.cmd == "trainval":
        print(json.dumps(write_trainval()))
    elif args.cmd == "best":
        print("{} {:.4f}".format(*best_variant(load_results())))
    elif args.cmd == "export-default":
        print(export_default())
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # gloo may abort during interpreter shutdown on CPU (hf_notes §10)
