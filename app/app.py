"""PoseBH Gradio demo: an image -> person/animal boxes -> keypoints for several skeletons side by side.

Run it with `posebh demo [--model PATH_OR_REPO]`, `python app/app.py`, or push this folder as a Space (with
`src/posebh_hf/hub_cards/space_README.md` as its README.md). It imports only the public API of `posebh_hf` (pipeline +
visualize); the small `demo_*` modules beside it hold the UI-free logic (limits, boxes, detectors, examples).

Model: `--model` / `POSEBH_MODEL`, else `default_model/` beside this file, else a random tiny model under a
warning banner. Detector: `--detector` / `POSEBH_DETECTOR` (a transformers object-detection model id, e.g.
`PekingU/rtdetr_r50vd_coco_o365`) when set and reachable, else OpenCV's HOG people detector.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
if str(APP_DIR) not in sys.path:  # the demo_* helpers sit beside this file (Spaces run it as a script)
    sys.path.insert(0, str(APP_DIR))

import gradio as gr  # noqa: E402
from demo_detect import BoxFinder, HubDetector  # noqa: E402
from demo_examples import example_images  # noqa: E402
from demo_inputs import MAX_FILE_BYTES, InputError, add_corner, load_image, parse_boxes  # noqa: E402
from demo_model import (  # noqa: E402
    DETECTOR_ENV,
    RANDOM_MODEL_BANNER,
    ModelChoice,
    choose_model,
    load_pipeline,
    model_note,
)
from demo_predict import OverlayFiles, check_skeletons, choose_boxes, run_prediction  # noqa: E402

logger = logging.getLogger("posebh.demo")

# At most this many requests run at once (each holds one decoded image, its overlays and, one at a time, a
# forward pass); up to QUEUE_SIZE more wait. Together with the per-image limits this bounds memory.
CONCURRENCY_LIMIT = 2
QUEUE_SIZE = 64
BOX_CHOICES = [("Detect people / animals", "detect"), ("My boxes (typed or clicked)", "boxes"),
               ("Whole image", "whole")]
CSS = """
#random-model-warning { background: #fff3cd; border: 3px solid #d97706; border-radius: 8px; padding: 10px 14px; }
#random-model-warning * { color: #7c2d12 !important; }
"""


def checked_image(**kwargs) -> gr.Image:
    """`gr.Image` whose upload check turns unreadable files into a readable message instead of a traceback.

    Gradio opens the upload with Pillow before our handler runs; a non-image fails there with a bare exception.
    The wrapper is set on the instance: subclassing a component makes Gradio write a `.pyi` stub beside this file.
    """
    image = gr.Image(**kwargs)
    plain = image.preprocess

    def preprocess(payload):
        try:
            return plain(payload)
        except gr.Error:
            raise
        except Exception:
            name = getattr(payload, "orig_name", None) or "the upload"
            raise gr.Error(f"{name!r} is not an image this demo can read (PNG, JPEG, WebP, BMP, ...).",
                           title="Cannot read this file", print_exception=False) from None

    image.preprocess = preprocess
    return image


@dataclass
class DemoContext:
    """What the handlers share: the pipeline (read-only after loading), the box finder and the model choice."""

    pipe: object
    choice: ModelChoice
    finder: BoxFinder
    files: OverlayFiles


def default_skeletons(names: Sequence[str], declared: Sequence[str] | None = None) -> list[str]:
    """The model's `config.default_skeletons` when it declares them; else a person and an animal skeleton side by
    side when the model has both, else its first skeleton."""
    if declared:
        return [n for n in declared if n in names] or list(names[:1])
    chosen = [n for n in ("coco", "ap10k") if n in names]
    return chosen or list(names[:1])


def make_finder(detector: str | None) -> BoxFinder:
    detector = detector if detector is not None else os.environ.get(DETECTOR_ENV) or None
    if not detector:
        return BoxFinder(None, "no Hub detector configured")
    hub, note = HubDetector.load(detector)
    logger.info("%s", note)
    return BoxFinder(hub, note)


def predict(ctx: DemoContext, image_path: str | None, box_mode: str, boxes_text: str | None,
            skeletons: list[str] | None, flip: bool, threshold: float):
    """The /predict endpoint: (overlays [(image, caption)], JSON of `posebh predict`, status markdown)."""
    try:
        if not image_path:
            raise InputError("Upload an image or pick an example first.")
        image = load_image(image_path)
        typed = parse_boxes(boxes_text, image.width, image.height) if box_mode == "boxes" else []
        names = check_skeletons(skeletons, ctx.pipe.skeleton_names)
        boxes, source = choose_boxes(image, box_mode, typed, ctx.finder)
        result = run_prediction(ctx.pipe, image, boxes, names, flip=flip, threshold=threshold)
    except ValueError as err:  # InputError and the pipeline's own checks carry messages meant for the user
        raise gr.Error(str(err), title="Cannot run on this input", print_exception=False) from None
    except Exception as err:
        logger.exception("prediction failed")
        raise gr.Error(f"Prediction failed unexpectedly ({type(err).__name__}: {err}).", title="Error") from None
    status = f"**Done:** {source}; {result.note}."
    if ctx.choice.is_random:
        status += " ⚠️ Random-weight model: the keypoints are meaningless."
    return ctx.files.write(result.overlays, names), result.payload, status


def on_click(pending: list[float] | None, boxes_text: str | None, evt: gr.SelectData):
    """A click on the input image: two clicks make a box, which switches the box source to 'My boxes'."""
    pending, text, message = add_corner(pending, (evt.index[0], evt.index[1]), boxes_text)
    return pending, text, message, gr.update(value="boxes")


def on_gpu(fn):
    """`spaces.GPU` on a Hugging Face ZeroGPU Space (the `spaces` package is there), unchanged elsewhere."""
    try:
        import spaces  # noqa: PLC0415
    except ImportError:
        return fn
    return spaces.GPU(fn)


def header_markdown(ctx: DemoContext) -> str:
    names = ", ".join(f"`{n}`" for n in ctx.pipe.skeleton_names)
    return (
        "# PoseBH: one model, many skeletons\n"
        "Upload a photo (or pick an example), choose how to find people/animals, tick skeletons, and press "
        "**Estimate poses**. Each skeleton is drawn on its own copy of the image; the JSON below uses the "
        "schema of `posebh predict`.\n\n"
        f"**Model:** {ctx.choice.describe()}. **Skeletons:** {names}. **Detector:** {ctx.finder.describe()}.\n\n"
        "**Boxes by hand:** click two opposite corners on the image for each box, or type `x, y, w, h` lines."
    )


CACHE_CHOICES = ("lazy", "eager", "off")


def build_demo(model: str | None = None, *, detector: str | None = None, pipe=None,
               cache_examples: str = "lazy") -> gr.Blocks:
    """The Blocks app. `pipe` (a loaded PoseBHPipeline) skips loading, for tests; otherwise `model` is resolved.

    `cache_examples`: "lazy" (an example's result is computed on its first click, then served from Gradio's cache to
    every user), "eager" (all at launch, as Spaces do by default) or "off"."""
    if cache_examples not in CACHE_CHOICES:
        raise ValueError(f"cache_examples must be one of {CACHE_CHOICES}, got {cache_examples!r}")
    choice = choose_model(model)
    if pipe is None:
        pipe = load_pipeline(choice)
    ctx = DemoContext(pipe=pipe, choice=choice, finder=make_finder(detector), files=OverlayFiles())
    examples = example_images()

    # delete_cache: every 10 min, drop uploads/outputs older than 30 min, so a long-running Space's disk stays bounded.
    with gr.Blocks(title="PoseBH demo", delete_cache=(600, 1800)) as demo:
        gr.Markdown(RANDOM_MODEL_BANNER, visible=choice.is_random, elem_id="random-model-warning")
        gr.Markdown(header_markdown(ctx))
        gr.Markdown(model_note(choice), elem_id="model-note")
        pending = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                image = checked_image(type="filepath", label="Image (click two corners to add a box)",
                                     sources=["upload", "clipboard"], height=420, elem_id="input-image")
                box_mode = gr.Radio(BOX_CHOICES, value="detect", label="Boxes from")
                boxes_text = gr.Textbox(lines=3, label="My boxes: x, y, w, h per line (pixels)",
                                        placeholder="40, 30, 200, 420", elem_id="boxes")
                chosen = default_skeletons(ctx.pipe.skeleton_names, ctx.pipe.model.config.default_skeletons)
                skeletons = gr.CheckboxGroup(ctx.pipe.skeleton_names, value=chosen,
                                             label="Skeletons (one overlay each)")
                with gr.Row():
                    flip = gr.Checkbox(True, label="Flip test (average with the mirrored image)")
                    threshold = gr.Slider(0.0, 1.0, value=ctx.pipe.model.config.keypoint_draw_threshold, step=0.05,
                                          label="Score threshold for drawing")
                run = gr.Button("Estimate poses", variant="primary", elem_id="run-button")
            with gr.Column(scale=1):
                status = gr.Markdown(label="status", elem_id="status")
                gallery = gr.Gallery(label="Overlays", columns=2, format="png", height="auto",
                                     object_fit="contain", elem_id="overlays")
                payload = gr.JSON(label="Keypoints (JSON, as `posebh predict` writes it)", elem_id="json")

        @on_gpu
        def predict_endpoint(image_path: str | None, box_mode: str, boxes_text: str | None,
                             skeletons: list[str] | None, flip: bool, threshold: float):
            return predict(ctx, image_path, box_mode, boxes_text, skeletons, flip, threshold)

        if examples:
            # an example is a whole request (detected boxes, default skeletons, flip, the model's draw threshold),
            # so its overlays and JSON can be cached and shown without running the model again
            drawn_at = ctx.pipe.model.config.keypoint_draw_threshold
            demo.posebh_examples = gr.Examples([[str(p), "detect", "", chosen, True, drawn_at] for p in examples],
                inputs=[image, box_mode, boxes_text, skeletons, flip, threshold],
                outputs=[gallery, payload, status], fn=predict_endpoint,
                cache_examples=cache_examples != "off", cache_mode="lazy" if cache_examples == "lazy" else "eager",
                label="Examples (results cached after the first run)", examples_per_page=12, elem_id="examples")

        run.click(predict_endpoint, [image, box_mode, boxes_text, skeletons, flip, threshold],
                  [gallery, payload, status], api_name="predict", concurrency_limit=CONCURRENCY_LIMIT)
        image.select(on_click, [pending, boxes_text], [pending, boxes_text, status, box_mode],
                     api_visibility="private", queue=False)
        # Boxes belong to one image: a new upload/example clears them.
        image.change(lambda: (None, ""), None, [pending, boxes_text], api_visibility="private", queue=False)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY_LIMIT)
    return demo


def launch_demo(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, *,
                prevent_thread_lock: bool = False, quiet: bool = False):
    """Start the server with the demo's limits; returns Gradio's (app, local_url, share_url)."""
    example_dirs = sorted({str(p.parent) for p in example_images()})  # examples live outside the app folder
    return demo.launch(server_name=host, server_port=port, max_file_size=MAX_FILE_BYTES,
                       allowed_paths=example_dirs, css=CSS, ssr_mode=False,
                       prevent_thread_lock=prevent_thread_lock, quiet=quiet)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PoseBH Gradio demo")
    parser.add_argument("--model", default=None, help="PoseBH model folder or Hub repo id (default: "
                        "$POSEBH_MODEL, then app/default_model/)")
    parser.add_argument("--detector", default=None, help="transformers object-detection model id (default: "
                        f"${DETECTOR_ENV}; unset means the offline OpenCV HOG people detector)")
    parser.add_argument("--cache-examples", choices=CACHE_CHOICES, default="lazy",
                        help="example results: computed on first click then cached (lazy, default), all at launch "
                        "(eager) or never cached (off)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    # None lets Gradio take $GRADIO_SERVER_PORT or the first free port from 7860 on.
    parser.add_argument("--port", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        demo = build_demo(args.model, detector=args.detector, cache_examples=args.cache_examples)
    except (OSError, ValueError) as err:  # a wrong --model path/id: one line, not a traceback
        print(f"posebh demo: error: cannot load the model: {err}", file=sys.stderr)
        return 2
    launch_demo(demo, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
