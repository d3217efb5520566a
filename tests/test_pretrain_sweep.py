"""benchmarks/pretrain_sweep.py: its configs (equal CPU budget per input size) and its table (fake results)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_sweep():
    sys.path.insert(0, str(REPO / "benchmarks"))  # as `python benchmarks/pretrain_sweep.py` has it (mdt_mini_study)
    spec = importlib.util.spec_from_file_location("pretrain_sweep", REPO / "benchmarks" / "pretrain_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep = _load_sweep()


@pytest.mark.parametrize("name", list(sweep.CANDIDATES))
def test_each_candidate_is_a_valid_config_of_its_size_and_budget(name: str) -> None:
    from posebh_hf.training import load_train_config

    (height, width), steps = sweep.CANDIDATES[name]
    cfg = load_train_config(sweep.CONFIG, sweep.overrides(name, seed=3))
    assert cfg.model.config_overrides["image_size"] == [height, width]
    assert list(cfg.data.augment["input_size"]) == [width, height]
    assert list(cfg.data.augment["heatmap_size"]) == [width // 4, height // 4]
    total = cfg.schedule.epochs * cfg.schedule.steps_per_epoch
    assert steps <= total < steps + cfg.schedule.epochs  # the budget, rounded up to whole epochs
    assert cfg.seed == 3 and Path(cfg.output_dir) == sweep.RUNS / name


def test_equal_budget_means_fewer_steps_for_larger_inputs() -> None:
    pixels_and_steps = sorted((h * w, steps) for (h, w), steps in sweep.CANDIDATES.values())
    assert [steps for _, steps in pixels_and_steps] == sorted((s for _, s in pixels_and_steps), reverse=True)


def _fake_result(runs: Path, name: str, pck: float) -> None:
    metrics = {d: {"pck": pck, "epe": 1.0, "ap": 0.0, "instances": 5.0} for d in sweep.DATASETS}
    (runs / name).mkdir(parents=True)
    (runs / name / "result.json").write_text(json.dumps({"candidate": name, "steps": 10, "wall_s": 90.0,
                                                         "metrics": metrics}))


def test_table_has_a_row_per_stored_result_and_rewrites_only_its_block(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "RUNS", tmp_path / "runs")
    _fake_result(sweep.RUNS, "128x96", 0.5)
    table = sweep.render_table()
    rows = table.splitlines()[2:]
    assert rows == ["| 128 x 96 | 10 | 1.5 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 |"]  # 192x144 not run: no row
    doc = tmp_path / "doc.md"
    assert not sweep.write_doc_table(table, doc)  # no file, no markers: nothing written
    doc.write_text(f"intro\n{sweep.BEGIN}\nold\n{sweep.END}\nafter\n")
    assert sweep.write_doc_table(table, doc)
    assert doc.read_text() == f"intro\n{sweep.BEGIN}\n{table}\n{sweep.END}\nafter\n"
