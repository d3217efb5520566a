"""Flip test per skeleton: PCK@0.2 on mdt_mini's mirror_mouse val crops with the skeleton's policy vs a forced flip.

    python benchmarks/flip_policy.py [--model app/default_model] [--skeleton mirror_mouse]
        [--annotations ../shared/data/mdt_mini/crops/mirror_mouse/mirror_mouse_val.json]

Builds the val crops into a temporary dataset (`posebh data build --format coco-custom`), then runs
`evaluate_model(..., "pck", thr=0.2)` with GT boxes three ways: `flip=True` (the policy: mirror_mouse has no flip
pairs, so no flip test), `flip=False`, and the flip test forced on (the skeleton with `"flip_test": true`).
Result (docs/deviations.md): policy 98.4 PCK@0.2 (EPE 5.1 px), forced flip 80.9 (EPE 22.1 px).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ANNOTATIONS = REPO.parent / "shared" / "data" / "mdt_mini" / "crops" / "mirror_mouse" / "mirror_mouse_val.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "app" / "default_model"))
    parser.add_argument("--skeleton", default="mirror_mouse", help="the model head to evaluate")
    parser.add_argument("--annotations", default=str(DEFAULT_ANNOTATIONS), help="COCO-style val file (crops)")
    parser.add_argument("--images", default=None, help="image root (default: the annotation file's folder)")
    args = parser.parse_args()

    from posebh_hf.data import build_dataset, load_pose_dataset
    from posebh_hf.model_evaluation import evaluate_model
    from posebh_hf.pipeline import PoseBHPipeline

    annotations = Path(args.annotations)
    with tempfile.TemporaryDirectory(prefix="posebh-flip-") as tmp:
        build_dataset("coco-custom", annotations, Path(args.images or annotations.parent), Path(tmp) / "val",
                      progress=False)
        dataset, _ = load_pose_dataset(Path(tmp) / "val")
        pipe = PoseBHPipeline.from_pretrained(args.model)
        skeleton = pipe.skeleton(args.skeleton)
        forced = dataclasses.replace(skeleton, flip_test=True)
        rows = [("policy (flip=True)", skeleton, True), ("flip=False", skeleton, False)]
        results = []
        for label, skel, flip in rows:
            results.append((label, evaluate_model(pipe, dataset, "pck", flip=flip, skeleton=skel, progress=False,
                                                  thr=0.2)))
        pipe.skeleton = lambda name: forced if name == args.skeleton else pipe.model.config.get_skeleton(name)
        results.append(("flip test forced", evaluate_model(pipe, dataset, "pck", flip=True, skeleton=forced,
                                                           progress=False, thr=0.2)))
    print(f"{args.skeleton}: allows_flip={skeleton.allows_flip}, flip pairs={len(skeleton.flip_pairs)}, "
          f"{dataset.num_rows} images")
    print("| flip | PCK@0.2 | EPE (px) |\n|---|---|---|")
    for label, metrics in results:
        print(f"| {label} | {100 * metrics['PCK']:.1f} | {metrics['EPE']:.1f} |")


if __name__ == "__main__":
    main()
