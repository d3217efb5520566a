"""Time our ``coco`` protocol against pycocotools called directly, on a synthesised COCO-val-sized result file.

The synthetic set mirrors COCO val2017 person keypoints: 5,000 images, 11,004 person annotations of which 6,352
carry keypoints (the rest have none, some are crowd), and a result file of 6,352 predictions (perturbed ground
truth plus false positives). Both sides read the same JSON files, use the COCO sigmas and are timed end to end
(load + evaluate + accumulate + summarize) in the same process; the script also checks that the ten stats agree.

    python benchmarks/eval_speed.py [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posebh_hf.evaluation import COCO_STAT_NAMES, evaluate_coco
from posebh_hf.evaluation.inputs import gc_paused
from posebh_hf.skeletons import get_skeleton

NUM_IMAGES, NUM_PERSONS, NUM_WITH_KPTS, NUM_CROWD, NUM_PREDS = 5000, 11004, 6352, 100, 6352


def _person(rng: np.random.Generator, width: int, height: int, k: int) -> tuple[np.ndarray, list[float], float]:
    side = float(np.exp(rng.uniform(np.log(24), np.log(400))))
    w, h = side * rng.uniform(0.4, 0.8), side
    x, y = rng.uniform(0, max(1.0, width - w)), rng.uniform(0, max(1.0, height - h))
    kpts = np.zeros((k, 3))
    kpts[:, 0] = x + rng.uniform(0, w, k)
    kpts[:, 1] = y + rng.uniform(0, h, k)
    kpts[:, 2] = rng.choice([0, 1, 2], size=k, p=[0.3, 0.15, 0.55])
    kpts[kpts[:, 2] == 0, :2] = 0
    return kpts, [x, y, w, h], w * h * rng.uniform(0.45, 0.75)


def synthesise(seed: int) -> tuple[dict, list[dict]]:
    """(ground truth dict, predictions list) shaped like COCO val2017 person keypoints."""
    rng = np.random.default_rng(seed)
    k = 17
    images = [{"id": i + 1, "width": 640, "height": 480, "file_name": f"{i + 1:012d}.jpg"} for i in range(NUM_IMAGES)]
    owners = np.sort(rng.choice(NUM_IMAGES, NUM_PERSONS, replace=True)) + 1
    anns, with_kpts = [], []
    kpt_ids = set(rng.choice(NUM_PERSONS, NUM_WITH_KPTS, replace=False).tolist())
    for j, img_id in enumerate(owners.tolist()):
        kpts, box, area = _person(rng, 640, 480, k)
        if j not in kpt_ids:
            kpts[:] = 0
        kpts[0, 2] = kpts[0, 2] if j in kpt_ids else 0
        if j in kpt_ids and not np.any(kpts[:, 2] > 0):
            kpts[5] = [box[0] + box[2] / 2, box[1] + box[3] / 3, 2]
        crowd = int(j not in kpt_ids and len(anns) % 40 == 0)
        ann = {"id": j + 1, "image_id": img_id, "category_id": 1, "bbox": box, "area": area, "iscrowd": crowd,
               "keypoints": kpts.reshape(-1).round(2).tolist(), "num_keypoints": int((kpts[:, 2] > 0).sum())}
        anns.append(ann)
        if j in kpt_ids:
            with_kpts.append((ann, kpts))
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "keypoints": list(get_skeleton("coco").keypoint_names)}]}
    preds = []
    for ann, kpts in with_kpts[: NUM_PREDS - NUM_PREDS // 10]:
        scale = np.sqrt(ann["area"])
        xy = kpts[:, :2] + rng.normal(0, 0.01 + 0.05 * rng.uniform(), (k, 2)) * scale
        preds.append(_pred(rng, ann["image_id"], xy))
    while len(preds) < NUM_PREDS:  # false positives at random places
        kpts, _, _ = _person(rng, 640, 480, k)
        preds.append(_pred(rng, int(rng.integers(1, NUM_IMAGES + 1)), kpts[:, :2] + 1.0))
    return gt, preds


def _pred(rng: np.random.Generator, image_id: int, xy: np.ndarray) -> dict:
    flat = np.concatenate([xy, rng.uniform(0.05, 1.0, (len(xy), 1))], axis=1).reshape(-1)
    return {"image_id": image_id, "category_id": 1, "keypoints": flat.round(3).tolist(),
            "score": float(rng.uniform(0.2, 1.0))}


def run_pycocotools(gt_file: Path, pred_file: Path, sigmas: np.ndarray) -> np.ndarray:
    """COCO(gt) -> loadRes(pred) -> COCOeval('keypoints') with ``sigmas``, as a user would call it."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        dets = coco.loadRes(str(pred_file))
        ev = COCOeval(coco, dets, "keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gt, preds = synthesise(args.seed)
    sigmas = get_skeleton("coco").oks_sigmas()
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, pred_file = Path(tmp) / "gt.json", Path(tmp) / "pred.json"
        gt_file.write_text(json.dumps(gt))
        pred_file.write_text(json.dumps(preds))
        times: dict[str, list[float]] = {"pycocotools (direct)": [], "pycocotools, GC paused": [],
                                         "posebh_hf coco protocol": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            ref = run_pycocotools(gt_file, pred_file, sigmas)
            times["pycocotools (direct)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            with gc_paused():  # separates the collector's share (our protocol pauses it) from the algorithm's
                ref_nogc = run_pycocotools(gt_file, pred_file, sigmas)
            times["pycocotools, GC paused"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ours = evaluate_coco(gt_file, pred_file, "coco")
            times["posebh_hf coco protocol"].append(time.perf_counter() - start)
    assert np.array_equal(ref, ref_nogc)
    ours_arr = np.array([ours[n] for n in COCO_STAT_NAMES])
    max_diff = float(np.max(np.abs(ours_arr - ref)))
    n_kpt = sum(1 for a in gt["annotations"] if a["num_keypoints"] > 0)
    print(f"{len(gt['images'])} images, {len(gt['annotations'])} GT persons ({n_kpt} with keypoints), "
          f"{len(preds)} predictions; {args.repeats} repeats, median seconds (load + evaluate + accumulate + summarize)")
    base = statistics.median(times["pycocotools (direct)"])
    print(f"| {'evaluator':<26}| {'median s':>9} | {'min s':>7} | {'time / pycocotools':>18} |")
    print(f"|{'-' * 27}|{'-' * 11}|{'-' * 9}|{'-' * 20}|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name:<26}| {med:>9.3f} | {min(values):>7.3f} | {med / base:>18.2f} |")
    print(f"AP {ours['AP']:.4f} (pycocotools {ref[0]:.4f}); max |difference| over the 10 stats: {max_diff:.1e}")
    if max_diff > 1e-9:
        raise SystemExit("MISMATCH between posebh_hf and pycocotools")


if __name__ == "__main__":
    main()
