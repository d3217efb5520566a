"""The launched demo through `gradio_client`: predictions, readable errors for bad uploads, 20 concurrent requests."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, load_demo_app
from PIL import Image

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tiny_model_dir(tmp_path_factory) -> Path:
    import torch

    from posebh_hf.configuration_posebh import PoseBHConfig
    from posebh_hf.modeling import PoseBHForPoseEstimation

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_posebh")
    PoseBHForPoseEstimation(PoseBHConfig.tiny()).save_pretrained(out)
    return out


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = load_demo_app()
    model_dir = tiny_model_dir(tmp_path_factory)
    demo = app.build_demo(str(model_dir))
    _, url, _ = app.launch_demo(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
    client = Client(url, verbose=False)
    yield app, demo, client, model_dir
    client.close()
    demo.close()


def astronaut() -> Path:
    sys.path.insert(0, str(REPO / "app"))
    import demo_examples

    return demo_examples.bundled_examples()[0]


def call(client: Client, path: Path | str, mode: str = "whole", boxes: str = "", skeletons=("coco",),
         flip: bool = True, threshold: float = 0.3):
    return client.predict(handle_file(str(path)), mode, boxes, list(skeletons), flip, threshold, api_name="/predict")


def test_predict_on_an_example_returns_keypoints_and_overlays(server):
    app, _, client, model_dir = server
    photo = astronaut()
    gallery, payload, status = call(client, photo, "whole", skeletons=("coco", "ap10k"))
    assert payload["image"] == "astronaut.png" and (payload["width"], payload["height"]) == (512, 512)
    [instance] = payload["instances"]
    assert instance["bbox"] == [0.0, 0.0, 512.0, 512.0]
    for name in ("coco", "ap10k"):
        points = instance["skeletons"][name]["keypoints"]
        # Inside the padded 3:4 crop around the box (1.25 x 512 wide, 1.25 x 683 high), which may leave the image.
        assert len(points) == 17 and all(-64 <= p["x"] <= 576 and -171 <= p["y"] <= 683 for p in points)
    assert instance["skeletons"]["coco"]["keypoints"][0]["name"] == "nose"
    # Independent reference: the public pipeline on the same file gives the same JSON.
    from posebh_hf.pipeline import PoseBHPipeline, results_to_json

    pipe = PoseBHPipeline.from_pretrained(str(model_dir))
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    box = [[0.0, 0.0, 512.0, 512.0]]
    expected = results_to_json(pipe(rgb, boxes=box, skeletons=["coco", "ap10k"], flip=True), box,
                               ["coco", "ap10k"], pipe, image_name="astronaut.png", width=512, height=512)
    assert payload == expected
    assert [g["caption"].split(":")[0] for g in gallery] == ["coco", "ap10k"]
    assert all(Image.open(g["image"]).size == (512, 512) for g in gallery)
    assert "whole image" in status and "Random-weight" not in status


def test_typed_boxes_give_one_instance_each(server):
    _, _, client, _ = server
    _, payload, status = call(client, astronaut(), "boxes", "100, 50, 200, 400\n300,300,500,500", flip=False)
    assert [i["bbox"] for i in payload["instances"]] == [[100, 50, 200, 400], [300, 300, 212, 212]]
    assert "2 box(es) you gave" in status


@pytest.mark.parametrize(("kind", "message"), [
    ("text", "is not an image this demo can read"),
    ("truncated", "could not be decoded"),
    ("pixels", "downscale it"),
    ("boxes", "is not 'x, y, w, h'"),
    ("no_skeleton", "Choose at least one skeleton"),
])
def test_bad_input_gets_a_readable_message(server, tmp_path, monkeypatch, kind, message):
    _, _, client, _ = server
    path = tmp_path / "upload.jpg"
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    mode, boxes, skeletons = "whole", "", ("coco",)
    if kind == "text":
        path.write_text("hello, I am a text file with an image name")
    elif kind == "truncated":
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "pixels":
        import demo_inputs  # the module the running app uses (same process)

        monkeypatch.setattr(demo_inputs, "MAX_PIXELS", 1000)
    elif kind == "boxes":
        mode, boxes = "boxes", "10, 10, 40"
    else:
        skeletons = ()
    with pytest.raises(AppError, match=message) as info:
        call(client, path, mode, boxes, skeletons)
    assert "Traceback" not in str(info.value)


def test_an_upload_over_the_file_size_limit_is_refused(server, tmp_path, monkeypatch):
    app, _, client, _ = server
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + os.urandom(app.MAX_FILE_BYTES + 1024))
    with pytest.raises(Exception, match="(?i)(too large|exceeds|maximum|413)"):
        call(client, big)


def test_twenty_concurrent_requests_are_all_answered(server):
    app, demo, client, _ = server
    photo = astronaut()
    before = rss_mib()
    start = time.perf_counter()
    jobs = [client.submit(handle_file(str(photo)), "whole", "", ["coco"], False, 0.3, api_name="/predict")
            for _ in range(20)]
    results = [job.result(timeout=120) for job in jobs]
    seconds = time.perf_counter() - start
    growth = rss_mib() - before
    print(f"20 concurrent requests: {seconds:.1f} s, RSS growth {growth:.0f} MiB")
    assert len(results) == 20
    first = results[0][1]
    assert all(r[1] == first for r in results)  # same input, same answer, none lost or mixed up
    assert growth < 400, growth
    # The queue is what bounds memory: a concurrency limit and a maximum size.
    [fn] = [f for f in demo.fns.values() if f.api_name == "predict"]
    assert fn.concurrency_limit == app.CONCURRENCY_LIMIT == 2 and demo._queue.max_size == app.QUEUE_SIZE >= 20


def test_without_a_model_the_page_warns_that_outputs_are_meaningless(server, tmp_path, monkeypatch):
    app, _, _, model_dir = server
    import demo_model
    from gradio.components import Markdown

    from posebh_hf.pipeline import PoseBHPipeline

    pipe = PoseBHPipeline.from_pretrained(str(model_dir))
    monkeypatch.delenv("POSEBH_MODEL", raising=False)
    monkeypatch.setattr(demo_model, "DEFAULT_MODEL_DIR", tmp_path / "no_default_model")

    def banner(demo):
        [b] = [c for c in demo.blocks.values() if isinstance(c, Markdown) and c.elem_id == "random-model-warning"]
        return b

    fallback = app.build_demo(None, pipe=pipe)
    assert banner(fallback).visible and "meaningless" in banner(fallback).value
    given = app.build_demo(str(model_dir), pipe=pipe)
    assert not banner(given).visible



def test_examples_are_whole_requests_whose_results_are_cached(tmp_path_factory, tmp_path, monkeypatch):
    """An example carries every input of a request; with eager caching its overlays and JSON are computed once and
    served from Gradio's cache (lazy, the default, does the same on an example's first click)."""
    import asyncio

    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path / "cache"))
    (tmp_path / "no_shared").mkdir()
    monkeypatch.setenv("POSEBH_EXAMPLES_DIR", str(tmp_path / "no_shared"))  # the bundled example only: quick
    app = load_demo_app()
    model_dir = tiny_model_dir(tmp_path_factory)
    with pytest.raises(ValueError, match="cache_examples must be one of"):
        app.build_demo(str(model_dir), cache_examples="always")
    lazy = app.build_demo(str(model_dir))
    assert lazy.posebh_examples.cache_examples == "lazy" and lazy.posebh_examples.fn is not None
    eager = app.build_demo(str(model_dir), cache_examples="eager")
    examples = eager.posebh_examples
    assert examples.cache_examples is True
    asyncio.run(examples.cache())
    gallery, doc, status = examples.load_from_cache(0)
    assert doc["image"] == "astronaut.png" and len(doc["instances"]) >= 1 and "Done" in status
    assert len(gallery.root) == len(doc["instances"][0]["skeletons"])  # one overlay per skeleton
    lazy.close()
    eager.close()
