"""`posebh data build|split-apt36k|show`: pose corpora as Hugging Face datasets.

- `build --format F --annotations FILE --images DIR --out DIR [--split S] ...` converts a corpus (summary on stdout).
- `split-apt36k --annotations apt36k_annotations.json --out DIR` writes the by-video 7:1:2 split (spec §9.4).
- `show DIR --n 8 --out grid.png` draws augmented training crops with their target keypoints and heatmaps.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..atomic_files import write_atomically

# Heavy imports (datasets, cv2, torch) happen inside the handlers so `posebh --help` stays fast.

FORMATS = ("coco", "coco_wholebody", "aic", "mpii", "ap10k", "apt36k", "crowdpose", "ochuman", "pw3d", "interhand",
           "coco-custom")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="build pose datasets, split APT-36K, show augmented samples, "
                                                  "generate synthetic figures")
    verbs = parser.add_subparsers(dest="data_command", metavar="VERB")
    verbs.required = True
    _register_build(verbs)
    _register_split(verbs)
    _register_show(verbs)
    _register_synth(verbs)


def _register_build(verbs: Any) -> None:
    p = verbs.add_parser("build", help="convert native annotations into a Hugging Face dataset")
    p.add_argument("--format", required=True, choices=FORMATS, help="the corpus's native annotation format")
    p.add_argument("--annotations", required=True, type=Path, help="the corpus's annotation file")
    p.add_argument("--images", required=True, type=Path, help="folder the file names are relative to")
    p.add_argument("--out", required=True, type=Path, help="output folder (datasets.save_to_disk layout)")
    p.add_argument("--split", default=None, help="split name recorded in the dataset (train, val, test...)")
    p.add_argument("--skeleton", default=None, help="override the skeleton: a built-in name or a JSON file")
    p.add_argument("--skeleton-name", default=None, help="rename the skeleton (coco-custom)")
    p.add_argument("--category-id", type=int, default=None, help="coco-custom: keep this keypoint category")
    p.add_argument("--head-boxes", type=Path, default=None, help="mpii: head boxes (.json or .mat) for PCKh")
    p.add_argument("--camera", type=Path, default=None, help="interhand: camera file (default: *_camera.json)")
    p.add_argument("--joints-3d", type=Path, default=None, help="interhand: 3D joints (default: *_joint_3d.json)")
    p.add_argument("--link-images", action="store_true", help="store image paths instead of embedding the bytes")
    p.add_argument("--skip-bad", action="store_true", help="skip and count malformed records instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="then upload to this Hub dataset repo")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_build)


def _register_split(verbs: Any) -> None:
    p = verbs.add_parser("split-apt36k", help="split apt36k_annotations.json by video into train/val/test (7:1:2)")
    p.add_argument("--annotations", required=True, type=Path, help="apt36k_annotations.json")
    p.add_argument("--out", required=True, type=Path, help="folder for apt36k_{train,val,test}.json")
    p.set_defaults(func=run_split)


def _register_show(verbs: Any) -> None:
    p = verbs.add_parser("show", help="draw augmented training crops with their target keypoints")
    p.add_argument("dataset", type=Path, help="a folder written by `posebh data build`")
    p.add_argument("--n", type=int, default=8, help="number of samples")
    p.add_argument("--out", type=Path, default=Path("grid.png"), help="output PNG")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample choice and augmentation (0)")
    p.add_argument("--epoch", type=int, default=0, help="augmentation epoch (changes the random draws)")
    p.add_argument("--cols", type=int, default=4, help="tiles per row of the grid (4)")
    p.add_argument("--box-source", choices=("bbox", "roi", "content"), default=None,
                   help="ROI of each instance: its box (default), a stored ROI (MPII), or the whole image "
                        "(content: datasets of ready crops such as mdt_mini/crops)")
    p.set_defaults(func=run_show)


def _register_synth(verbs: Any) -> None:
    p = verbs.add_parser("synth", help="draw a small synthetic corpus of figures with known keypoints (no download)",
                         description="Write COCO-style train/val files of simple generated figures (person, "
                                     "quadruped, bird) with exact keypoints: OUT/KIND/KIND_{train,val}.json and "
                                     "images/. Deterministic for a seed. Train on them with `train: synth:KIND` "
                                     "in a config (configs/smoke.yaml) or convert with `posebh data build "
                                     "--format coco-custom`.")
    p.add_argument("--out", required=True, type=Path, help="output folder (one sub-folder per kind)")
    p.add_argument("--kinds", nargs="+", default=None, metavar="KIND",
                   help="figure kinds: person, quadruped, bird (default: all)")
    p.add_argument("--train", type=int, default=48, help="training images per kind (default 48)")
    p.add_argument("--val", type=int, default=16, help="validation images per kind (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", default="192x256", metavar="WxH", help="image size (default 192x256)")
    p.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from ..data.synth import KINDS, write_synth

    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
    except ValueError:
        size = ()
    if len(size) != 2:
        raise ValueError(f"--size must look like WxH (e.g. 192x256), got {args.size!r}")
    written = write_synth(args.out, args.kinds or list(KINDS), train=args.train, val=args.val, seed=args.seed,
                          size=size)
    for kind, files in written.items():
        print(f"{kind}: {files['train']} ({args.train} images), {files['val']} ({args.val} images)")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from ..data import ConvertOptions, build_dataset
    from ..skeletons import get_skeleton

    options = ConvertOptions(
        skeleton=get_skeleton(args.skeleton) if args.skeleton else None,
        skeleton_name=args.skeleton_name,
        category_id=args.category_id,
        head_boxes=args.head_boxes,
        camera=args.camera,
        joints_3d=args.joints_3d,
    )
    summary = build_dataset(args.format, args.annotations, args.images, args.out, split=args.split, options=options,
                            link_images=args.link_images, skip_bad=args.skip_bad, overwrite=args.overwrite,
                            progress=not args.no_progress)
    print(summary)
    for message in summary.first_errors:
        print(f"  skipped: {message}")
    if args.push_to_hub:
        from ..data.push import push_dataset_to_hub

        url = push_dataset_to_hub(args.out, args.push_to_hub, split=args.split, private=args.private)
        print(f"pushed to {url}")
    return 0


def run_split(args: argparse.Namespace) -> int:
    from ..data.converters.apt36k import split_apt36k

    counts = split_apt36k(args.annotations, args.out)
    for split, (num_images, num_annotations) in counts.items():
        print(f"{split}: {num_images} images, {num_annotations} annotations -> {args.out / f'apt36k_{split}.json'}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from ..data.show import augmented_samples, denormalize, heatmap_overlay, tile
    from ..visualize import draw_pose

    samples, skeleton = augmented_samples(args.dataset, args.n, seed=args.seed, epoch=args.epoch,
                                         box_source=args.box_source)
    tiles = []
    for sample in samples:
        crop = heatmap_overlay(denormalize(sample["pixel_values"]), sample["target"])
        keypoints = np.asarray(sample["keypoints"])
        tiles.append(draw_pose(crop, keypoints[:, :2], keypoints[:, 2], skeleton, score_threshold=0.5))
    grid = tile(tiles, cols=args.cols)
    write_atomically(args.out, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
    print(f"wrote {len(samples)} samples of {args.dataset} ({skeleton.name}) to {args.out}")
    return 0
