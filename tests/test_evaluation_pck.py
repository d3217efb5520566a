"""`pck-auc-epe` (InterHand2.6M) and `pck` (any skeleton) against the formulas written out independently."""

from __future__ import annotations

import json

import numpy as np
import pytest

from posebh_hf.evaluation import EvaluationInputError, evaluate


def _interhand_gt(folder) -> dict:
    """COCO-format GT from the real InterHand2.6M files: project the world joints with the camera
    (cam = R (X - campos), uv = f * xy / z + princpt), one annotation per valid hand (right = joints 0-20),
    box = tight box of the valid joints."""
    data = json.loads((folder / "test_interhand2.6m_data.json").read_text())
    cams = json.loads((folder / "test_interhand2.6m_camera.json").read_text())
    joints = json.loads((folder / "test_interhand2.6m_joint_3d.json").read_text())
    images = {img["id"]: img for img in data["images"]}
    anns = []
    for ann in data["annotations"]:
        img = images[ann["image_id"]]
        cam = cams[str(img["capture"])]
        name = str(img["camera"])
        rot, pos = np.array(cam["camrot"][name]), np.array(cam["campos"][name])
        focal, princpt = np.array(cam["focal"][name]), np.array(cam["princpt"][name])
        world = np.array(joints[str(img["capture"])][str(img["frame_idx"])]["world_coord"])
        xyz = (rot @ (world - pos).T).T
        uv = xyz[:, :2] / xyz[:, 2:] * focal + princpt
        valid = np.array(ann["joint_valid"]).reshape(-1)
        for hand in (0, 1):
            sl = slice(21 * hand, 21 * hand + 21)
            v = valid[sl] * valid[21 * hand + 20]
            if v.sum() <= 11:
                continue
            pts = uv[sl][v > 0]
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            kpts = np.concatenate([uv[sl], 2.0 * v[:, None]], axis=1)
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": 1, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "keypoints": kpts.reshape(-1).tolist()})
    return {"images": data["images"], "annotations": anns, "categories": [{"id": 1, "name": "hand"}]}


@pytest.fixture
def interhand(shared_data):
    gt = _interhand_gt(shared_data / "real" / "interhand2.6m")
    assert len(gt["annotations"]) >= 4
    return gt


def _predictions(gt: dict, noise_px: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    preds = []
    for ann in gt["annotations"]:
        k = np.reshape(ann["keypoints"], (-1, 3)).copy()
        k[:, :2] += rng.normal(0, noise_px, (len(k), 2)) * rng.uniform(0.2, 2.0, (len(k), 1))
        k[:, 2] = 1.0
        preds.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": k.reshape(-1).tolist(),
                      "score": 1.0})
    return preds


def _direct(gt: dict, preds: list[dict], thr: float = 0.2, auc_px: float = 30.0) -> dict[str, float]:
    """PCK / AUC / EPE written out with plain loops (mmpose's definitions: float32 GT and distances, strict
    `<` against thr x max(w, h), mean over keypoints of per-keypoint accuracy; AUC = mean PCK at i/20 * 30 px)."""
    samples = []
    for ann, pred in zip(gt["annotations"], preds, strict=True):
        g = np.reshape(ann["keypoints"], (-1, 3))
        p = np.reshape(pred["keypoints"], (-1, 3))
        size = float(max(np.float32(ann["bbox"][2]), np.float32(ann["bbox"][3])))
        for k in range(len(g)):
            if g[k, 2] > 0:
                gx, gy = float(np.float32(g[k, 0])), float(np.float32(g[k, 1]))
                samples.append((k, p[k, 0] - gx, p[k, 1] - gy, size))

    def pck(norm_of, t):
        per_k = {}
        for k, dx, dy, size in samples:
            n = norm_of(size)
            d = np.float32(np.hypot(dx / n, dy / n))
            per_k.setdefault(k, []).append(d < t)
        return float(np.mean([np.mean(v) for v in per_k.values()]))

    auc = sum(pck(lambda s: auc_px, i / 20) for i in range(20)) / 20
    dists = np.array([np.float32(np.hypot(dx, dy)) for _, dx, dy, _ in samples], dtype=np.float32)
    return {"PCK": pck(lambda s: s, thr), "AUC": auc, "EPE": float(dists.sum() / len(dists))}


def test_ground_truth_against_itself(interhand):
    preds = _predictions(interhand, 0.0, 0)
    metrics = evaluate("pck-auc-epe", interhand, preds)
    assert metrics["PCK"] == 1.0
    assert metrics["EPE"] == pytest.approx(0.0, abs=1e-4)  # GT held in float32 like mmpose's joints_3d
    # mmpose's AUC starts its 20 thresholds at 0 px, where nothing is "< 0": a perfect result scores 19 / 20.
    assert metrics["AUC"] == pytest.approx(0.95, abs=1e-12)
    assert evaluate("pck", interhand, preds, skeleton="interhand")["PCK"] == 1.0


@pytest.mark.parametrize("noise", [1.0, 4.0, 12.0])
def test_equals_direct_formula(interhand, noise):
    preds = _predictions(interhand, noise, seed=int(noise))
    ours = evaluate("pck-auc-epe", interhand, preds)
    ref = _direct(interhand, preds)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key
    assert 0 < ours["AUC"] < 0.95


def test_pck_custom_skeleton_bbox_and_torso(interhand):
    preds = _predictions(interhand, 5.0, seed=3)
    ours = evaluate("pck", interhand, preds, thr=0.1)
    assert ours["PCK"] == pytest.approx(_direct(interhand, preds, thr=0.1)["PCK"], abs=1e-6)
    assert "PCK/0" in ours and "EPE/20" in ours  # no skeleton: keypoints named by index
    # torso: distance between the wrist (20) and the middle-finger base (11), per instance
    torso = evaluate("pck", interhand, preds, skeleton="interhand", norm="torso", torso=("wrist", "11"))
    sizes = [np.linalg.norm(np.reshape(a["keypoints"], (-1, 3))[20, :2].astype(np.float32)
                            - np.reshape(a["keypoints"], (-1, 3))[11, :2].astype(np.float32))
             for a in interhand["annotations"]]
    rescaled = json.loads(json.dumps(interhand))
    for ann, size in zip(rescaled["annotations"], sizes, strict=True):
        ann["bbox"][2] = ann["bbox"][3] = float(size)  # bbox normalisation with max(w, h) = torso length
    assert torso["PCK"] == pytest.approx(evaluate("pck", rescaled, preds)["PCK"], abs=1e-6)
    assert ours["EPE"] == torso["EPE"]


def test_pairing_by_annotation_id(interhand):
    preds = _predictions(interhand, 3.0, seed=1)
    by_id = [dict(p, annotation_id=a["id"]) for p, a in zip(preds, interhand["annotations"], strict=True)][::-1]
    assert evaluate("pck-auc-epe", interhand, by_id) == evaluate("pck-auc-epe", interhand, preds)


def test_bad_inputs(interhand):
    preds = _predictions(interhand, 3.0, seed=1)
    with pytest.raises(EvaluationInputError, match="no prediction for ground-truth annotations"):
        evaluate("pck-auc-epe", interhand, preds[:-1])
    with pytest.raises(EvaluationInputError, match="no ground-truth instance left"):
        evaluate("pck-auc-epe", interhand, [*preds, preds[0]])
    with pytest.raises(EvaluationInputError, match="skeleton 'coco' has 17"):
        evaluate("pck", interhand, preds, skeleton="coco")
    with pytest.raises(EvaluationInputError, match="torso"):
        evaluate("pck", interhand, preds, norm="torso")
