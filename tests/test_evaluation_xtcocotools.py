"""Optional: our OKS protocols against the real xtcocotools (mmpose's evaluator), run in a separate interpreter.

xtcocotools needs numpy < 2, so it cannot live in the project's environment. Point POSEBH_XTCOCOTOOLS_PYTHON at a
Python that has it (e.g. `python -m venv /tmp/xt && /tmp/xt/bin/pip install "numpy<2" xtcocotools`); the test is
skipped otherwise. It calls COCOeval exactly as mmpose 0.x does for COCO (use_area=True), AIC (use_area=False),
CrowdPose ('keypoints_crowd', use_area=False) and COCO-WholeBody (the six 'keypoints_<part>' evaluations).
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from test_evaluation_common import WHOLEBODY_FIELDS, load, perturbed_predictions

from posebh_hf.evaluation import COCO_STAT_NAMES, evaluate
from posebh_hf.skeletons import get_skeleton

PYTHON = os.environ.get("POSEBH_XTCOCOTOOLS_PYTHON")
pytestmark = pytest.mark.skipif(not PYTHON, reason="set POSEBH_XTCOCOTOOLS_PYTHON to a Python with xtcocotools")

REFERENCE = r"""
import contextlib, io, json, sys
import numpy as np
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval
gt_file, pred_file, protocol, sigma_file = sys.argv[1:5]
sigmas = np.array(json.load(open(sigma_file)))
out = {}
with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO(gt_file)
    det = coco.loadRes(json.load(open(pred_file)))
    if protocol == "coco_wholebody":
        cuts = np.cumsum([0, 17, 6, 68, 21, 21])
        for i, part in enumerate(["body", "foot", "face", "lefthand", "righthand", "wholebody"]):
            sl = slice(0, 133) if part == "wholebody" else slice(cuts[i], cuts[i + 1])
            ev = COCOeval(coco, det, "keypoints_" + part, sigmas[sl], use_area=True)
            ev.params.useSegm = None
            ev.evaluate(); ev.accumulate(); ev.summarize()
            out[part] = [float(v) for v in ev.stats]
    else:
        iou_type = "keypoints_crowd" if protocol == "crowdpose" else "keypoints"
        ev = COCOeval(coco, det, iou_type, sigmas, use_area=protocol not in ("aic", "crowdpose"))
        ev.params.useSegm = None
        ev.evaluate(); ev.accumulate(); ev.summarize()
        out["stats"] = [float(v) for v in ev.stats]
print(json.dumps(out))
"""

CASES = [("coco", "coco/test_coco.json", "coco"), ("ochuman", "ochuman/test_ochuman.json", "ochuman"),
         ("ap10k", "ap10k/test_ap10k.json", "ap10k"), ("aic", "aic/test_aic.json", "aic"),
         ("crowdpose", "crowdpose/test_crowdpose.json", "crowdpose"),
         ("coco_wholebody", "coco_wholebody/test_coco_wholebody.json", "coco_wholebody")]


def _mmpose_layout(preds: list[dict]) -> list[dict]:
    """COCO-WholeBody results as mmpose writes them: body in 'keypoints', parts in their own fields."""
    out = []
    for p in preds:
        k = list(p["keypoints"])
        rec, start = dict(p, keypoints=k[:51]), 51
        for field, n in zip(WHOLEBODY_FIELDS, (6, 68, 21, 21), strict=True):
            rec[field] = k[start:start + 3 * n]
            start += 3 * n
        out.append(rec)
    return out


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("protocol", "rel", "skeleton"), CASES)
def test_equals_xtcocotools(shared_data, tmp_path, protocol, rel, skeleton, seed):
    gt_file = shared_data / "real" / rel
    script = tmp_path / "ref.py"
    script.write_text(REFERENCE)
    sigma_file = tmp_path / "sigmas.json"
    sigma_file.write_text(json.dumps(get_skeleton(skeleton).oks_sigmas().tolist()))
    for noise in (0.005, 0.03):
        preds = perturbed_predictions(load(gt_file), seed=seed, noise=noise)
        zero = dict(preds[0], keypoints=[0.0 if i % 3 == 2 else v for i, v in enumerate(preds[0]["keypoints"])])
        preds.append(zero)  # xtcocotools drops predictions whose keypoint scores are all zero
        pred_file = tmp_path / "pred.json"
        pred_file.write_text(json.dumps(_mmpose_layout(preds) if protocol == "coco_wholebody" else preds))
        done = subprocess.run([PYTHON, str(script), str(gt_file), str(pred_file), protocol, str(sigma_file)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        ref = json.loads(done.stdout)
        ours = evaluate(protocol, gt_file, preds)
        if protocol == "coco_wholebody":
            pairs = [(ours[f"{part}/{n}"], ref[part][i]) for part in ref for i, n in enumerate(COCO_STAT_NAMES)]
        elif protocol == "crowdpose":
            names = ["AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP(E)", "AP(M)", "AP(H)"]
            pairs = [(ours[n], ref["stats"][i]) for i, n in enumerate(names)]
        else:
            pairs = [(ours[n], ref["stats"][i]) for i, n in enumerate(COCO_STAT_NAMES)]
        np.testing.assert_allclose([a for a, _ in pairs], [b for _, b in pairs], rtol=0, atol=1e-12)
