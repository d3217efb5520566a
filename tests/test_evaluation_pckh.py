"""`pckh`: MPII PCKh@0.5 / @0.1 against a literal transcription of mmpose's TopDownMpiiDataset.evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.io import savemat

from posebh_hf.evaluation import EvaluationInputError, evaluate

NAMES = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thrx", "neck", "head", "rwri", "relb", "rsho",
         "lsho", "lelb", "lwri")


def _mmpose_pckh(preds_0based: np.ndarray, pos_gt_src, jnt_missing, headboxes_src) -> dict[str, float]:
    """mmpose 0.x TopDownMpiiDataset.evaluate after `preds = preds[..., :2] + 1.0` (masked arrays and all)."""
    preds = preds_0based + 1.0
    sc_bias, threshold = 0.6, 0.5
    dataset_joints = np.array([NAMES])
    pos_pred_src = np.transpose(preds, [1, 2, 0])
    j = {n: np.where(dataset_joints == n)[1][0] for n in NAMES}
    jnt_visible = 1 - jnt_missing
    uv_error = pos_pred_src - pos_gt_src
    uv_err = np.linalg.norm(uv_error, axis=1)
    headsizes = headboxes_src[1, :, :] - headboxes_src[0, :, :]
    headsizes = np.linalg.norm(headsizes, axis=0)
    headsizes *= sc_bias
    scale = headsizes * np.ones((len(uv_err), 1), dtype=np.float32)
    scaled_uv_err = uv_err / scale
    scaled_uv_err = scaled_uv_err * jnt_visible
    jnt_count = np.sum(jnt_visible, axis=1)
    less_than_threshold = (scaled_uv_err <= threshold) * jnt_visible
    pckh = 100.0 * np.sum(less_than_threshold, axis=1) / jnt_count
    rng = np.arange(0, 0.5 + 0.01, 0.01)
    pck_all = np.zeros((len(rng), 16), dtype=np.float32)
    for r, thr in enumerate(rng):
        less_than_threshold = (scaled_uv_err <= thr) * jnt_visible
        pck_all[r, :] = 100.0 * np.sum(less_than_threshold, axis=1) / jnt_count
    pckh = np.ma.array(pckh, mask=False)
    pckh.mask[6:8] = True
    jnt_count = np.ma.array(jnt_count, mask=False)
    jnt_count.mask[6:8] = True
    jnt_ratio = jnt_count / np.sum(jnt_count).astype(np.float64)
    return {"Head": pckh[j["head"]], "Shoulder": 0.5 * (pckh[j["lsho"]] + pckh[j["rsho"]]),
            "Elbow": 0.5 * (pckh[j["lelb"]] + pckh[j["relb"]]), "Wrist": 0.5 * (pckh[j["lwri"]] + pckh[j["rwri"]]),
            "Hip": 0.5 * (pckh[j["lhip"]] + pckh[j["rhip"]]), "Knee": 0.5 * (pckh[j["lkne"]] + pckh[j["rkne"]]),
            "Ankle": 0.5 * (pckh[j["lank"]] + pckh[j["rank"]]), "PCKh": np.sum(pckh * jnt_ratio),
            "PCKh@0.1": np.sum(pck_all[10, :] * jnt_ratio)}


@pytest.fixture
def mpii(shared_data, tmp_path):
    folder = shared_data / "real" / "mpii"
    records = json.loads((folder / "test_mpii.json").read_text())
    heads = json.loads((folder / "mpii_val_headboxes_first5.json").read_text())
    joints = np.array([r["joints"] for r in records], dtype=np.float64)  # 1-based
    vis = np.array([r["joints_vis"] for r in records])
    boxes = np.array([e["headbox"] for e in heads["entries"]], dtype=np.float64)  # [N, 2, 2]
    mat = tmp_path / "mpii_gt_val.mat"
    savemat(mat, {"pos_gt_src": joints.transpose(1, 2, 0), "jnt_missing": (1 - vis).T,
                  "headboxes_src": boxes.transpose(1, 2, 0),
                  "dataset_joints": np.array([[np.array([n]) for n in NAMES]], dtype=object)})
    return {"json": folder / "test_mpii.json", "heads": folder / "mpii_val_headboxes_first5.json", "mat": mat,
            "records": records, "joints": joints, "vis": vis, "boxes": boxes}


def test_head_sizes_are_the_files(mpii):
    heads = json.loads(mpii["heads"].read_text())
    sizes = 0.6 * np.linalg.norm(mpii["boxes"][:, 1] - mpii["boxes"][:, 0], axis=1)
    np.testing.assert_allclose(sizes, [e["head_size"] for e in heads["entries"]], rtol=1e-12)


@pytest.mark.parametrize("gt_kind", ["json", "mat"])
def test_ground_truth_against_itself(mpii, gt_kind):
    preds = (mpii["joints"] - 1.0).tolist()  # 0-based, the frame our pipeline predicts in
    kwargs = {"headboxes": mpii["heads"]} if gt_kind == "json" else {}
    metrics = evaluate("pckh", mpii[gt_kind], preds, **kwargs)
    assert metrics["PCKh"] == 100.0 and metrics["PCKh@0.1"] == 100.0
    assert all(metrics[f"PCKh/{n}"] == 100.0 for n in ("head_top", "right_wrist", "left_ankle"))
    one_based = evaluate("pckh", mpii[gt_kind], mpii["joints"].tolist(), pred_one_based=True, **kwargs)
    assert one_based["PCKh"] == 100.0


@pytest.mark.parametrize("seed", range(4))
def test_equals_mmpose_formula(mpii, seed):
    rng = np.random.default_rng(seed)
    sizes = 0.6 * np.linalg.norm(mpii["boxes"][:, 1] - mpii["boxes"][:, 0], axis=1)
    noise = rng.normal(0, 1, mpii["joints"].shape) * sizes[:, None, None] * rng.uniform(0.05, 0.4)
    preds = mpii["joints"] - 1.0 + noise
    ref = _mmpose_pckh(preds, mpii["joints"].transpose(1, 2, 0), (1 - mpii["vis"]).T,
                       mpii["boxes"].transpose(1, 2, 0))
    for gt_kind in ("json", "mat"):
        kwargs = {"headboxes": mpii["heads"]} if gt_kind == "json" else {}
        ours = evaluate("pckh", mpii[gt_kind], preds.tolist(), **kwargs)
        for key, value in ref.items():
            assert ours[key] == pytest.approx(float(value), abs=1e-6), key
    assert 0 < ref["PCKh"] < 100


def test_prediction_layouts_agree(mpii):
    rng = np.random.default_rng(9)
    preds = mpii["joints"] - 1.0 + rng.normal(0, 6, mpii["joints"].shape)
    names = [r["image"] for r in mpii["records"]]
    plain = evaluate("pckh", mpii["json"], preds.tolist(), headboxes=mpii["heads"])
    keyed = [{"image": n, "joints": p.tolist()} for n, p in zip(names, preds, strict=True)][::-1]
    coco_style = [{"image_id": n, "keypoints": np.concatenate([p, np.ones((16, 1))], 1).reshape(-1).tolist(),
                   "score": 1.0} for n, p in zip(names, preds, strict=True)]
    assert evaluate("pckh", mpii["json"], keyed, headboxes=mpii["heads"]) == plain
    assert evaluate("pckh", mpii["json"], coco_style, headboxes=mpii["heads"]) == plain
    assert evaluate("pckh", mpii["json"], {"preds": preds.tolist()}, headboxes=mpii["heads"]) == plain


def test_missing_joints_do_not_count(mpii):
    """Persons 2 and 3 miss both ankles: moving those predictions far away changes nothing."""
    preds = mpii["joints"] - 1.0
    moved = preds.copy()
    moved[2:4, [0, 5]] += 500.0
    a = evaluate("pckh", mpii["mat"], preds.tolist())
    b = evaluate("pckh", mpii["mat"], moved.tolist())
    assert a == b


def test_bad_inputs(mpii, tmp_path):
    preds = (mpii["joints"] - 1.0).tolist()
    with pytest.raises(EvaluationInputError, match="head boxes"):
        evaluate("pckh", mpii["json"], preds)
    with pytest.raises(EvaluationInputError, match="4 predictions for 5"):
        evaluate("pckh", mpii["mat"], preds[:4])
    with pytest.raises(EvaluationInputError, match="N x 16 x 2"):
        evaluate("pckh", mpii["mat"], [p[:15] for p in preds])
    bad = json.loads(json.dumps(preds))
    bad[1][3][0] = float("nan")
    with pytest.raises(EvaluationInputError, match="NaN"):
        evaluate("pckh", mpii["mat"], bad)
    with pytest.raises(EvaluationInputError, match="'nope.jpg'"):
        evaluate("pckh", mpii["json"], [{"image": "nope.jpg", "joints": preds[0]}], headboxes=mpii["heads"])
    empty = tmp_path / "empty.json"
    empty.write_text(" ")
    with pytest.raises(EvaluationInputError, match="is empty"):
        evaluate("pckh", mpii["mat"], empty)
