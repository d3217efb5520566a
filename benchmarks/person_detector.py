"""Offline person detectors side by side on COCO photos with person boxes: OpenCV HOG vs BlazePose.

    python benchmarks/person_detector.py [--detectors hog,blazepose-norefine,blazepose,blazepose-tiles] [--repeat 1]

Sets (from ../shared/data): coco_mini train and val (mdt_mini/raw/coco_mini, COCO 2017 train images) and
real/coco (4 COCO val2017 images from mmpose's test data). Every non-crowd COCO person box counts, also those
without keypoints. Matching is COCO-like: detections in score order (HOG: its order) take the unmatched person
box of highest IoU >= 0.5; an unmatched detection lying mostly (>= 50 % of its area) inside a crowd region is
ignored, any other is a false positive. Recall is also given for people of area >= 32^2 and >= 96^2 (COCO's
`area`, the segment's pixel area). ms/image: the detector call alone (decoded image in, boxes out), after one
warm-up image, one thread; wall clock and the process's CPU time (less sensitive to other jobs on the
machine).

BlazePose's box geometry (three numbers) was fitted on coco_mini train, so its val and real/coco rows are the
fair ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {
    "coco_mini train": ("mdt_mini/raw/coco_mini/annotations/person_keypoints_train.json", "mdt_mini/raw/coco_mini/images"),
    "coco_mini val": ("mdt_mini/raw/coco_mini/annotations/person_keypoints_val.json", "mdt_mini/raw/coco_mini/images"),
    "real/coco": ("real/coco/test_coco.json", "real/coco"),
}


def load_set(name: str) -> list[tuple[Path, np.ndarray, np.ndarray, np.ndarray]]:
    """[(image path, person boxes [G, 4] xywh, their areas [G], crowd boxes [C, 4])] of one set."""
    ann_file, image_dir = SETS[name]
    data = json.loads((SHARED / ann_file).read_text())
    out = []
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"] and a.get("category_id", 1) == 1]
        people = [a for a in anns if not a.get("iscrowd")]
        crowd = [a["bbox"] for a in anns if a.get("iscrowd")]
        out.append((SHARED / image_dir / image["file_name"],
                    np.array([a["bbox"] for a in people], np.float64).reshape(-1, 4),
                    np.array([a["area"] for a in people], np.float64),
                    np.array(crowd, np.float64).reshape(-1, 4)))
    return out


def match(dets: np.ndarray, gt: np.ndarray, crowd: np.ndarray, iou_threshold: float = 0.5) -> tuple[np.ndarray, int]:
    """dets [N, 4] best first, gt [G, 4], crowd [C, 4] -> (matched flags [G], false positives)."""
    from posebh_hf.detection import box_iou

    matched = np.zeros(len(gt), bool)
    false_pos = 0
    iou = box_iou(dets, gt) if len(gt) else np.zeros((len(dets), 0))
    for i, det in enumerate(dets):
        candidates = np.where(matched, -1.0, iou[i]) if len(gt) else np.zeros(0)
        if len(candidates) and candidates.max() >= iou_threshold:
            matched[int(candidates.argmax())] = True
            continue
        if len(crowd) and _inside_fraction(det, crowd).max() >= 0.5:
            continue
        false_pos += 1
    return matched, false_pos


def _inside_fraction(det: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Fraction of box `det` [4] inside each region [C, 4] (xywh)."""
    x0 = np.maximum(det[0], regions[:, 0])
    y0 = np.maximum(det[1], regions[:, 1])
    x1 = np.minimum(det[0] + det[2], regions[:, 0] + regions[:, 2])
    y1 = np.minimum(det[1] + det[3], regions[:, 1] + regions[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / max(det[2] * det[3], 1e-9)


def detectors(names: list[str]) -> dict[str, Callable[[np.ndarray], list[list[float]]]]:
    """name -> detector. Besides `posebh predict`'s names: "blazepose-tiles" (also four corner windows) and
    "blazepose-norefine" (boxes from the detector's keypoints alone, no landmark model)."""
    from posebh_hf.detection import detector_available, people_detector

    out = {}
    for name in names:
        base = name.split("-")[0]
        ok, why = detector_available(base)
        if not ok:
            print(f"skipping {name}: {why}", file=sys.stderr)
            continue
        if name == "blazepose-tiles" or name == "blazepose-norefine":
            from posebh_hf.detection.blazepose import BlazePersonDetector

            out[name] = BlazePersonDetector(tiles=name.endswith("tiles"), refine=not name.endswith("norefine"))
        else:
            out[name] = people_detector(name)
    return out


def run(names: list[str], repeat: int) -> list[dict]:
    from posebh_hf.images import load_image

    found = detectors(names)
    rows = []
    sets = {name: load_set(name) for name in SETS if (SHARED / SETS[name][0]).is_file()}
    images = {path: np.asarray(load_image(path)) for items in sets.values() for path, *_ in items}
    for det_name, detect in found.items():
        detect(next(iter(images.values())))  # warm-up (model load, first-call allocations)
        for set_name, items in sets.items():
            flags, areas, false_pos, seconds, cpu = [], [], 0, 0.0, 0.0
            for path, gt, area, crowd in items:
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(repeat):
                    boxes = detect(images[path])
                seconds += (time.perf_counter() - start) / repeat
                cpu += (time.process_time() - start_cpu) / repeat
                matched, fp = match(np.asarray(boxes, np.float64).reshape(-1, 4), gt, crowd)
                flags.append(matched)
                areas.append(area)
                false_pos += fp
            hit, area = np.concatenate(flags), np.concatenate(areas)
            row = {"detector": det_name, "set": set_name, "images": len(items), "people": len(hit),
                   "fp_per_image": false_pos / len(items), "ms": 1000 * seconds / len(items),
                   "cpu_ms": 1000 * cpu / len(items)}
            for key, lo in (("all", 0.0), ("m", 32.0 ** 2), ("l", 96.0 ** 2)):
                sel = area >= lo
                row[f"recall_{key}"] = (int(hit[sel].sum()), int(sel.sum()))
            rows.append(row)
    return rows


def _frac(pair: tuple[int, int]) -> str:
    hit, total = pair
    return f"{hit / total:.2f} ({hit}/{total})" if total else "-"


def print_table(rows: list[dict], repeat: int) -> None:
    import cv2

    versions = [f"opencv {cv2.__version__}", f"numpy {np.__version__}"]
    try:
        from importlib.metadata import version

        versions.append(f"ai-edge-litert {version('ai-edge-litert')}")
    except Exception:  # noqa: BLE001 - the runtime is optional
        pass
    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} logical CPUs; {', '.join(versions)}")
    print(f"command: python {' '.join(sys.argv)}  (each image timed {repeat}x, one thread)\n")
    print("| detector | set | images | people | recall | recall area >= 32^2 | recall area >= 96^2 | "
          "false pos / image | ms / image | CPU ms / image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} | {r['set']} | {r['images']} | {r['people']} | {_frac(r['recall_all'])} | "
              f"{_frac(r['recall_m'])} | {_frac(r['recall_l'])} | {r['fp_per_image']:.2f} | {r['ms']:.0f} | {r['cpu_ms']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", default="hog,blazepose-norefine,blazepose,blazepose-tiles",
                        help="comma-separated: hog, blazepose, blazepose-norefine, blazepose-tiles")
    parser.add_argument("--repeat", type=int, default=1, help="time each image this many times")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is missing: the benchmark reads COCO images from ../shared/data")
    print_table(run(args.detectors.split(","), args.repeat), args.repeat)


if __name__ == "__main__":
    main()
