"""`coco` protocol (and its ap10k / ochuman / pw3d / custom-K forms) against pycocotools run directly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_evaluation_common import (
    coco_from_dict,
    gt_as_predictions,
    load,
    perturbed_predictions,
    pycocotools_eval,
)

from posebh_hf.evaluation import COCO_STAT_NAMES, EvaluationInputError, evaluate, evaluate_coco
from posebh_hf.evaluation.cocoeval import FastKeypointEval, build_dt_coco, build_gt_coco, quiet
from posebh_hf.evaluation.inputs import load_coco_ground_truth, load_coco_predictions
from posebh_hf.skeletons import Skeleton, get_skeleton

REAL = [("coco", "coco/test_coco.json", "coco"), ("ochuman", "ochuman/test_ochuman.json", "ochuman"),
        ("ap10k", "ap10k/test_ap10k.json", "ap10k")]


def _ours(metrics: dict) -> np.ndarray:
    return np.array([metrics[n] for n in COCO_STAT_NAMES])


@pytest.mark.parametrize(("protocol", "rel", "skeleton"), REAL)
def test_ground_truth_against_itself_scores_one(shared_data, protocol, rel, skeleton):
    gt_file = shared_data / "real" / rel
    metrics = evaluate(protocol, gt_file, gt_as_predictions(load(gt_file)))
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["AR"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("protocol", "rel", "skeleton"), REAL)
def test_perturbed_predictions_equal_pycocotools(shared_data, protocol, rel, skeleton, seed):
    gt_file = shared_data / "real" / rel
    aps = []
    for noise in (0.01, 0.04, 0.1):
        preds = perturbed_predictions(load(gt_file), seed=seed, noise=noise)
        ref = pycocotools_eval(gt_file, preds, get_skeleton(skeleton).oks_sigmas()).stats
        ours = _ours(evaluate(protocol, gt_file, preds))
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
        aps.append(ref[0])
    assert any(0 < ap < 1 for ap in aps)  # the perturbation really moves AP off 1


def test_sigmas_matter(shared_data):
    """ap10k and coco share K = 17 but not sigmas: the protocol must use the skeleton's."""
    gt_file = shared_data / "real" / "ap10k" / "test_ap10k.json"
    preds = perturbed_predictions(load(gt_file), seed=0, noise=0.05)
    assert evaluate("ap10k", gt_file, preds)["AP"] != evaluate("coco", gt_file, preds)["AP"]


def _random_scene(rng: np.random.Generator, k: int, n_images: int = 40) -> tuple[dict, list[dict]]:
    """Synthetic GT with crowd and unlabelled persons, boxes of all sizes, and predictions with duplicates,
    ties (identical predictions), zero-area and far-away false positives."""
    images, anns, preds = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "width": 640, "height": 480})
        for _ in range(int(rng.integers(0, 6))):
            side = float(np.exp(rng.uniform(np.log(10), np.log(300))))
            x, y = rng.uniform(0, 400), rng.uniform(0, 300)
            kp = np.zeros((k, 3))
            kp[:, 0], kp[:, 1] = x + rng.uniform(0, side, k), y + rng.uniform(0, side, k)
            kp[:, 2] = rng.choice([0, 1, 2], k, p=[0.3, 0.2, 0.5])
            crowd = int(rng.uniform() < 0.08)
            if crowd or rng.uniform() < 0.15:
                kp[:] = 0
            kp[kp[:, 2] == 0, :2] = 0
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x, y, side, side],
                         "area": side * side * rng.uniform(0.4, 0.8), "iscrowd": crowd,
                         "keypoints": kp.reshape(-1).tolist(), "num_keypoints": int((kp[:, 2] > 0).sum())})
            if kp[:, 2].any() or rng.uniform() < 0.3:
                for _ in range(int(rng.integers(1, 4))):
                    p = kp.copy()
                    p[:, :2] = np.where(p[:, 2:] > 0, p[:, :2], [x + side / 2, y + side / 2])
                    p[:, :2] += rng.normal(0, rng.uniform(0.01, 0.3) * side, (k, 2))
                    p[:, 2] = rng.uniform(0.01, 1, k)
                    score = float(rng.choice([0.5, rng.uniform()]))  # repeated scores exercise stable sorting
                    preds.append({"image_id": i, "category_id": 1, "keypoints": p.reshape(-1).tolist(),
                                  "score": score})
                    if rng.uniform() < 0.1:
                        preds.append(dict(preds[-1]))  # an exact duplicate: OKS ties
        if rng.uniform() < 0.2:
            p = np.zeros((k, 3))
            p[:, :2], p[:, 2] = rng.uniform(0, 600, 2), 0.5  # all keypoints on one point: zero area
            preds.append({"image_id": i, "category_id": 1, "keypoints": p.reshape(-1).tolist(), "score": 0.9})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    return gt, preds


@pytest.mark.parametrize("seed", range(8))
def test_fast_evaluator_equals_pycocotools_on_random_scenes(seed):
    """Matching rules (crowd, ignore, area ranges, ties, maxDets) on scenes the real files do not cover."""
    rng = np.random.default_rng(seed)
    k = int(rng.choice([5, 17, 24]))
    gt, preds = _random_scene(rng, k)
    sigmas = rng.uniform(0.02, 0.1, k)
    ref = pycocotools_eval(coco_from_dict(gt), preds, sigmas)
    data = load_coco_ground_truth(gt)
    gt_coco = build_gt_coco(data, slice(0, k), use_area=True)
    ours = FastKeypointEval(gt_coco, build_dt_coco(gt_coco, load_coco_predictions(preds, data), slice(0, k)), sigmas)
    with quiet():
        ours.evaluate()
        ours.accumulate()
        ours.summarize()
    assert ours.ious.keys() == ref.ious.keys()
    for key, value in ref.ious.items():
        np.testing.assert_array_equal(ours.ious[key], value)  # bit-identical OKS
    assert len(ours.evalImgs) == len(ref.evalImgs)
    for mine, theirs in zip(ours.evalImgs, ref.evalImgs, strict=True):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert mine.keys() == theirs.keys()
            for field, value in theirs.items():
                np.testing.assert_array_equal(np.asarray(mine[field]), np.asarray(value), err_msg=field)
    np.testing.assert_array_equal(ours.eval["precision"], ref.eval["precision"])
    np.testing.assert_array_equal(ours.eval["recall"], ref.eval["recall"])
    np.testing.assert_array_equal(ours.stats, ref.stats)


def test_custom_skeleton_any_k(tmp_path):
    """A user skeleton (K = 5, no sigmas -> uniform 0.05) evaluated like pycocotools with those sigmas."""
    rng = np.random.default_rng(7)
    gt, preds = _random_scene(rng, 5, n_images=15)
    skel_file = tmp_path / "paw.json"
    skel_file.write_text(json.dumps({"name": "paw", "keypoints": ["a", "b", "c", "d", "e"], "skeleton": [[1, 2]]}))
    skel = get_skeleton(str(skel_file))
    assert isinstance(skel, Skeleton) and skel.sigmas is None
    ref = pycocotools_eval(coco_from_dict(gt), preds, np.full(5, 0.05)).stats
    np.testing.assert_allclose(_ours(evaluate("coco", gt, preds, skeleton=str(skel_file))), ref, atol=1e-6)


def test_pw3d_uses_box_area(shared_data):
    """pw3d is COCO with use_area=False: equal to pycocotools on a GT whose area is 0.53 w h (xtcocotools)."""
    rng = np.random.default_rng(11)
    gt, preds = _random_scene(rng, 24, n_images=20)
    boxed = json.loads(json.dumps(gt))
    for ann in boxed["annotations"]:
        ann["area"] = ann["bbox"][3] * ann["bbox"][2] * 0.53
    ref = pycocotools_eval(coco_from_dict(boxed), preds, get_skeleton("smpl24").oks_sigmas()).stats
    ours = _ours(evaluate("pw3d", gt, preds))
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert not np.allclose(ours, _ours(evaluate_coco(gt, preds, "smpl24", use_area=True)))


def test_zero_score_predictions_are_dropped_like_xtcocotools(shared_data):
    gt_file = shared_data / "real" / "coco" / "test_coco.json"
    preds = perturbed_predictions(load(gt_file), seed=4)
    junk = dict(preds[0], keypoints=[v if i % 3 != 2 else 0.0 for i, v in enumerate(preds[0]["keypoints"])],
                score=1.0)
    assert evaluate("coco", gt_file, preds) == evaluate("coco", gt_file, [*preds, junk])


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: p[0].update(image_id=123456789), "image_id 123456789"),
    (lambda p: p[0].update(keypoints=p[0]["keypoints"][:-3]), "48 values, expected 51"),
    (lambda p: p[0]["keypoints"].__setitem__(4, float("nan")), "NaN"),
    (lambda p: p[0].update(score=float("nan")), "'score' is nan"),
    (lambda p: p[0].update(category_id=7), "category_id 7"),
    (lambda p: p[0].pop("keypoints"), "no 'keypoints'"),
])
def test_bad_predictions_raise_clear_errors(shared_data, mutate, message):
    gt_file = shared_data / "real" / "coco" / "test_coco.json"
    preds = perturbed_predictions(load(gt_file), seed=0)
    mutate(preds)
    with pytest.raises(EvaluationInputError, match=message.replace("(", r"\(")):
        evaluate("coco", gt_file, preds)


def test_bad_files_raise_clear_errors(shared_data, tmp_path):
    gt_file = shared_data / "real" / "coco" / "test_coco.json"
    with pytest.raises(EvaluationInputError, match="is empty"):
        evaluate("coco", gt_file, _write(tmp_path, "empty.json", ""))
    with pytest.raises(EvaluationInputError, match="contains no predictions"):
        evaluate("coco", gt_file, _write(tmp_path, "list.json", "[]"))
    with pytest.raises(EvaluationInputError, match="not valid JSON"):
        evaluate("coco", gt_file, _write(tmp_path, "bad.json", "[{"))
    with pytest.raises(EvaluationInputError, match="does not exist"):
        evaluate("coco", tmp_path / "missing.json", [])
    with pytest.raises(EvaluationInputError, match="skeleton 'coco' has 17"):
        evaluate("coco", shared_data / "real" / "aic" / "test_aic.json", [])
    with pytest.raises(EvaluationInputError, match="unknown protocol"):
        evaluate("nope", gt_file, [])
    with pytest.raises(EvaluationInputError, match="takes no option"):
        evaluate("coco", gt_file, perturbed_predictions(load(gt_file), 0), thr=0.3)
