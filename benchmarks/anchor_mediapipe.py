"""Our model beside MediaPipe Pose (BlazePose full) on the same LSPe val crops, in one table.

    make venv-mediapipe                                        # .venv-mediapipe: mediapipe==0.10.14, numpy < 2
    python benchmarks/anchor_mediapipe.py [--model app/default_model] [--limit N]

Every method sees the same 192 x 256 crop JPEGs of `../shared/data/mdt_mini/crops/lspe/lspe_val.json` (392 people)
as whole images and is scored in crop pixels on the 13 LSP joints BlazePose has (head_top left out; the neck is the
shoulders' midpoint for BlazePose and for our coco head), PCK@0.2 of the larger side of the visible-keypoint box, as
validation during training does. Rows: our lspe head (flip test on), our coco head mapped by name, MediaPipe Pose
(static images, model_complexity=1 = the "full" landmark model; a crop where it finds nobody scores 0), and a
constant mean training pose. MediaPipe needs numpy < 2, so it runs in its own virtual environment, called here as a
subprocess (`--worker`); without that environment its row says so and the others still print.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LSPE = REPO.parent / "shared" / "data" / "mdt_mini" / "crops" / "lspe"
MEDIAPIPE_PYTHON = REPO / ".venv-mediapipe" / "bin" / "python"
# the 13 LSP joints scored (lspe order without head_top) and BlazePose's landmark index for each; the neck is the
# midpoint of the shoulders (11, 12)
LSP13 = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
         "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck"]
BLAZEPOSE = {"right_ankle": 28, "right_knee": 26, "right_hip": 24, "left_hip": 23, "left_knee": 25, "left_ankle": 27,
             "right_wrist": 16, "right_elbow": 14, "right_shoulder": 12, "left_shoulder": 11, "left_elbow": 13,
             "left_wrist": 15}


def worker(list_file: str, out_file: str) -> None:
    """Runs inside .venv-mediapipe: BlazePose on each image -> [33, 3] (x, y pixels, visibility) or null."""
    import cv2
    import mediapipe as mp

    paths = json.loads(Path(list_file).read_text())
    results, start = [], time.perf_counter()
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5) as pose:
        for path in paths:
            bgr = cv2.imread(path)
            height, width = bgr.shape[:2]
            found = pose.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).pose_landmarks
            results.append(None if found is None else
                           [[lm.x * width, lm.y * height, lm.visibility] for lm in found.landmark])
    seconds = time.perf_counter() - start
    import mediapipe

    Path(out_file).write_text(json.dumps({"landmarks": results, "seconds": seconds,
                                          "version": mediapipe.__version__}))


def load_val(limit: int | None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Crop paths, GT [N, 14, 3] in crop pixels, the lspe keypoint names."""
    data = json.loads((LSPE / "lspe_val.json").read_text())
    names = data["categories"][0]["keypoints"]
    files = {im["id"]: LSPE / im["file_name"] for im in data["images"]}
    anns = data["annotations"][:limit] if limit else data["annotations"]
    gt = np.asarray([np.reshape(a["keypoints"], (-1, 3)) for a in anns], np.float64)
    return [files[a["image_id"]] for a in anns], gt, names


def mean_pose(names: list[str]) -> np.ndarray:
    """[14, 2] mean visible position of each joint over lspe_train_full (all crops are 192 x 256)."""
    data = json.loads((LSPE / "lspe_train_full.json").read_text())
    kps = np.asarray([np.reshape(a["keypoints"], (-1, 3)) for a in data["annotations"]], np.float64)
    vis = kps[..., 2:] > 0
    return (kps[..., :2] * vis).sum(0) / np.maximum(vis.sum(0), 1)


def pck(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.2) -> float:
    """PCK (x100) of pred [N, K, 2] against gt [N, K, 3] with validation's own scoring (`score_predictions`: the
    larger side of each visible-keypoint box); a missed person (NaN) scores 0."""
    from posebh_hf.skeletons import Skeleton
    from posebh_hf.training.validation import score_predictions

    pred = np.nan_to_num(pred, nan=-1e6)
    skeleton = Skeleton(name="lsp13", keypoint_names=tuple(LSP13))
    return 100.0 * score_predictions(pred, np.ones(pred.shape[:2]), gt, skeleton, threshold)["pck"]


def to_lsp13(named: dict[str, np.ndarray]) -> np.ndarray:
    """{joint name: [N, 2]} -> [N, 13, 2]; the neck from the shoulders when not given."""
    if "neck" not in named:
        named = {**named, "neck": (named["left_shoulder"] + named["right_shoulder"]) / 2}
    return np.stack([named[n] for n in LSP13], axis=1)


def ours(model: str, paths: list[Path], lspe_names: list[str]) -> tuple[dict[str, np.ndarray], float]:
    """{"lspe": [N, 13, 2], "coco": [N, 13, 2]} from our model on the whole crops (flip test on), and s/crop."""
    import torch

    from posebh_hf import PoseBHPipeline

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    pipe = PoseBHPipeline.from_pretrained(model)
    heads = [h for h in ("lspe", "coco") if h in pipe.skeleton_names]
    start = time.perf_counter()
    results = pipe.predict([str(p) for p in paths], skeletons=heads, flip=True)
    seconds = (time.perf_counter() - start) / max(len(paths), 1)
    out = {}
    for head in heads:
        names = list(pipe.skeleton(head).keypoint_names)
        xy = np.stack([r.keypoints(head)[0] for r in results])  # [N, K, 2], one whole-image box each
        out[head] = to_lsp13({n: xy[:, names.index(n)] for n in names if n in LSP13 or "shoulder" in n})
    return out, seconds


def mediapipe_rows(paths: list[Path], python: Path) -> tuple[np.ndarray | None, str, float]:
    """BlazePose [N, 13, 2] (NaN where nobody was found), a note, s/crop; None when its venv is missing."""
    if not python.is_file():
        return None, f"not run: {python} is missing (make venv-mediapipe)", float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        list_file, out_file = Path(tmp) / "paths.json", Path(tmp) / "out.json"
        list_file.write_text(json.dumps([str(p) for p in paths]))
        env = {**os.environ, "PYTHONPATH": ""}
        done = subprocess.run([str(python), __file__, "--worker", str(list_file), str(out_file)], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}", \
                float("nan")
        result = json.loads(out_file.read_text())
    pts = np.full((len(paths), 13, 2), np.nan)
    for i, landmarks in enumerate(result["landmarks"]):
        if landmarks is not None:
            lm = np.asarray(landmarks)[:, :2]
            pts[i] = to_lsp13({n: lm[None, j] for n, j in BLAZEPOSE.items()})[0]
    return pts, f"mediapipe {result['version']}", result["seconds"] / max(len(paths), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "app" / "default_model"))
    parser.add_argument("--mediapipe-python", type=Path, default=MEDIAPIPE_PYTHON)
    parser.add_argument("--limit", type=int, default=None, help="first N val people only")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    if not LSPE.is_dir():
        print(f"skipped: {LSPE} is absent (the shared mdt_mini corpus)")
        return 0
    sys.path.insert(0, str(REPO / "benchmarks"))
    import torch
    from machine_info import cpu_name  # noqa: PLC0415

    paths, gt14, names = load_val(args.limit)
    gt = gt14[:, [names.index(n) for n in LSP13]]
    preds, seconds = ours(args.model, paths, names)
    rows = [(f"ours: {h} head ({'own skeleton' if h == 'lspe' else 'mapped by name'})", p, seconds)
            for h, p in preds.items()]
    mp_pred, mp_note, mp_seconds = mediapipe_rows(paths, args.mediapipe_python)
    mean = mean_pose(names)[[names.index(n) for n in LSP13]]
    rows.append(("constant mean training pose", np.repeat(mean[None], len(paths), axis=0), 0.0))
    print(f"LSPe val crops: {len(paths)} people, PCK@0.2 (x100) on 13 joints; model {args.model}; "
          f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print("| method | people found | PCK@0.2, all people | PCK@0.2, people found | ms / crop |")
    print("|---|---|---|---|---|")
    for name, pred, sec in rows:
        print(f"| {name} | {len(paths)} | {pck(pred, gt):.1f} | {pck(pred, gt):.1f} | {1000 * sec:.0f} |")
    if mp_pred is None:
        print(f"| MediaPipe Pose (BlazePose full) | – | {mp_note} | – | – |")
    else:
        found = ~np.isnan(mp_pred[:, 0, 0])
        print(f"| MediaPipe Pose (BlazePose full; {mp_note}) | {int(found.sum())} ({100 * found.mean():.0f} %) | "
              f"{pck(mp_pred, gt):.1f} | {pck(mp_pred[found], gt[found]):.1f} | {1000 * mp_seconds:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
