"""The mdt_mini study script's bookkeeping (fake run results) and the embedded default model (when present)."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
APP_MODEL = REPO / "app" / "default_model"


def _load_study():
    sys.path.insert(0, str(REPO / "benchmarks"))  # as `python benchmarks/mdt_mini_study.py` has it (machine_info)
    spec = importlib.util.spec_from_file_location("mdt_mini_study", REPO / "benchmarks" / "mdt_mini_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mdt_mini_study"] = module
    spec.loader.exec_module(module)
    return module


study = _load_study()


def _run(variant: str, seed: int, pck: dict[str, float], ap: float = 0.5) -> object:
    metrics = {d: {"pck": v, "ap": ap, "instances": 10.0} for d, v in pck.items()}
    return study.RunResult(variant, seed, metrics, train_s=60.0, total_s=90.0, config=variant)


def test_mean_std_matches_statistics() -> None:
    values = [0.61, 0.55, 0.70]
    mean, std, n = study.mean_std(values)
    assert n == 3
    assert mean == pytest.approx(statistics.mean(values))
    assert std == pytest.approx(statistics.stdev(values))
    assert study.mean_std([0.4]) == (0.4, 0.0, 1)
    assert study.mean_std([float("nan"), 0.2])[2] == 1  # non-finite values are ignored
    assert study.mean_std([])[2] == 0


def test_parse_metrics_reads_trainer_keys() -> None:
    flat = {"val/lspe/pck": 0.5, "val/lspe/ap": 0.2, "val/pck": 0.5, "step": 120.0, "val/bee/epe": 3.0}
    assert study.parse_metrics(flat) == {"lspe": {"pck": 0.5, "ap": 0.2}, "bee": {"epe": 3.0}}


def test_table_cells_are_mean_and_std_over_seeds() -> None:
    datasets = ("a", "b")
    results = [_run("multihead", s, {"a": v, "b": 0.2}) for s, v in enumerate([0.4, 0.5, 0.6])]
    results += [_run("prototypes", 0, {"a": 0.3, "b": 0.1})]
    results += [_run("single", 0, {"a": 0.9}), _run("single", 0, {"b": 0.7})]
    table = study.render_table(results, datasets)
    lines = table.splitlines()
    multi = next(line for line in lines if line.startswith("| (b)"))
    cells = [c.strip() for c in multi.strip("|").split("|")]
    # a: mean 50.0, sample std 10.0; b: 20.0 with zero spread; mean PCK per seed (0.3, 0.35, 0.4)
    assert cells[1] == "0,1,2"
    assert cells[2] == "50.0 ± 10.0"
    assert cells[4] == "20.0 ± 0.0"
    assert cells[6] == f"{35.0:.1f} ± {statistics.stdev([30.0, 35.0, 40.0]):.1f}"
    single = next(line for line in lines if line.startswith("| (a)"))
    scells = [c.strip() for c in single.strip("|").split("|")]
    assert scells[2] == "90.0" and scells[4] == "70.0"  # one seed: no ±
    assert scells[6] == "80.0"  # the mean of the separate single-dataset models
    assert "| (c) + prototypes | 0 | 30.0 |" in table
    assert "(d)" not in table  # no run, no row


def test_missing_dataset_renders_dash() -> None:
    table = study.render_table([_run("multihead", 0, {"a": 0.5})], ("a", "b"))
    row = next(line for line in table.splitlines() if line.startswith("| (b)"))
    assert "–" in row


def test_best_variant_uses_mean_over_datasets() -> None:
    results = [_run("multihead", 0, {"a": 0.5, "b": 0.5}), _run("prototypes", 0, {"a": 0.9, "b": 0.0}),
               _run("prototypes_css", 0, {"a": 0.6, "b": 0.5})]
    assert study.best_variant(results, ("a", "b")) == ("prototypes_css", pytest.approx(0.55))
    with pytest.raises(ValueError):
        study.best_variant([], ("a",))


def test_write_table_block_keeps_surrounding_text(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"# T\n\nintro\n\n{study.BEGIN}\nold\n{study.END}\n\nanalysis\n")
    study.write_table_block(doc, "new table")
    text = doc.read_text()
    assert "old" not in text and "new table" in text
    assert text.startswith("# T\n\nintro") and text.rstrip().endswith("analysis")
    fresh = tmp_path / "fresh.md"
    study.write_table_block(fresh, "x")
    assert study.BEGIN in fresh.read_text()


def test_merge_splits_filters_and_refuses_id_clash() -> None:
    train = {"images": [{"id": 1, "lic": 4}, {"id": 2, "lic": 1}], "annotations": [{"id": 10, "image_id": 1},
                                                                                  {"id": 11, "image_id": 2}],
             "categories": [{"id": 1}]}
    val = {"images": [{"id": 3, "lic": 4}], "annotations": [{"id": 12, "image_id": 3}], "categories": [{"id": 1}]}
    merged = study.merge_splits(train, val, lambda im: im["lic"] == 4)
    assert [im["id"] for im in merged["images"]] == [1, 3]
    assert [a["id"] for a in merged["annotations"]] == [10, 12]
    assert merged["categories"] == [{"id": 1}]
    with pytest.raises(ValueError, match="share image ids"):
        study.merge_splits(train, {"images": [{"id": 2}], "annotations": []})


def test_load_results_roundtrip(tmp_path: Path) -> None:
    run = tmp_path / "multihead_s1"
    run.mkdir()
    (run / "result.json").write_text(json.dumps({"variant": "multihead", "seed": 1, "config": "multihead",
                                                 "metrics": {"a": {"pck": 0.5}}, "train_s": 1.0, "total_s": 2.0}))
    (results,) = study.load_results(tmp_path)
    assert results.seed == 1 and results.metrics == {"a": {"pck": 0.5}}
    assert "| multihead | 1 | 0.0 | 0.0 |" in study.render_times([results])


@pytest.mark.skipif(not (APP_MODEL / "config.json").is_file(), reason="app/default_model is not in this checkout")
def test_default_model_loads_and_predicts_finite_keypoints() -> None:
    from posebh_hf.pipeline import PoseBHPipeline

    pipe = PoseBHPipeline.from_pretrained(str(APP_MODEL))
    assert next(pipe.model.parameters()).dtype.is_floating_point
    assert (APP_MODEL / "model.safetensors").stat().st_size < 25e6
    assert (APP_MODEL / "README.md").is_file()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(200, 150, 3), dtype=np.uint8)
    (result,) = pipe(image, boxes=[[10.0, 20.0, 100.0, 150.0]], flip=False)
    assert set(result) == set(pipe.model.config.dataset_names)
    for name, pred in result.items():
        k = pipe.skeleton(name).num_keypoints
        assert pred["keypoints"].shape == (k, 2) and pred["scores"].shape == (k,)
        assert np.isfinite(pred["keypoints"]).all() and np.isfinite(pred["scores"]).all()


def test_comparison_text_names_datasets_above_and_not_above_the_constant() -> None:
    agg = {"a": {"pck": (0.6, 0.01, 3)}, "b": {"pck": (0.4, 0.02, 3)}}
    const = {"a": {"pck": (0.5, 0.0, 1)}, "b": {"pck": (0.4, 0.0, 1)}}
    text = study._comparison_text(agg, const, ["a", "b", "missing"], 1500)
    assert text == "At 1500 steps the study models of this variant are above the constant on a and **not above it** on b."


def _load_benchmark(name: str):
    """benchmarks/<name>.py as a module (the benchmarks folder is on sys.path: mdt_mini_study is loaded above)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_finetune():
    return _load_benchmark("mdt_mini_finetune")


def test_exporting_renames_every_per_skeleton_field() -> None:
    """benchmarks/mdt_mini_finetune.py renames coco_mini -> coco for the default model: skeletons and the decoding
    table follow, so the exported config passes the model-folder check."""
    from posebh_hf.configuration_posebh import PoseBHConfig

    finetune = _load_finetune()
    config = PoseBHConfig.tiny(dataset_names=["lspe", "coco_mini"],
                               skeletons={"lspe": {"name": "lspe", "keypoints": ["a", "b"]},
                                          "coco_mini": {"name": "coco_mini", "keypoints": ["c"]}},
                               decoding={"lspe": "udp", "coco_mini": "default"})
    finetune.rename_datasets(config, {"coco_mini": "coco"})
    reloaded = PoseBHConfig.from_dict(config.to_dict())  # validates names against the skeletons
    assert reloaded.dataset_names == ["lspe", "coco"] and reloaded.decoding == {"lspe": "udp", "coco": "default"}
    assert reloaded.skeletons["coco"]["name"] == "coco"


def test_export_start_writes_the_fp16_start_of_the_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`export-start`: the last pretraining run -> an fp16 folder that loads in fp32 and predicts like the run's model,
    with a card giving the total steps (the first run's 4000 + every scored run) and the val numbers."""
    import torch
    from conftest import save_tiny_model
    from safetensors import safe_open

    from posebh_hf import PoseBHForPoseEstimation
    from posebh_hf.processing_posebh import PoseBHImageProcessor

    finetune = _load_finetune()
    runs = tmp_path / "runs"
    metrics = {d: {"pck": 0.5 + i / 100, "ap": 0.1} for i, d in enumerate(finetune.DATASETS)}
    metrics["coco_mini@lspe"] = {"pck": 0.4, "ap": 0.0}
    runs_steps = (("pretrain", 6000), ("pretrain3", 5600), ("pretrain4", 4000), ("pretrain5", 8000), ("pretrain6", 8000))
    assert finetune.START == runs_steps[-1][0]
    for name, steps in runs_steps:
        (runs / name).mkdir(parents=True)
        (runs / name / "result.json").write_text(json.dumps({"variant": name, "seed": 0, "steps": steps,
                                                            "train_s": 600.0, "metrics": metrics}))
    monkeypatch.setattr(finetune, "RUNS", runs)
    model_dir = save_tiny_model(tmp_path / "final", dataset_names=["coco", "ap10k"])
    PoseBHImageProcessor().save_pretrained(model_dir)
    out = finetune.export_start(model_dir, tmp_path / "start")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()}
    assert dtypes == {torch.float16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    card = (out / "README.md").read_text()
    assert "35,600 steps" in card and "lspe 50.0" in card and "on lspe crops 40.0" in card
    assert "research and non-commercial use only" in card
    pixels = torch.rand(1, 3, 256, 192)
    with torch.no_grad():
        ref = PoseBHForPoseEstimation.from_pretrained(model_dir).eval()(pixels, dataset_index=[0]).heatmaps["coco"]
        got = PoseBHForPoseEstimation.from_pretrained(out).eval()(pixels, dataset_index=[0]).heatmaps["coco"]
    assert got.dtype == torch.float32
    assert torch.allclose(got, ref, atol=1e-2 * float(ref.abs().max()) + 1e-4)


def test_prototype_scores_head_column_is_the_validation_number(tmp_path: Path) -> None:
    """`prototypes`: the head column equals the trainer's validation of the same head, so the prototype column
    beside it is decoded and scored the same way (committed 10,000-step model, the 20 dlc_openfield val crops)."""
    from conftest import shared_path

    from posebh_hf.modeling import PoseBHForPoseEstimation
    from posebh_hf.training.train_data import load_source
    from posebh_hf.training.validation import build_validation_sets, validate

    shared_path("mdt_mini", "crops", "dlc_openfield")
    finetune = _load_finetune()
    model_dir = REPO / "models" / "mdt_mini_pretrain"
    scores = finetune.prototype_scores(model_dir, ["dlc_openfield"], cache_dir=tmp_path)
    cfg = finetune._val_config(model_dir)
    specs = [s for s in cfg.data.datasets if s.name == "dlc_openfield"]
    sets = build_validation_sets(specs, [load_source(specs[0], "val", tmp_path)], cfg.data.augment, cfg.eval)
    expected = study.parse_metrics(validate(PoseBHForPoseEstimation.from_pretrained(model_dir), sets, cfg.eval))
    assert list(scores) == ["dlc_openfield"]
    assert scores["dlc_openfield"]["head"]["pck"] == pytest.approx(expected["dlc_openfield"]["pck"])
    assert 0.0 <= scores["dlc_openfield"]["prototypes"]["pck"] <= 1.0
    assert scores["dlc_openfield"]["prototypes"]["instances"] == expected["dlc_openfield"]["instances"]


def test_spread_stats_tells_a_collapsed_embedding_map_from_a_varied_one() -> None:
    """`spread_stats`: every position pointing one way (plus tiny noise) -> cosine ~1 and rank ~1; independent random
    embeddings -> low cosine and a rank near D."""
    import torch

    finetune = _load_finetune()
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 16, 1, 1, generator=gen)
    collapsed = direction.expand(4, 16, 6, 5) * torch.linspace(0.5, 2.0, 30).reshape(1, 1, 6, 5)
    collapsed = collapsed + 1e-3 * torch.randn(4, 16, 6, 5, generator=gen)
    varied = torch.randn(4, 16, 6, 5, generator=gen)
    flat, rich = finetune.spread_stats(collapsed), finetune.spread_stats(varied)
    assert flat["cos_to_mean"] > 0.99 and rich["cos_to_mean"] < 0.5
    assert rich["effective_rank"] > 12 and flat["effective_rank"] < rich["effective_rank"]
    assert flat["dims"] == rich["dims"] == 16


def test_ranking_orders_runs_by_the_human_selection_score() -> None:
    """`rank`: the default model is picked by the mean of lspe PCK and the coco head's PCK on lspe crops, not by the
    five-head mean (a run better on mice and bees but worse on people ranks lower)."""
    finetune = _load_finetune()

    def result(variant: str, seed: int, lspe: float, cross: float, animals: float) -> dict:
        metrics = {d: {"pck": animals} for d in finetune.DATASETS}
        metrics["lspe"], metrics["coco_mini@lspe"] = {"pck": lspe}, {"pck": cross}
        return {"variant": variant, "seed": seed, "metrics": metrics}

    people = result("pretrain7", 0, 0.59, 0.52, 0.5)
    animals = result("multihead", 2, 0.57, 0.49, 0.9)
    assert finetune.human_score(people["metrics"]) == pytest.approx(0.555)
    rows = finetune.render_ranking([animals, people]).splitlines()
    assert rows[2].startswith("| pretrain7 | 59.0 | 52.0 | 55.5 |")
    assert rows[3].startswith("| multihead_s2 | 57.0 | 49.0 | 53.0 |")


def test_least_covered_share_finds_the_direction_no_prototype_covers() -> None:
    """Prototypes spanning only the first D-1 axes leave the last axis uncovered: a direction along it scores 1, one
    inside their span about 0."""
    import torch

    finetune = _load_finetune()
    gen = torch.Generator().manual_seed(0)
    prototypes = torch.cat([torch.randn(40, 7, generator=gen), torch.zeros(40, 1)], dim=1)
    uncovered = torch.zeros(8)
    uncovered[7] = 1.0
    assert finetune.least_covered_share(uncovered, prototypes, count=1) == pytest.approx(1.0, abs=1e-5)
    assert finetune.least_covered_share(prototypes[0], prototypes, count=1) == pytest.approx(0.0, abs=1e-5)


def test_soup_is_the_mean_of_the_checkpoint_weights_in_a_loadable_folder(tmp_path: Path) -> None:
    """`soup`: the run's final folder with model.safetensors replaced by the mean over the chosen checkpoints."""
    import torch
    from conftest import save_tiny_model
    from safetensors.torch import load_file, save_file

    from posebh_hf import PoseBHForPoseEstimation

    finetune = _load_finetune()
    run = tmp_path / "run"
    save_tiny_model(run / "final")
    weights = load_file(str(run / "final" / "model.safetensors"))
    for step, scale in ((400, 1.0), (800, 3.0)):
        (run / "checkpoints" / f"step_{step}").mkdir(parents=True)
        save_file({k: v * scale for k, v in weights.items()},
                  str(run / "checkpoints" / f"step_{step}" / "model.safetensors"))
    out = finetune.soup(run, [400, 800], tmp_path / "soup")
    mean = load_file(str(out / "model.safetensors"))
    key = next(k for k, v in weights.items() if v.is_floating_point() and v.abs().sum() > 0)
    assert torch.allclose(mean[key], 2.0 * weights[key])
    PoseBHForPoseEstimation.from_pretrained(out)  # the final folder's config fits the averaged weights
    with pytest.raises(SystemExit, match="step_1200"):
        finetune.soup(run, [400, 1200], tmp_path / "soup2")


def test_transfer_ceiling_finds_keypoints_a_distinct_embedding_marks_and_not_on_a_flat_one() -> None:
    """Each keypoint's pixel carries its own direction on a noisy background: class means and fitted prototypes
    find every keypoint (argmax geometry: column = x / stride); on a collapsed map (one direction everywhere) they
    cannot, since every pixel ties."""
    import torch

    ceiling = _load_benchmark("transfer_ceiling")
    rng = np.random.default_rng(0)
    n, k, d, h, w = 6, 3, 16, 12, 9
    stride = np.array([4.0, 4.0])
    truth = np.zeros((n, k, 3))
    truth[..., 0] = rng.integers(0, w, (n, k)) * 4.0
    truth[..., 1] = rng.integers(0, h, (n, k)) * 4.0
    truth[..., 2] = 1.0
    emb = torch.randn(n, d, h, w, generator=torch.Generator().manual_seed(0)) * 0.3
    emb[:, :k] = 0.0  # the background avoids the keypoints' own directions
    for i in range(n):
        for j in range(k):
            emb[i, :, int(truth[i, j, 1] / 4), int(truth[i, j, 0] / 4)] = torch.eye(d)[j] * 5.0
    unit = torch.nn.functional.normalize(emb, dim=1)
    for protos in (ceiling.class_mean_prototypes(unit, truth, stride), ceiling.fit_prototypes(unit, truth, stride)):
        pred = ceiling.argmax_keypoints(ceiling.unit_similarity(unit, protos), stride)
        np.testing.assert_allclose(pred, truth[..., :2])
    flat = torch.nn.functional.normalize(torch.ones(n, d, h, w), dim=1)
    pred = ceiling.argmax_keypoints(ceiling.unit_similarity(flat, ceiling.class_mean_prototypes(flat, truth, stride)),
                                    stride)
    assert np.all(pred == 0.0)  # ties: the first pixel everywhere
    assert ceiling.keypoint_pixels(np.array([[[-9.0, 99.0, 1.0]]]), (h, w), stride).tolist() == [[[0, h - 1]]]


def test_default_card_gives_the_flip_test_numbers_when_they_were_measured(tmp_path: Path) -> None:
    """`export-default` reads `result_flip.json` beside a run's result: the card then gives the flip-test numbers
    (the protocol predict and the demo use) after the no-flip table, and says nothing of them otherwise."""
    from conftest import save_tiny_model
    from huggingface_hub import ModelCard, ModelCardData

    from posebh_hf import PoseBHConfig

    finetune = _load_finetune()
    skeletons = {"lspe": {"name": "lspe", "keypoints": ["a", "b"]}, "coco": {"name": "coco", "keypoints": ["c"]}}
    folder = save_tiny_model(tmp_path / "m", dataset_names=["lspe", "coco"], skeletons=skeletons)
    cfg = PoseBHConfig.from_pretrained(folder)
    metrics = {d: {"pck": 0.5, "ap": 0.1} for d in finetune.DATASETS}
    metrics.update({"coco_mini@lspe": {"pck": 0.4, "ap": 0.0, "joints": 12.0},
                    "lspe@coco_mini": {"pck": 0.3, "ap": 0.0, "joints": 12.0}})
    data = {"variant": finetune.MERGED_STAGES[-1], "seed": 0, "metrics": metrics, "steps": 100, "train_s": 60.0}
    plain = finetune.render_card(cfg, data, folder, ModelCard, ModelCardData)
    assert "With the flip test" not in plain
    flip = {"lspe": {"pck": 0.614}, "coco_mini@lspe": {"pck": 0.54}, "coco_mini": {"pck": 0.578}}
    card = finetune.render_card(cfg, {**data, "flip_metrics": flip}, folder, ModelCard, ModelCardData)
    assert "With the flip test" in card and "lspe head 61.4 PCK@0.2" in card and "lspe crops 54.0" in card


def test_the_linear_arm_is_the_posebh_config_with_its_overrides(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """`run --arm posebh_linear`: configs/mdt_mini/finetune_posebh.yaml + the linear embedding head (D = 192) and no
    phm loss; the user's overrides still come last."""
    import posebh_hf.training as training

    finetune = _load_finetune()
    seen = {}

    class Stop(Exception):
        pass

    def fake_trainer(cfg):
        seen["cfg"] = cfg
        raise Stop

    monkeypatch.setattr(training, "Trainer", fake_trainer)
    monkeypatch.setattr(finetune, "RUNS", tmp_path)
    with pytest.raises(Stop):
        finetune.run_arm("posebh_linear", 1, ["losses.phm=0.5"])
    cfg = seen["cfg"]
    assert cfg.mode == "posebh" and cfg.seed == 1 and cfg.output_dir == str(tmp_path / "posebh_linear_s1")
    assert dict(cfg.model.config_overrides) == {"embedding_head_type": "linear", "embed_dim": 192}
    assert cfg.losses.phm == 0.5  # the caller's override wins over the arm's 0.0


def test_transfer_table_puts_each_base_in_its_columns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    finetune = _load_finetune()
    monkeypatch.setattr(finetune, "RUNS", tmp_path)
    for tag, head, protos in (("posebh", 0.9, 0.01), ("posebh_linear", 0.8, 0.7), ("multihead", 0.6, 0.0)):
        folder = tmp_path / "transfer" / f"{tag}_k35_s0"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"tag": tag, "k": 35, "head": {"pck": head},
                                                        "prototypes": {"pck": protos}}))
    lines = finetune.render_transfer().splitlines()
    assert lines[0].startswith("| k (train frames) | (d): prototypes alone | (d): new head | (d) linear:")
    assert lines[2] == "| 35 | 1.0 | 90.0 | 70.0 | 80.0 | 60.0 |"
