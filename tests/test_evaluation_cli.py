"""`posebh evaluate`: metrics JSON on stdout, one clear error line and exit code 2 on bad input."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from test_evaluation_common import gt_as_predictions, load, perturbed_predictions

from posebh_hf.cli import evaluate as evaluate_cli
from posebh_hf.evaluation import evaluate


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="posebh")
    evaluate_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _dump(tmp_path, name, data) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(("protocol", "rel"), [
    ("coco", "coco/test_coco.json"), ("aic", "aic/test_aic.json"), ("crowdpose", "crowdpose/test_crowdpose.json"),
    ("coco_wholebody", "coco_wholebody/test_coco_wholebody.json"), ("ochuman", "ochuman/test_ochuman.json"),
    ("ap10k", "ap10k/test_ap10k.json"),
])
def test_self_evaluation_prints_metrics(shared_data, tmp_path, capsys, protocol, rel):
    gt = shared_data / "real" / rel
    pred = _dump(tmp_path, "pred.json", gt_as_predictions(load(gt)))
    out_file = tmp_path / "metrics.json"
    code, out, err = _run(["evaluate", "--gt", str(gt), "--pred", pred, "--protocol", protocol,
                           "--output", str(out_file)], capsys)
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["AP"] == pytest.approx(1.0)
    assert json.loads(out_file.read_text()) == metrics


def test_pckh_and_custom_skeleton_flags(shared_data, tmp_path, capsys):
    mpii = shared_data / "real" / "mpii"
    code, out, err = _run(["evaluate", "--gt", str(mpii / "test_mpii.json"), "--pred", str(mpii / "test_mpii.json"),
                           "--protocol", "pckh", "--headboxes", str(mpii / "mpii_val_headboxes_first5.json"),
                           "--pred-one-based"], capsys)
    assert code == 0, err
    assert json.loads(out)["PCKh"] == 100.0
    gt = shared_data / "real" / "coco" / "test_coco.json"
    preds = perturbed_predictions(load(gt), seed=2, extra=0.0, false_positives=0)  # one per GT person
    pred = _dump(tmp_path, "p.json", preds)
    code, out, err = _run(["evaluate", "--gt", str(gt), "--pred", pred, "--protocol", "pck", "--skeleton", "coco",
                         "--thr", "0.1", "--norm", "torso", "--torso", "left_shoulder,right_hip"], capsys)
    assert code == 0, err
    expected = evaluate("pck", gt, preds, skeleton="coco", thr=0.1, norm="torso", torso=("left_shoulder", "right_hip"))
    assert json.loads(out)["PCK"] == pytest.approx(expected["PCK"])


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: p[0].update(image_id=999), "image_id 999"),
    (lambda p: p[1].update(keypoints=[1.0, 2.0, 3.0]), "3 values, expected 51"),
    (lambda p: p[2]["keypoints"].__setitem__(0, "abc"), "must be a flat list of numbers"),
])
def test_bad_prediction_gives_one_line_and_exit_2(shared_data, tmp_path, capsys, mutate, message):
    gt = shared_data / "real" / "coco" / "test_coco.json"
    preds = perturbed_predictions(load(gt), seed=0)
    mutate(preds)
    code, out, err = _run(["evaluate", "--gt", str(gt), "--pred", _dump(tmp_path, "p.json", preds),
                           "--protocol", "coco"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("posebh evaluate: error:") and message in err


def test_nan_and_empty_files(shared_data, tmp_path, capsys):
    gt = shared_data / "real" / "coco" / "test_coco.json"
    preds = perturbed_predictions(load(gt), seed=0)
    text = json.dumps(preds).replace(str(preds[0]["keypoints"][0]), "NaN", 1)
    nan_file = tmp_path / "nan.json"
    nan_file.write_text(text)
    code, _, err = _run(["evaluate", "--gt", str(gt), "--pred", str(nan_file), "--protocol", "coco"], capsys)
    assert code == 2 and "NaN" in err
    empty = tmp_path / "empty.json"
    empty.write_text("")
    code, _, err = _run(["evaluate", "--gt", str(gt), "--pred", str(empty), "--protocol", "coco"], capsys)
    assert code == 2 and "is empty" in err
    code, _, err = _run(["evaluate", "--gt", str(gt), "--pred", str(empty), "--protocol", "coco",
                         "--headboxes", "x.json"], capsys)
    assert code == 2 and "--headboxes" in err


def test_registered_in_the_posebh_command(shared_data, tmp_path, capsys):
    from posebh_hf.cli import main

    gt = shared_data / "real" / "ochuman" / "test_ochuman.json"
    pred = _dump(tmp_path, "p.json", perturbed_predictions(load(gt), seed=1, noise=0.02))
    assert main(["evaluate", "--gt", str(gt), "--pred", pred, "--protocol", "ochuman"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 < metrics["AP"] <= 1 and np.isfinite(metrics["ARl"])


def test_a_failed_output_write_keeps_the_metrics(shared_data, tmp_path, capsys):
    gt = shared_data / "real" / "coco" / "test_coco.json"
    pred = _dump(tmp_path, "pred.json", gt_as_predictions(load(gt)))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, out, err = _run(["evaluate", "--gt", str(gt), "--pred", pred, "--protocol", "coco",
                           "--output", str(blocker / "metrics.json")], capsys)
    assert code == 2 and json.loads(out)["AP"] == pytest.approx(1.0)  # printed before the write failed
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(blocker) in lines[0] and "the metrics are on stdout above" in lines[0]
