"""How well could prototypes alone find a new skeleton's keypoints on a model's frozen embedding map?

The transfer test of docs/mdt_mini.md (section 3) learns prototypes for dlc_reaching with the paper's momentum rule
against the base model's frozen embedding head. This script bounds what *any* prototypes could do on that embedding,
with the same decoding (argmax over pixels of max_m |cos(e, p_km)|) and the same PCK@0.2 on the 20 test frames:
- **class mean**: each keypoint's prototype is the mean unit embedding at its ground-truth pixel over the k train
  frames (what the momentum rule converges to when every sampled pixel counts);
- **fitted**: M prototypes per keypoint fitted by gradient descent (Adam, 300 steps) to a spatial soft-argmax
  cross-entropy on the k train frames (|cos| x 20 as logits over the pixels): a linear probe of the embedding, the
  most prototypes of this form can get from it without touching the model.

    python benchmarks/transfer_ceiling.py --model outputs/mdt_mini/finetune/posebh_s0/final [--k 35] [--backbone]

`--backbone` also decodes the same way from the backbone's own feature map (bilinearly upsampled x4 to the
embedding grid, as the linear embedding head does), as it is and centred per image: what an embedding head that
kept the backbone's geometry could give (docs/mdt_mini.md section 3).

Embeddings are taken through the expert the transfer routes to (`transfer.source_dataset` of
configs/mdt_mini/transfer_reaching.yaml, lspe), as an attached pack predicts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mdt_mini_finetune import CONFIGS, TRANSFER, _subset_json, config_val_sets  # noqa: E402

LOGIT_SCALE = 20.0  # |cos| in [0, 1] -> logits; larger scales fit the k frames faster and generalise the same here
FIT_STEPS, FIT_LR = 300, 0.05


def unit_similarity(unit: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Unit embeddings [N, D, H, W] against unit prototypes [K, M, D] -> max_m |cos| [N, K, H, W]."""
    return torch.einsum("ndhw,kmd->nkmhw", unit, prototypes).abs().amax(2)


def argmax_keypoints(similarity: torch.Tensor, stride: np.ndarray) -> np.ndarray:
    """[N, K, H, W] -> the best pixel of each map in crop pixels [N, K, 2] (x, y; integer heatmap pixels x stride)."""
    width = similarity.shape[-1]
    index = similarity.flatten(2).argmax(-1)
    return torch.stack([index % width, index // width], -1).numpy().astype(np.float64) * stride


def keypoint_pixels(keypoints: np.ndarray, size: tuple[int, int], stride: np.ndarray) -> np.ndarray:
    """Ground truth in crop pixels [N, K, 3] -> the nearest embedding pixel [N, K, 2] (column, row), clipped."""
    height, width = size
    pix = np.round(keypoints[..., :2] / stride).astype(np.int64)
    return np.stack([pix[..., 0].clip(0, width - 1), pix[..., 1].clip(0, height - 1)], -1)


def class_mean_prototypes(unit: torch.Tensor, keypoints: np.ndarray, stride: np.ndarray) -> torch.Tensor:
    """Unit embeddings [N, D, H, W] + ground truth [N, K, 3] -> [K, 1, D]: the mean unit embedding at each keypoint's
    visible ground-truth pixels, normalised."""
    pix = keypoint_pixels(keypoints, tuple(unit.shape[-2:]), stride)
    rows = []
    for k in range(keypoints.shape[1]):
        seen = np.flatnonzero(keypoints[:, k, 2] > 0)
        vectors = unit[seen, :, pix[seen, k, 1], pix[seen, k, 0]]  # [n_k, D]
        rows.append(F.normalize(vectors.mean(0), dim=0))
    return torch.stack(rows)[:, None]


def fit_prototypes(unit: torch.Tensor, keypoints: np.ndarray, stride: np.ndarray, num_prototypes: int = 3,
                   seed: int = 0) -> torch.Tensor:
    """[K, M, D] unit prototypes fitted to a spatial soft-argmax cross-entropy on the frames (see module doc;
    `posebh_hf.losses.fit_prototypes`, what `transfer.prototype_init=fit` runs), started from the class means plus
    noise."""
    from posebh_hf.losses import fit_prototypes as fit

    generator = torch.Generator().manual_seed(seed)
    start = class_mean_prototypes(unit, keypoints, stride).repeat(1, num_prototypes, 1)
    start = start + 0.1 * torch.randn(start.shape, generator=generator)
    pix = keypoint_pixels(keypoints, tuple(unit.shape[-2:]), stride)
    target = torch.as_tensor(pix[..., 1] * unit.shape[-1] + pix[..., 0])  # [N, K] flat pixel index
    seen = torch.as_tensor(keypoints[..., 2] > 0)
    return fit(unit, target, seen, start, similarity="abs_cosine", steps=FIT_STEPS, lr=FIT_LR,
               logit_scale=LOGIT_SCALE)


def frames(model, json_file: Path, cache: Path, backbone: bool = False):
    """({map name: [N, C, H, W]}, ground truth [N, K, 3] in crop pixels, validation set) of a COCO file's crops, cut
    like the transfer run's validation, in one pass: the embedding map, and with `backbone` the backbone map
    (upsampled x4) as it is and centred per image (what the linear embedding head does). Not normalised."""
    from torch.utils.data import DataLoader

    from posebh_hf.data.collate import PoseCollator
    from posebh_hf.training import load_train_config

    cfg = load_train_config(CONFIGS / "transfer_reaching.yaml",
                            [f"data.datasets.0.val={json_file}", f"data.datasets.0.images={TRANSFER}",
                             f"data.cache_dir={cache}"])
    vset = config_val_sets(cfg, cache)[0]
    source = cfg.transfer.source_dataset
    maps, truth = defaultdict(list), []
    loader = DataLoader(vset.view, batch_size=8, collate_fn=PoseCollator(vset.skeleton.num_keypoints))
    with torch.no_grad():
        for batch in loader:
            features = model.backbone_features(batch["pixel_values"], source)  # [B, C, h, w]
            maps["embedding map"].append(model.embedding_head(features).float())
            if backbone:
                upsampled = F.interpolate(features.float(), scale_factor=4, mode="bilinear")
                maps["backbone map"].append(upsampled)
                maps["backbone map, centred per image"].append(upsampled - upsampled.mean((2, 3), keepdim=True))
            truth.append(batch["keypoints"].numpy())
    return {name: torch.cat(parts) for name, parts in maps.items()}, np.concatenate(truth), vset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--k", type=int, default=35, help="train frames (the first k, as the transfer runs)")
    parser.add_argument("--backbone", action="store_true", help="also probe the backbone map (see module doc)")
    args = parser.parse_args(argv)

    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.training.validation import score_predictions

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    t0 = time.perf_counter()
    model = PoseBHForPoseEstimation.from_pretrained(args.model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        train_json = _subset_json(args.k, Path(tmp))
        train_maps, train_gt, _ = frames(model, train_json, Path(tmp) / "train_cache", args.backbone)
        test_maps, test_gt, test_set = frames(model, TRANSFER / "dlc_reaching_test.json", Path(tmp) / "test_cache",
                                              args.backbone)
    print(f"{args.model}: dlc_reaching, k = {args.k} train frames")
    for name in train_maps:
        train_unit, test_unit = F.normalize(train_maps[name], dim=1), F.normalize(test_maps[name], dim=1)
        print(f" {name} {tuple(test_unit.shape[1:])}, {len(test_gt)} test frames:")
        _report(train_unit, train_gt, test_unit, test_gt, test_set, score_predictions)
    print(f"  {time.perf_counter() - t0:.0f} s")
    return 0


def _report(train_unit, train_gt, test_unit, test_gt, test_set, score_predictions) -> None:
    stride = test_set.stride
    for name, protos in (("class mean (M = 1)", class_mean_prototypes(train_unit, train_gt, stride)),
                         ("fitted (M = 3)", fit_prototypes(train_unit, train_gt, stride))):
        pcks = []
        for unit, gt in ((train_unit, train_gt), (test_unit, test_gt)):
            pred = argmax_keypoints(unit_similarity(unit, protos), stride)
            pcks.append(100 * score_predictions(pred, np.ones(pred.shape[:2]), gt, test_set.skeleton, 0.2)["pck"])
        print(f"  prototypes {name:20s} test PCK@0.2 {pcks[1]:5.1f}   (train frames {pcks[0]:5.1f})")


if __name__ == "__main__":
    sys.exit(main())
