"""`evaluate_model` (posebh_hf.model_evaluation, layer 4): GT and detection boxes, mmpose rescoring + OKS-NMS,
PCK/PCKh paths."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from test_evaluation_common import load

from posebh_hf.evaluation import evaluate, oks_nms, rescore_instances
from posebh_hf.geometry import box_to_center_scale, sanitize_box_xywh
from posebh_hf.skeletons import get_skeleton


def _rows(gt: dict, extra: dict | None = None) -> list[dict]:
    """HF-schema rows (0-based keypoints [K, 3]) with a blank image; `extra` maps image id -> row fields."""
    rows = []
    for img in gt["images"]:
        objs = [{"id": a["id"], "category_id": a.get("category_id", 1), "bbox": a["bbox"], "area": a.get("area"),
                 "iscrowd": a.get("iscrowd", 0), "keypoints": np.reshape(a["keypoints"], (-1, 3)).tolist(),
                 "num_keypoints": int((np.reshape(a["keypoints"], (-1, 3))[:, 2] > 0).sum())}
                for a in gt["annotations"] if a["image_id"] == img["id"]]
        row = {"image": np.zeros((img["height"], img["width"], 3), np.uint8), "image_id": img["id"],
               "width": img["width"], "height": img["height"], "file_name": img["file_name"], "objects": objs}
        row.update((extra or {}).get(img["id"], {}))
        rows.append(row)
    return rows


class OraclePipeline:
    """Pipeline stand-in: for each box, the keypoints of the GT person whose box overlaps it most (+ noise),
    scores 0.9 on labelled keypoints and 0.1 elsewhere. Records its calls."""

    def __init__(self, gt: dict, skeleton: str, noise: float = 0.0, seed: int = 0) -> None:
        self.gt, self.name, self.noise = gt, skeleton, noise
        self.rng = np.random.default_rng(seed)
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, image, boxes, skeletons, flip=True):
        assert skeletons == [self.name]
        self.calls.append((len(boxes), flip))
        anns = [a for a in self.gt["annotations"] if np.any(np.reshape(a["keypoints"], (-1, 3))[:, 2] > 0)]
        out = []
        for box in boxes:
            best = max(anns, key=lambda a: _iou(a["bbox"], box))
            k = np.reshape(best["keypoints"], (-1, 3)).astype(float)
            xy = k[:, :2] + self.rng.normal(0, self.noise, (len(k), 2)) * max(box[2], box[3])
            out.append({self.name: {"keypoints": xy, "scores": np.where(k[:, 2] > 0, 0.9, 0.1)}})
        return out


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


def _mmpose_oks_nms(kpts, scores, areas, sigmas, thr):
    """mmpose 0.x oks_iou / oks_nms, transcribed."""
    vars_ = (sigmas * 2) ** 2
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(i)
        g, d = kpts[i].flatten(), kpts[order[1:]].reshape(len(order) - 1, kpts.shape[1] * kpts.shape[2])
        ious = np.zeros(len(d), dtype=np.float32)
        for n in range(len(d)):
            dx, dy = d[n, 0::3] - g[0::3], d[n, 1::3] - g[1::3]
            e = (dx**2 + dy**2) / vars_ / ((areas[i] + areas[order[1:]][n]) / 2 + np.spacing(1)) / 2
            ious[n] = np.sum(np.exp(-e)) / len(e)
        order = order[np.where(ious <= thr)[0] + 1]
    return keep


def test_oks_nms_and_rescoring_match_mmpose():
    rng = np.random.default_rng(0)
    sigmas = get_skeleton("coco").oks_sigmas()
    for _ in range(20):
        n = int(rng.integers(1, 12))
        base = rng.uniform(0, 200, (1, 17, 2))
        kpts = np.concatenate([base + rng.normal(0, rng.uniform(0.5, 30), (n, 17, 2)), rng.uniform(0, 1, (n, 17, 1))],
                              axis=2)
        box_scores = rng.uniform(0.1, 1, n)
        scores = rescore_instances(kpts[:, :, 2], box_scores, 0.2)
        for j in range(n):  # mmpose's loop: mean of the keypoint scores above 0.2, times the box score
            above = kpts[j, :, 2][kpts[j, :, 2] > 0.2]
            assert scores[j] == pytest.approx((above.mean() if len(above) else 0.0) * box_scores[j], rel=1e-12)
        areas = rng.uniform(1000, 40000, n)
        assert oks_nms(kpts, scores, areas, sigmas, 0.9) == _mmpose_oks_nms(kpts, scores, areas, sigmas, 0.9)


def test_gt_boxes_with_an_exact_pipeline_score_one(shared_data):
    from posebh_hf.model_evaluation import evaluate_model

    gt = load(shared_data / "real" / "coco" / "test_coco.json")
    pipe = OraclePipeline(gt, "coco")
    metrics = evaluate_model(pipe, _rows(gt), "coco", progress=False)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)
    assert sum(n for n, _ in pipe.calls) == 12  # the 12 persons with keypoints, one call per image
    assert all(flip for _, flip in pipe.calls)
    evaluate_model(pipe, _rows(gt), "coco", flip=False, progress=False)
    assert not pipe.calls[-1][1]


def test_instances_keep_their_category(shared_data):
    """AP-10K scores per species: predictions inherit the GT instance's category (antelope 1, jaguar 26)."""
    from posebh_hf.model_evaluation import evaluate_model

    gt = load(shared_data / "real" / "ap10k" / "test_ap10k.json")
    assert {a["category_id"] for a in gt["annotations"]} == {1, 26}
    metrics = evaluate_model(OraclePipeline(gt, "ap10k"), _rows(gt), "ap10k", progress=False)
    assert metrics["AP"] == pytest.approx(1.0)


def test_detection_boxes_follow_the_coco_protocol(shared_data, tmp_path):
    """Detections -> oracle keypoints -> mmpose rescoring and OKS-NMS (written out here) -> pycocotools-equal
    `coco` protocol; low-score boxes are dropped by det_score_thr."""
    from posebh_hf.model_evaluation import evaluate_model

    real = shared_data / "real" / "coco"
    gt = load(real / "test_coco.json")
    dets = load(real / "test_coco_det_AP_H_56.json")
    sigmas = get_skeleton("coco").oks_sigmas()
    ours = evaluate_model(OraclePipeline(gt, "coco", noise=0.02, seed=1), _rows(gt), "coco",
                          boxes=real / "test_coco_det_AP_H_56.json", progress=False,
                          save_predictions=tmp_path / "preds.json")
    pipe = OraclePipeline(gt, "coco", noise=0.02, seed=1)
    expected_preds = []
    for img in gt["images"]:
        mine = [d for d in dets if d["image_id"] == img["id"] and d["category_id"] == 1]
        if not mine:
            continue
        res = pipe(None, [d["bbox"] for d in mine], ["coco"])
        kpts = np.stack([np.concatenate([r["coco"]["keypoints"], r["coco"]["scores"][:, None]], 1) for r in res])
        scores = np.array([d["score"] * r["coco"]["scores"][r["coco"]["scores"] > 0.2].mean() for d, r in
                           zip(mine, res, strict=True)])
        _, scale = box_to_center_scale(np.array([d["bbox"] for d in mine]))
        keep = _mmpose_oks_nms(kpts, scores, np.prod(scale * 200.0, axis=1), sigmas, 0.9)
        expected_preds += [{"image_id": img["id"], "category_id": 1, "keypoints": kpts[k].reshape(-1).tolist(),
                            "score": float(scores[k])} for k in keep]
    expected = evaluate("coco", gt, expected_preds)
    assert ours == pytest.approx(expected, abs=1e-12)
    assert len(json.loads((tmp_path / "preds.json").read_text())) == len(expected_preds) < len(dets)
    high = evaluate_model(OraclePipeline(gt, "coco", noise=0.02, seed=1), _rows(gt), "coco",
                          boxes=real / "test_coco_det_AP_H_56.json", det_score_thr=0.5, progress=False)
    assert high != ours


def test_gt_boxes_are_cleaned_like_mmpose(shared_data):
    from posebh_hf.model_evaluation import _gt_boxes

    gt = load(shared_data / "real" / "coco" / "test_coco.json")
    row = _rows(gt)[0]
    boxes, scores, ids, _ = _gt_boxes(row, clean=True)
    objs = {o["id"]: o for o in row["objects"]}
    for box, ann_id in zip(boxes, ids, strict=True):
        np.testing.assert_allclose(box, sanitize_box_xywh(objs[ann_id]["bbox"], row["width"], row["height"]))
    assert scores == [1.0] * len(boxes)


def test_pckh_and_pck_through_the_loop(shared_data):
    from posebh_hf.model_evaluation import evaluate_model

    folder = shared_data / "real" / "mpii"
    records = json.loads((folder / "test_mpii.json").read_text())
    heads = json.loads((folder / "mpii_val_headboxes_first5.json").read_text())["entries"]
    images = [{"id": i + 1, "width": 1280, "height": 720, "file_name": r["image"]} for i, r in enumerate(records)]
    anns = []
    for i, r in enumerate(records):
        j = np.array(r["joints"], float) - 1.0  # the dataset stores 0-based joints
        v = np.array(r["joints_vis"], float)
        k = np.concatenate([np.where(v[:, None] > 0, j, 0), 2 * v[:, None]], axis=1)
        side = r["scale"] * 200 * 1.25
        anns.append({"id": i + 1, "image_id": i + 1, "bbox": [r["center"][0] - side / 2, r["center"][1] - side / 2,
                                                             side, side], "keypoints": k.reshape(-1).tolist()})
    gt = {"images": images, "annotations": anns}
    head_box = {i + 1: {} for i in range(len(records))}
    rows = _rows(gt, head_box)
    for row, h in zip(rows, heads, strict=True):
        row["objects"][0]["head_box"] = np.reshape(h["headbox"], -1).tolist()
    metrics = evaluate_model(OraclePipeline(gt, "mpii"), rows, "pckh", progress=False)
    assert metrics["PCKh"] == 100.0 and metrics["PCKh@0.1"] == 100.0
    noisy = evaluate_model(OraclePipeline(gt, "mpii", noise=0.05), rows, "pckh", progress=False)
    assert noisy["PCKh"] < 100.0
    pck = evaluate_model(OraclePipeline(gt, "mpii"), rows, "pck", skeleton="mpii", progress=False)
    assert pck["PCK"] == 1.0
    with pytest.raises(ValueError, match="boxes='gt'"):
        evaluate_model(OraclePipeline(gt, "mpii"), rows, "pckh", boxes="dets.json", progress=False)


def test_the_layer_1_package_does_not_reach_the_layer_4_loop(monkeypatch):
    """`posebh_hf.evaluation` (layer 1) neither imports nor serves `evaluate_model`; it lives at layer 4
    (`posebh_hf.model_evaluation`, re-exported by the package root)."""
    import importlib

    import posebh_hf
    from posebh_hf.model_evaluation import evaluate_model

    monkeypatch.delitem(sys.modules, "posebh_hf.model_evaluation", raising=False)
    monkeypatch.delitem(sys.modules, "posebh_hf.evaluation", raising=False)
    monkeypatch.setattr(posebh_hf, "evaluation", None, raising=False)  # restored with the modules afterwards
    fresh = importlib.import_module("posebh_hf.evaluation")
    assert "posebh_hf.model_evaluation" not in sys.modules
    assert not hasattr(fresh, "evaluate_model")
    assert posebh_hf.evaluate_model is evaluate_model


def test_a_real_tiny_model_runs_end_to_end(shared_data):
    torch = pytest.importorskip("torch")
    from PIL import Image

    from posebh_hf import PoseBHConfig, PoseBHForPoseEstimation
    from posebh_hf.model_evaluation import evaluate_model

    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny())
    gt = load(shared_data / "real" / "coco" / "test_coco.json")
    rows = _rows(gt)
    for row in rows:
        row["image"] = Image.open(shared_data / "real" / "coco" / row["file_name"])
    metrics = evaluate_model(model, rows[:2], "coco", flip=True, progress=False)
    assert set(metrics) >= {"AP", "AR"} and 0.0 <= metrics["AP"] <= 1.0
