"""PoseBH tested the way the paper does: fine-tune a converged multi-head model (docs/mdt_mini.md).

Arms, all from `models/mdt_mini_pretrain_merged` (the 35,600-step pretraining: pretrain.yaml, pretrain_continue.yaml,
then pretrain_merged.yaml four times; committed in fp16 by `export-start`) with the same step budget:
(b) `multihead` multi-head fine-tuning, (d) `posebh` the three PoseBH stages, (m) `merged` dataset merging by
keypoint name (`data.datasets[*].keypoint_mapping`). Every run is scored on the val splits (every instance, GT-box
crops, no flip test) per head, plus the cross-skeleton measures of the paper's claim: the coco head on lspe val
crops and the lspe head on coco_mini val crops, each on the joints both skeletons share (by name).

    python benchmarks/mdt_mini_finetune.py run --arm multihead --seed 0     # train + score -> result.json
    python benchmarks/mdt_mini_finetune.py score --model models/mdt_mini_pretrain_merged   # score any model
    python benchmarks/mdt_mini_finetune.py score --model DIR --flip      # the same with the flip test
    python benchmarks/mdt_mini_finetune.py soup --run outputs/mdt_mini/pretrain8 --steps 6800 7200 --out DIR
    python benchmarks/mdt_mini_finetune.py export-start --model outputs/mdt_mini/pretrain6/final   # the arms' start
    python benchmarks/mdt_mini_finetune.py table                            # -> docs/mdt_mini.md table block
    python benchmarks/mdt_mini_finetune.py rank                             # the default model's selection
    python benchmarks/mdt_mini_finetune.py transfer --base DIR --tag posebh --k 5 --seed 0
    python benchmarks/mdt_mini_finetune.py prototypes --model DIR   # PCK from the prototype heatmaps alone + spread
    python benchmarks/mdt_mini_finetune.py export-default --run outputs/mdt_mini/finetune/pretrain7   # app/default_model

`transfer` learns the dlc_reaching skeleton (../shared/data/transfer) from the first k training frames with
`mode: transfer` and scores the 20 test frames with the new head and with the prototypes alone (the pack attached
to the base model, decoded from its prototype heatmaps).
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

import numpy as np
from mdt_mini_study import _tensor_shapes, _write_atomic, fmt, machine, mean_std, parse_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "mdt_mini"
RUNS = ROOT / "outputs" / "mdt_mini" / "finetune"
START_MODEL = ROOT / "models" / "mdt_mini_pretrain_merged"  # every arm's model.init (configs/mdt_mini/finetune_*.yaml)
START = "pretrain6"  # the pretraining run START_MODEL is the fp16 copy of (its score: <runs>/pretrain6/result.json)
DOC = ROOT / "docs" / "mdt_mini.md"
TRANSFER = ROOT.parent / "shared" / "data" / "transfer" / "dlc_reaching" / "crops"
ARMS = ("multihead", "posebh", "merged")
# (d) with the linear embedding head (D = 192) and no prototype-heatmap loss: the transfer base of docs/mdt_mini.md
# section 3 (seventh session); an arm = a config + overrides
ARM_VARIANTS = {"posebh_linear": ("posebh", ("model.config_overrides={embedding_head_type: linear, embed_dim: 192}",
                                             "losses.phm=0.0"))}
ALL_ARMS = (*ARMS, *ARM_VARIANTS)  # what `run --arm` and `transfer --tag` take
LABELS = {START: "pretrained multi-head, 35,600 steps (start of every arm)", "multihead": "(b) multi-head fine-tuning",
          "posebh": "(d) PoseBH (3 stages)", "merged": "(m) dataset merging by keypoint name",
          "posebh_linear": "(d) linear: (d) with the linear embedding head (D = 192), no phm loss"}
DATASETS = ("lspe", "coco_mini", "bee", "mirror_mouse", "dlc_openfield")
CROSS = (("coco_mini", "lspe"), ("lspe", "coco_mini"))  # (head, val crops of)
BEGIN, END = "<!-- finetune-table:begin -->", "<!-- finetune-table:end -->"
T_BEGIN, T_END = "<!-- transfer-table:begin -->", "<!-- transfer-table:end -->"


# ----------------------------------------------------------------------------------------------- scoring
def _val_config(model_dir: Path, config: Path = CONFIGS / "finetune_multihead.yaml") -> Any:
    from posebh_hf.training import load_train_config

    return load_train_config(config, [f"model.init={model_dir}"])


def config_val_sets(cfg: Any, cache_dir: Path, specs: Sequence[Any] | None = None) -> list[Any]:
    """`ValidationSet`s of a training config's datasets (`specs`, default: all), their `val` files read through
    `cache_dir`."""
    from posebh_hf.training.train_data import load_source
    from posebh_hf.training.validation import build_validation_sets

    specs = cfg.data.datasets if specs is None else specs
    sources = [load_source(spec, "val", Path(cache_dir)) for spec in specs]
    return build_validation_sets(specs, sources, cfg.data.augment, cfg.eval)


def _val_sets(model_dir: Path, datasets: Sequence[str] | None = None, cache_dir: Path | None = None,
              ) -> tuple[Any, list[Any]]:
    """(validation config, `ValidationSet`s of `datasets` (default: all five), in config order) for a model folder."""
    cfg = _val_config(model_dir)
    specs = [spec for spec in cfg.data.datasets if datasets is None or spec.name in datasets]
    return cfg, config_val_sets(cfg, Path(cache_dir or cfg.data.cache_dir), specs)


def soup(run: Path, steps: Sequence[int], out: Path) -> Path:
    """The mean of a run's checkpoint weights at `steps` (a "model soup" / SWA-style average along one trajectory)
    -> `out`, a model folder with the run's final config and processor. The model has no BatchNorm in its heatmap
    path (LayerNorm ViT, simple heads), so averaged weights need no statistics pass."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from posebh_hf.atomic_files import write_folder_atomically

    folders = [run / "checkpoints" / f"step_{step}" for step in steps]
    missing = [str(f) for f in folders if not (f / "model.safetensors").is_file()]
    if missing or not folders:
        raise SystemExit(f"soup: no model.safetensors in {', '.join(missing) or 'an empty step list'}")
    total: dict[str, torch.Tensor] = {}
    for folder in folders:
        for key, value in load_file(str(folder / "model.safetensors")).items():
            total[key] = total.get(key, 0) + value.double()

    def write(folder: Path) -> None:
        shutil.copytree(run / "final", folder, dirs_exist_ok=True)
        save_file({k: (v / len(folders)).float().contiguous() for k, v in total.items()},
                  str(folder / "model.safetensors"), metadata={"format": "pt"})

    return write_folder_atomically(out, write, overwrite=True)


def predict_head(model: Any, vset: Any, head: str, batch_size: int, flip: bool = False,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head `head` (through its own expert) on every crop of a validation view: predictions [N, K_head, 2] in crop
    pixels, scores [N, K_head] and the view's ground truth [N, K_view, 3] (decoded with the model's codec; `flip`:
    the flip test)."""
    from posebh_hf.training.validation import predict_crops

    return predict_crops(model.eval(), vset, head, batch_size, flip=flip)


def cross_scores(model: Any, cfg: Any, sets: Sequence[Any]) -> dict[str, dict[str, float]]:
    """`{"<head>@<val set>": metrics}`: a head run (through its own expert) on another skeleton's val crops,
    scored on the keypoints the two skeletons share by name."""
    from posebh_hf.skeletons import Skeleton
    from posebh_hf.training.validation import score_predictions

    by_name = {v.name: v for v in sets}
    out = {}
    for head, crops in CROSS:
        vset = by_name[crops]
        head_skel = model.config.get_skeleton(head)
        shared = [n for n in head_skel.keypoint_names if n in vset.skeleton.keypoint_names]
        h_idx = [head_skel.keypoint_names.index(n) for n in shared]
        v_idx = [vset.skeleton.keypoint_names.index(n) for n in shared]
        pred, conf, gt = predict_head(model, vset, head, cfg.eval.batch_size, cfg.eval.flip_test)
        # OKS on the shared joints uses the head skeleton's sigmas for them (COCO's for the coco head)
        shared_skel = Skeleton(name=f"{head}-shared", keypoint_names=tuple(shared),
                               sigmas=tuple(head_skel.oks_sigmas()[h_idx].tolist()))
        out[f"{head}@{crops}"] = score_predictions(pred[:, h_idx], conf[:, h_idx], gt[:, v_idx], shared_skel,
                                                   cfg.eval.pck_threshold)
        out[f"{head}@{crops}"]["joints"] = float(len(shared))
    return out


def score_model(model_dir: Path, flip: bool = False) -> dict[str, dict[str, float]]:
    """Own-head val metrics per dataset and the two cross-skeleton measures of a saved model folder (`flip`: with
    the flip test, the paper's test protocol; the study's tables are without it)."""
    import torch

    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.training.validation import validate

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    cfg, sets = _val_sets(model_dir)
    cfg.eval.flip_test = flip
    model = PoseBHForPoseEstimation.from_pretrained(model_dir).eval()
    metrics = parse_metrics(validate(model, sets, cfg.eval))
    metrics.update(cross_scores(model, cfg, sets))
    return metrics


def prototype_scores(model_dir: Path, datasets: Sequence[str] | None = None, cache_dir: Path | None = None,
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """Each dataset's val crops decoded from its **prototype heatmaps** alone (embedding map against the dataset's
    prototypes, no head; the way a transferred pack predicts), beside its head: `{dataset: {"head": metrics,
    "prototypes": metrics}}` for `datasets` (default: all five). Measures how far the embedding head and the
    prototypes have learnt the keypoints."""
    import torch
    from torch.utils.data import DataLoader

    from posebh_hf.data.collate import PoseCollator
    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.training.validation import head_codec, score_predictions

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    cfg, sets = _val_sets(model_dir, datasets, cache_dir)
    model = PoseBHForPoseEstimation.from_pretrained(model_dir).eval()
    out: dict[str, dict[str, dict[str, float]]] = {}
    for vset in sets:
        codec, k_view = head_codec(model, vset.name, vset), vset.skeleton.num_keypoints
        loader = DataLoader(vset.view, batch_size=cfg.eval.batch_size, collate_fn=PoseCollator(k_view))
        found: dict[str, list[list[np.ndarray]]] = {"head": [[], [], []], "prototypes": [[], [], []]}
        with torch.no_grad():
            for batch in loader:
                res = model(batch["pixel_values"], dataset_index=vset.name, heads=[vset.name],
                            output_prototype_heatmaps=True, prototype_skeletons=[vset.name])
                for part, maps in (("head", res.heatmaps), ("prototypes", res.prototype_heatmaps)):
                    coords, conf = codec.decode(maps[vset.name].float().numpy())
                    for lst, arr in zip(found[part], (coords * vset.stride[None, None, :], conf,
                                                       batch["keypoints"].numpy()[:, :k_view]), strict=True):
                        lst.append(arr)
        out[vset.name] = {part: score_predictions(*(np.concatenate(a) for a in arrays), vset.skeleton,
                                                  cfg.eval.pck_threshold) for part, arrays in found.items()}
    return out


def _unit_pixels(embeddings: Any) -> tuple[Any, Any]:
    """Unit embeddings [B, D, H, W] and the same as one row per pixel [B*H*W, D] (fp32)."""
    import torch

    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    return unit, unit.permute(0, 2, 3, 1).reshape(-1, unit.shape[1])


def spread_stats(embeddings: Any) -> dict[str, float]:
    """How varied a keypoint-embedding map is across positions. `embeddings`: [B, D, H, W] (torch). Returns the mean
    cosine of each position's unit embedding to its image's mean direction (1.0 = every position points the same way:
    collapsed, and prototype heatmaps are then flat) and the effective rank (exp of the entropy of the normalised
    singular-value energies) of all centred unit embeddings, out of D."""
    import torch

    unit, flat = _unit_pixels(embeddings)
    mean_dir = torch.nn.functional.normalize(unit.mean(dim=(2, 3), keepdim=True), dim=1)
    energy = torch.linalg.svdvals(flat - flat.mean(0)) ** 2
    share = energy / energy.sum().clamp_min(1e-30)
    return {"cos_to_mean": float((unit * mean_dir).sum(1).mean()),
            "effective_rank": float(torch.exp(-(share * torch.log(share + 1e-12)).sum())),
            "dims": float(unit.shape[1])}


def least_covered_share(direction: Any, prototypes: Any, count: int = 3) -> float:
    """How much of a unit `direction` [D] lies in the `count` directions the `prototypes` [N, D] cover least (the
    eigenvectors of the smallest eigenvalues of their unit rows' Gram matrix): the norm of its projection, 0..1.
    High for an embedding map pushed to be dissimilar (|cos| -> 0) to all its prototypes."""
    import torch

    rows = torch.nn.functional.normalize(prototypes.float(), dim=1)
    _, vectors = torch.linalg.eigh(rows.T @ rows)  # ascending eigenvalues
    unit = torch.nn.functional.normalize(direction.float(), dim=0)
    return float(torch.linalg.vector_norm(vectors[:, :count].T @ unit))


def embedding_spread(model_dir: Path, dataset: str = "lspe", count: int = 32, cache_dir: Path | None = None,
                     ) -> dict[str, float]:
    """`spread_stats` of the model's embedding maps on the first `count` val crops of `dataset`, plus how far they
    sit from the dataset's prototypes: `max_abs_cos` (mean over pixels of the largest |cos| to one of its prototypes)
    and `least_covered` (`least_covered_share` of the mean embedding direction, K_d x M prototypes)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from posebh_hf.data.collate import PoseCollator
    from posebh_hf.modeling import PoseBHForPoseEstimation

    vset = _val_sets(model_dir, [dataset], cache_dir)[1][0]
    crops = Subset(vset.view, range(min(count, len(vset.view))))
    batch = next(iter(DataLoader(crops, batch_size=count, collate_fn=PoseCollator(vset.skeleton.num_keypoints))))
    model = PoseBHForPoseEstimation.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model(batch["pixel_values"], dataset_index=dataset, heads=[dataset], output_embeddings=True)
    bank = model.keypoint_prototypes.prototypes[model.prototype_rows(dataset)]  # [K_d, M, D]
    own = torch.nn.functional.normalize(bank.reshape(-1, bank.shape[-1]).float(), dim=1)
    _, pixels = _unit_pixels(out.embeddings)
    return {**spread_stats(out.embeddings), "max_abs_cos": float((pixels @ own.T).abs().max(1).values.mean()),
            "least_covered": least_covered_share(pixels.mean(0), own)}


DRAW_PRECISION = 0.6  # the default model hides keypoints whose score is right less often than this on lspe val
DRAW_CANDIDATES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def draw_threshold_table(model_dir: Path, head: str = "lspe") -> list[tuple[float, float, float]]:
    """(threshold, share of visible val keypoints drawn, share of drawn ones within PCK@0.2) on `head`'s val crops."""
    import torch

    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.training.validation import predict_crops, visible_keypoint_boxes

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    vset = _val_sets(model_dir, [head])[1][0]
    pred, scores, gt = predict_crops(PoseBHForPoseEstimation.from_pretrained(model_dir).eval(), vset, head, 64)
    visible = gt[..., 2] > 0
    sizes = visible_keypoint_boxes(gt)[:, 2:].max(axis=1)  # PCK's normaliser, as in validation
    correct = (np.linalg.norm(pred - gt[..., :2], axis=-1) <= 0.2 * sizes[:, None]) & visible
    rows = []
    for t in DRAW_CANDIDATES:
        drawn = (scores >= t) & visible
        rows.append((t, float(drawn.sum() / max(visible.sum(), 1)), float((correct & drawn).sum() / max(drawn.sum(), 1))))
    return rows


def pick_draw_threshold(rows: Sequence[tuple[float, float, float]]) -> float:
    """The lowest candidate whose drawn keypoints are right at least DRAW_PRECISION of the time (else the highest)."""
    return next((t for t, _, precision in rows if precision >= DRAW_PRECISION), rows[-1][0])


# ----------------------------------------------------------------------------------------------- running
def run_arm(arm: str, seed: int, overrides: Sequence[str]) -> dict[str, Any]:
    import torch

    from posebh_hf.training import Trainer, load_train_config

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    out = RUNS / f"{arm}_s{seed}"
    stem, fixed = ARM_VARIANTS.get(arm, (arm, ()))
    cfg = load_train_config(CONFIGS / f"finetune_{stem}.yaml", [*fixed, f"seed={seed}", f"output_dir={out}", *overrides])
    t0 = time.perf_counter()
    result = Trainer(cfg).train()
    train_s = time.perf_counter() - t0
    metrics = score_model(Path(result.final_model))
    data = {"variant": arm, "seed": seed, "metrics": metrics, "train_s": train_s,
            "total_s": time.perf_counter() - t0, "steps": result.step, "machine": machine(),
            "logged_val": parse_metrics(result.evaluations[-1] if result.evaluations else {}),
            "command": " ".join([sys.executable, *sys.argv]), "final_model": str(result.final_model)}
    _write_atomic(out / "result.json", json.dumps(data, indent=1))
    return data


def run_length(metrics_file: Path) -> tuple[int, float]:
    """(optimizer steps, training seconds) of a finished run from its metrics.jsonl (logged mean step times)."""
    if not metrics_file.is_file():
        return 0, 0.0
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("type") == "train" and "time/step_s" in r]
    steps, seconds, last = 0, 0.0, 0
    for r in train:
        step = int(r["step"])
        seconds += float(r["time/step_s"]) * (step - last)
        steps, last = step, step
    return steps, seconds


def load_results() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(RUNS.glob("*/result.json"))]


def render_table(results: Sequence[dict[str, Any]]) -> str:
    cols = [*DATASETS, "coco_mini@lspe", "lspe@coco_mini"]
    lines = ["| arm | seeds | " + " | ".join(f"{c} PCK / AP" for c in cols) + " | mean PCK (5 heads) | wall min/run |",
             "|---|---|" + "---|" * (len(cols) + 2)]
    for arm in (START, *ARMS, *ARM_VARIANTS):
        runs = [r for r in results if r["variant"] == arm]
        if not runs:
            continue
        cells = []
        for c in cols:
            pck = mean_std([r["metrics"].get(c, {}).get("pck") for r in runs])
            ap = mean_std([r["metrics"].get(c, {}).get("ap") for r in runs])
            cells.append(f"{fmt(pck)} / {fmt(ap)}")
        mean = mean_std([float(np.mean([r["metrics"][d]["pck"] for d in DATASETS])) for r in runs])
        wall = np.mean([r["total_s"] for r in runs]) / 60
        lines.append(f"| {LABELS[arm]} | {len(runs)} | " + " | ".join(cells) + f" | {fmt(mean)} | {wall:.1f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- default model
APP_MODEL = ROOT / "app" / "default_model"
CARD = ROOT / "src" / "posebh_hf" / "hub_cards" / "default_model_card.md"
HEAD_DATA = {
    "lspe": "LSPe, 7961 people (`lspe_train_full.json`)",
    "coco": "coco_mini, 117 people in 40 COCO photos",
    "bee": "apic.ai bees, 112 crops",
    "mirror_mouse": "lightning-pose mirror mouse, 56 frames",
    "dlc_openfield": "DeepLabCut open-field mouse, 71 frames",
}
RENAME = {"coco_mini": "coco"}
# the first pretraining run (an earlier session; its outputs are not kept): docs/mdt_mini.md, section 1
FIRST_PRETRAINING = "4000 steps of batch 16, 69 min"  # `--skeleton coco` on the built-in COCO skeleton's head


def rename_datasets(config: Any, renames: dict[str, str]) -> None:
    """Rename dataset heads in a `PoseBHConfig` (names only: heads are indexed by position)."""
    config.dataset_names = [renames.get(n, n) for n in config.dataset_names]
    config.skeletons = {renames.get(n, n): {**sk, "name": renames.get(n, n)} for n, sk in config.skeletons.items()}
    if config.decoding:  # the per-skeleton decoding table follows its skeleton
        config.decoding = {renames.get(n, n): mode for n, mode in config.decoding.items()}


def export_default(run: Path, out: Path = APP_MODEL) -> Path:
    """fp16 copy of a fine-tuning run's final model, heads renamed (coco_mini -> coco), `default_skeletons` = the
    two human heads, with its image processor and card, into `out` (through the project's staged folder writer)."""
    from huggingface_hub import ModelCard, ModelCardData

    from posebh_hf.atomic_files import write_folder_atomically
    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.processing_posebh import PoseBHImageProcessor

    data = json.loads((run / "result.json").read_text())
    draw_rows = draw_threshold_table(Path(data["final_model"]))
    model = PoseBHForPoseEstimation.from_pretrained(data["final_model"])
    cfg = model.config
    cfg.draw_threshold = pick_draw_threshold(draw_rows)  # scores of a weak model stay low: measured on lspe val
    flip_file = run / "result_flip.json"  # `score --flip --save-as`: the same val sets with the flip test
    flip_metrics = json.loads(flip_file.read_text())["metrics"] if flip_file.is_file() else None
    data = {**data, "draw_rows": draw_rows, "flip_metrics": flip_metrics}
    rename_datasets(cfg, RENAME)
    cfg.default_skeletons = ["lspe", "coco"]  # the two human heads; lspe is the stronger one (8k people)
    height, width = (int(v) for v in cfg.backbone_config.image_size)

    def write(folder: Path) -> None:
        model.half().save_pretrained(folder)
        config_file = folder / "config.json"
        conf = json.loads(config_file.read_text())
        conf["dtype"] = "float32"  # tensors in fp16 on disk, inference in fp32 on any CPU
        config_file.write_text(json.dumps(conf, indent=2) + "\n")
        PoseBHImageProcessor(size={"height": height, "width": width},
                             heatmap_size={"height": height // 4, "width": width // 4}).save_pretrained(folder)
        (folder / "README.md").write_text(render_card(cfg, data, folder, ModelCard, ModelCardData))

    return write_folder_atomically(out, write, overwrite=True)


# pretrain_merged.yaml runs, each from the previous one's final model; the last one is START
START_CARD = """---
library_name: posebh_hf
license: other
license_name: research-non-commercial
tags: [posebh, vitpose, pose-estimation, keypoint-detection, small]
---

# mdt_mini pretrained multi-head model (the starting point of the comparison)

The pretrained small ViTPose++ of `docs/mdt_mini.md` (section 1): ViT 6 x 192, 192 x 144 input, simple-decoder heads,
one expert and one head per mdt_mini dataset (`lspe`, `coco_mini`, `bee`, `mirror_mouse`, `dlc_openfield`), trained
on 2 CPU cores from random weights in {steps:,} steps of batch 16: {training} Stored in float16 (`config.json` keeps
float32: it runs and fine-tunes in fp32). Val PCK@0.2 x100: {scores}.

Every fine-tuning config of the comparison starts from this folder
(`python benchmarks/mdt_mini_finetune.py run --arm multihead --seed 0`). Its weights inherit the training data's terms
(LSPe research only, bee CC BY-NC-SA 4.0, most COCO images NC): **research and non-commercial use only**.
"""


def export_start(model_dir: Path, out: Path = START_MODEL) -> Path:
    """fp16 copy of the last pretraining run's final model (heads keep their dataset names) with its image
    processor and a short card: the folder every arm of the comparison starts from."""
    import shutil

    from posebh_hf.atomic_files import write_folder_atomically
    from posebh_hf.modeling import PoseBHForPoseEstimation

    data = _stage(START)
    if not data:
        raise SystemExit(f"score the pretraining first: python {Path(__file__).name} score --model {model_dir} "
                         f"--save-as {START}")
    upto_start = MERGED_STAGES[:MERGED_STAGES.index(START) + 1]  # later runs continued past the start
    steps = sum(_stage(name).get("steps", 0) for name in ("pretrain", *upto_start)) + 4000  # + pretrain.yaml
    model = PoseBHForPoseEstimation.from_pretrained(model_dir)
    scores = ", ".join(f"{d} {100 * data['metrics'][d]['pck']:.1f}" for d in DATASETS)
    scores += f"; the coco_mini head on lspe crops {100 * data['metrics']['coco_mini@lspe']['pck']:.1f}"
    training = training_text(data).split(". It is the best")[0] + "."

    def write(folder: Path) -> None:
        model.half().save_pretrained(folder)
        config_file = folder / "config.json"
        conf = json.loads(config_file.read_text())
        conf["dtype"] = "float32"
        config_file.write_text(json.dumps(conf, indent=2) + "\n")
        shutil.copy(model_dir / "preprocessor_config.json", folder / "preprocessor_config.json")
        (folder / "README.md").write_text(START_CARD.format(steps=steps, training=training, scores=scores))

    return write_folder_atomically(out, write, overwrite=True)


MERGED_STAGES = ("pretrain3", "pretrain4", "pretrain5", "pretrain6", "pretrain7", "pretrain8")
STAGE_NOTES = {"pretrain7": ", peak lr 2.5e-4", "pretrain8": ", lspe sampled 6 : 1 instead of 4 : 1"}  # overrides beyond model.init / output_dir / schedule length
# how the default model is picked among the pretraining runs and the arms (docs/mdt_mini.md, section 4): its job is
# people, so the two human measures on the 392 lspe val people, not the five-head mean (splits of 15-54 instances)
SELECTION = ("the best model of the study on people by val: mean of the lspe head's PCK@0.2 and the coco head's on "
             "the lspe val crops (`docs/mdt_mini.md`, section 4)")


def human_score(metrics: dict[str, dict[str, float]]) -> float:
    """The default model's selection score: mean of lspe val PCK and the coco head's PCK on the lspe val crops."""
    return (metrics["lspe"]["pck"] + metrics["coco_mini@lspe"]["pck"]) / 2


def _stage(name: str) -> dict[str, Any]:
    path = RUNS / name / "result.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def render_ranking(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table of every scored run (pretraining stages and arms), best `human_score` first."""
    lines = ["| run | lspe | coco head on lspe crops | selection score | mean PCK (5 heads) |", "|---|---|---|---|---|"]
    scored = [r for r in results if {"lspe", "coco_mini@lspe"} <= set(r["metrics"])]
    for r in sorted(scored, key=lambda r: -human_score(r["metrics"])):
        name = r["variant"] if r["variant"] not in ALL_ARMS else f"{r['variant']}_s{r['seed']}"
        mean = np.mean([r["metrics"][d]["pck"] for d in DATASETS])
        lines.append(f"| {name} | {100 * r['metrics']['lspe']['pck']:.1f} | "
                     f"{100 * r['metrics']['coco_mini@lspe']['pck']:.1f} | {100 * human_score(r['metrics']):.1f} | "
                     f"{100 * mean:.1f} |")
    return "\n".join(lines)


def training_text(data: dict[str, Any]) -> str:
    """How the exported model was trained: the pretraining runs, then (for a comparison arm) its fine-tuning."""
    pre = _stage("pretrain")
    runs = [f"`configs/mdt_mini/pretrain.yaml` ({FIRST_PRETRAINING})",
            f"`configs/mdt_mini/pretrain_continue.yaml` ({pre.get('steps', '?')} more steps of batch 16, "
            f"{pre.get('train_s', 0) / 60:.0f} min)"]
    last = data["variant"] if data["variant"] in MERGED_STAGES else START
    for name in MERGED_STAGES[:MERGED_STAGES.index(last) + 1]:
        stage = data if name == data["variant"] else _stage(name)
        what = ("; from here on the coco and lspe heads also learn from each other's people through the joints "
                "the two skeletons share by name" if name == MERGED_STAGES[0] else ", from the previous run")
        runs.append(f"`configs/mdt_mini/pretrain_merged.yaml` ({stage.get('steps', '?')} steps, "
                    f"{stage.get('train_s', 0) / 60:.0f} min{STAGE_NOTES.get(name, '')}{what})")
    pretraining = f"pretrained as a multi-head model in {len(runs)} runs: " + "; then ".join(runs)
    tail = ("All on 2 CPU cores, from random weights (no ImageNet or ViTPose++ pretraining exists offline here).")
    if data["variant"] in MERGED_STAGES:
        return f"{pretraining}. It is {SELECTION}. {tail}"
    return (f"{pretraining}; then fine-tuned with `configs/mdt_mini/finetune_{data['variant']}.yaml` "
            f"({LABELS[data['variant']]}, seed {data['seed']}, {data.get('steps', '?')} steps, "
            f"{data['train_s'] / 60:.0f} min), {SELECTION}. {tail}")


def render_card(cfg: Any, data: dict[str, Any], folder: Path, model_card: Any, card_data_cls: Any) -> str:
    params = sum(int(np.prod(shape)) for shape in _tensor_shapes(folder / "model.safetensors"))
    metrics = data["metrics"]
    back = {v: k for k, v in RENAME.items()}
    rows = []
    for name in cfg.dataset_names:
        m = metrics.get(back.get(name, name), {})
        rows.append({"head": name, "crops": back.get(name, name), "pck": f"{100 * m.get('pck', float('nan')):.1f}",
                     "ap": f"{100 * m.get('ap', float('nan')):.1f}"})
    for key in ("coco_mini@lspe", "lspe@coco_mini"):
        head, crops = key.split("@")
        m = metrics.get(key, {})
        rows.append({"head": RENAME.get(head, head), "crops": f"{crops} ({int(m.get('joints', 0))} shared joints)",
                     "pck": f"{100 * m.get('pck', float('nan')):.1f}", "ap": f"{100 * m.get('ap', float('nan')):.1f}"})
    training = training_text(data)
    flip = data.get("flip_metrics") or {}
    flip_note = (f"lspe head {100 * flip['lspe']['pck']:.1f} PCK@0.2 on lspe val, the coco head on the lspe crops "
                 f"{100 * flip['coco_mini@lspe']['pck']:.1f}, on coco_mini {100 * flip['coco_mini']['pck']:.1f}"
                 if {"lspe", "coco_mini@lspe", "coco_mini"} <= set(flip) else "")
    # every export descends from the merged pretraining (the pretraining runs and the arms fine-tuned from START)
    coco_note = ("The coco head learnt its 12 limb joints from LSPe people too (mapped by name), but its face "
                 "keypoints from 117 people only.")
    limits = ("- From-scratch ViTs need far more data and compute than 2 CPU cores give: expect misses on unusual "
              f"poses, small people, crowds and occlusion. {coco_note}\n"
              "- Top-down: it needs a person box. `posebh predict` without `--box` uses the whole image; the demo "
              "finds boxes with an offline detector, which misses people.\n"
              "- The animal heads saw one recording session each (mice) or a few tracks (bees).")
    merged_data = {"lspe": " + coco_mini people's 12 limb joints (by name)",
                   "coco": " + LSPe people's 12 limb joints (by name)"}
    heads = [{"index": i, "name": n, "num_keypoints": k, "data": HEAD_DATA.get(n, n) + merged_data.get(n, "")}
             for i, (n, k) in enumerate(zip(cfg.dataset_names, cfg.num_keypoints, strict=True))]
    card_data = card_data_cls(library_name="posebh_hf", pipeline_tag="keypoint-detection", license="other",
                              license_name="research-non-commercial",
                              tags=["posebh", "vitpose", "pose-estimation", "keypoint-detection", "small"],
                              datasets=["mdt_mini"])
    height, width = (int(v) for v in cfg.backbone_config.image_size)
    values = {"num_layers": cfg.backbone_config.num_hidden_layers, "hidden_size": cfg.backbone_config.hidden_size,
              "num_parameters": f"{params / 1e6:.2f} M", "file_mb": f"{(folder / 'model.safetensors').stat().st_size / 1e6:.1f}",
              "image_width": width, "image_height": height, "heatmap_width": width // 4,
              "heatmap_height": height // 4, "training": training, "heads": heads, "metric_rows": rows,
              "limits": limits, "flip_note": flip_note, "draw_threshold": cfg.draw_threshold, "draw_precision": f"{100 * DRAW_PRECISION:.0f}",
              "draw_rows": [{"t": f"{t:.2f}", "shown": f"{100 * shown:.0f}", "precision": f"{100 * precision:.1f}"}
                            for t, shown, precision in data.get("draw_rows", [])],
              "extra_parts": (", a keypoint-embedding head and keypoint prototypes "
                              f"(M = {cfg.num_prototypes}, D = {cfg.embed_dim})" if data["variant"] == "posebh" else "")}
    return str(model_card.from_template(card_data, template_path=str(CARD), **values)).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------- transfer
def _subset_json(k: int, out: Path, start: int = 0) -> Path:
    """The train frames start .. k-1 (sorted by file name) as a COCO file in `out`."""
    data = json.loads((TRANSFER / "dlc_reaching_train.json").read_text())
    images = sorted(data["images"], key=lambda im: im["file_name"])[start:k]
    keep = {im["id"] for im in images}
    subset = {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
    path = out / (f"dlc_reaching_train_k{k}.json" if start == 0 else f"dlc_reaching_train_{start}-{k}.json")
    _write_atomic(path, json.dumps(subset))
    return path


def transfer(base: Path, k: int, tag: str, seed: int, overrides: Sequence[str], out: Path | None = None,
             holdout: int = 0) -> dict[str, Any]:
    """One transfer run (configs/mdt_mini/transfer_reaching.yaml) from `base` on the first k frames; scores the new
    head and the prototypes alone on the test frames. `out` (default: the table's run folder) keeps ablations out of
    the table. `holdout` > 0 trains on the first k - holdout frames and scores on the next `holdout` train frames
    instead (choosing a setting without the test frames)."""
    import torch

    from posebh_hf.hub import attach_prototype_pack
    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.training import Trainer, load_train_config
    from posebh_hf.training.validation import score_predictions, validate

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    out = out or RUNS / ("transfer_holdout" if holdout else "transfer") / f"{tag}_k{k}_s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    train_json = _subset_json(k - holdout, out)
    scored = [f"data.datasets.0.val={_subset_json(k, out, start=k - holdout)}"] if holdout else []
    cfg = load_train_config(CONFIGS / "transfer_reaching.yaml",
                            [f"seed={seed}", f"output_dir={out}", f"model.init={base}",
                             f"data.datasets.0.train={train_json}", f"data.datasets.0.images={TRANSFER}", *scored,
                             *overrides])
    t0 = time.perf_counter()
    result = Trainer(cfg).train()
    sets = config_val_sets(cfg, Path(cfg.data.cache_dir or out / "data_cache"))
    head = parse_metrics(validate(PoseBHForPoseEstimation.from_pretrained(result.final_model), sets, cfg.eval))
    # prototypes alone: the exported pack attached to the base model, decoded from its prototype heatmaps
    model = PoseBHForPoseEstimation.from_pretrained(base).eval()
    attach_prototype_pack(model, str(out / "prototype_pack"))
    vset = sets[0]
    pred, conf, gt = predict_head(model, vset, vset.name, 32)
    protos = score_predictions(pred, conf, gt, vset.skeleton, cfg.eval.pck_threshold)
    data = {"tag": tag, "k": k, "seed": seed, "holdout": holdout, "base": str(base), "head": head.get(vset.name, {}),
            "prototypes": protos,
            "total_s": time.perf_counter() - t0, "machine": machine()}
    _write_atomic(out / "result.json", json.dumps(data, indent=1))
    return data


def render_transfer() -> str:
    results = [json.loads(p.read_text()) for p in sorted((RUNS / "transfer").glob("*/result.json"))]
    lines = ["| k (train frames) | (d): prototypes alone | (d): new head | (d) linear: prototypes alone | "
             "(d) linear: new head | (b): new head |", "|---|---|---|---|---|---|"]

    def cell(k: int, tag: str, part: str) -> str:
        vals = [r[part].get("pck") for r in results if r["k"] == k and r["tag"] == tag]
        return fmt(mean_std(vals)) if vals else "–"

    for k in sorted({r["k"] for r in results}):
        cells = [cell(k, "posebh", "prototypes"), cell(k, "posebh", "head"), cell(k, "posebh_linear", "prototypes"),
                 cell(k, "posebh_linear", "head"), cell(k, "multihead", "head")]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="fine-tune one arm from the pretrained model and score it")
    p.add_argument("--arm", choices=ALL_ARMS, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*")
    p = sub.add_parser("prototypes", help="val PCK from each dataset's prototype heatmaps alone, beside its head")
    p.add_argument("--model", type=Path, required=True)
    p = sub.add_parser("score", help="score a model folder (own heads + cross-skeleton), JSON on stdout")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--save-as", help="also store it as <runs>/<name>/result.json (e.g. pretrain)")
    p.add_argument("--flip", action="store_true",
                   help="with the flip test (the paper's protocol); --save-as then writes result_flip.json")
    sub.add_parser("table", help="write the fine-tuning and transfer tables into docs/mdt_mini.md")
    sub.add_parser("rank", help="every scored run by the default model's selection score (human_score)")
    p = sub.add_parser("transfer", help="one transfer run to dlc_reaching")
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--tag", choices=ALL_ARMS, required=True, help="which arm the base model comes from")
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="run folder (default: the transfer table's)")
    p.add_argument("--holdout", type=int, default=0,
                   help="train on the first k - N frames, score on the next N train frames (not the test frames)")
    p.add_argument("overrides", nargs="*")
    p = sub.add_parser("soup", help="average a run's checkpoints at --steps into a model folder --out")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--steps", type=int, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("export-start", help="the last pretraining run -> models/mdt_mini_pretrain_merged (fp16)")
    p.add_argument("--model", type=Path, required=True)
    p = sub.add_parser("export-default", help="a run's final model -> app/default_model (fp16, card)")
    p.add_argument("--run", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "run":
        print(json.dumps(run_arm(args.arm, args.seed, args.overrides)["metrics"], indent=1))
    elif args.cmd == "score":
        t0 = time.perf_counter()
        metrics = score_model(args.model, args.flip)
        if args.save_as:
            steps, train_s = run_length(args.model.parent / "metrics.jsonl")
            data = {"variant": args.save_as, "seed": 0, "metrics": metrics, "train_s": train_s, "steps": steps,
                    "total_s": time.perf_counter() - t0, "machine": machine(), "final_model": str(args.model)}
            name = "result_flip.json" if args.flip else "result.json"  # the tables and `rank` read result.json
            _write_atomic(RUNS / args.save_as / name, json.dumps({**data, "flip_test": args.flip}, indent=1))
        print(json.dumps(metrics, indent=1))
    elif args.cmd == "table":
        tables = {(BEGIN, END): render_table(load_results()), (T_BEGIN, T_END): render_transfer()}
        text = DOC.read_text()
        for (begin, end), table in tables.items():
            block = f"{begin}\n{table}\n{end}"
            text = (text[:text.index(begin)] + block + text[text.index(end) + len(end):]
                    if begin in text else text.rstrip("\n") + "\n\n" + block + "\n")
            print(table)
        _write_atomic(DOC, text)
    elif args.cmd == "rank":
        print(render_ranking(load_results()))
    elif args.cmd == "prototypes":
        for name, parts in prototype_scores(args.model).items():
            print(f"{name:14s} head PCK {100 * parts['head']['pck']:5.1f}   prototypes alone PCK "
                  f"{100 * parts['prototypes']['pck']:5.1f}   (EPE {parts['prototypes']['epe']:.0f} px)")
        spread = embedding_spread(args.model)
        print(f"embedding map on 32 lspe val crops: mean cosine to the image's mean direction "
              f"{spread['cos_to_mean']:.3f} (1 = collapsed), effective rank {spread['effective_rank']:.1f} of "
              f"{spread['dims']:.0f}; largest |cos| to an lspe prototype {spread['max_abs_cos']:.2f} (mean over "
              f"pixels); share of the mean direction in the 3 directions the lspe prototypes cover least "
              f"{spread['least_covered']:.2f}")
    elif args.cmd == "soup":
        print(soup(args.run, args.steps, args.out))
    elif args.cmd == "export-start":
        print(export_start(args.model))
    elif args.cmd == "export-default":
        print(export_default(args.run))
    else:
        print(json.dumps(transfer(args.base, args.k, args.tag, args.seed, args.overrides, args.out, args.holdout), indent=1))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # gloo may abort during interpreter shutdown on CPU (hf_notes §10)
