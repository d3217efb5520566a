"""`posebh demo`: start the Gradio app of the repository's `app/` folder.

The app lives outside the package (it is pushed to Spaces as is and imports only the public API), so this verb
loads `app/app.py` by path: `$POSEBH_APP_DIR` when set, else the checkout the package was installed from
(editable installs). A wheel install without a checkout gets a one-line error saying what to do.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

APP_DIR_ENV = "POSEBH_APP_DIR"


def find_app_file() -> Path:
    """`app/app.py` of the checkout (or `$POSEBH_APP_DIR/app.py`); FileNotFoundError naming where it looked."""
    env = os.environ.get(APP_DIR_ENV)
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[3] / "app"]
    for folder in candidates:
        if (folder / "app.py").is_file():
            return folder / "app.py"
    looked = ", ".join(str(c / "app.py") for c in candidates)
    raise FileNotFoundError(f"the demo app was not found (looked for {looked}); `posebh demo` runs the app/ folder "
                            f"of a posebh_hf checkout: clone the repository and `pip install -e .[app]` there, or "
                            f"set {APP_DIR_ENV} to the folder holding app.py")


def load_app_module(path: Path) -> ModuleType:
    """Import app.py under a private name (it is not part of the package)."""
    try:
        import gradio  # noqa: F401  - fail early with an install hint rather than deep inside app.py
    except ImportError:
        raise FileNotFoundError("the demo needs gradio: pip install 'posebh-hf[app]' (or `make demo`)") from None
    spec = importlib.util.spec_from_file_location("posebh_demo_app", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot import the demo app from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(args: argparse.Namespace) -> int:
    app = load_app_module(find_app_file())
    argv = ["--host", args.host]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    if args.model:
        argv += ["--model", args.model]
    if args.detector:
        argv += ["--detector", args.detector]
    argv += ["--cache-examples", args.cache_examples]
    return int(app.main(argv) or 0)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="start the Gradio demo in the browser",
        description="Start the Gradio demo (app/app.py). Model: --model, else $POSEBH_MODEL, else the embedded "
                    "default app/default_model/, else a random tiny model shown under a warning banner.")
    parser.add_argument("--model", default=None, help="PoseBH model folder or Hub repo id")
    parser.add_argument("--detector", default=None,
                        help="transformers object-detection model id for person/animal boxes, e.g. "
                             "PekingU/rtdetr_r50vd_coco_o365 (default: $POSEBH_DETECTOR; unset or unreachable "
                             "means OpenCV's offline HOG people detector)")
    parser.add_argument("--cache-examples", choices=("lazy", "eager", "off"), default="lazy",
                        help="example results: computed on first click then cached for everyone (lazy, default), "
                             "all at launch (eager) or never cached (off)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT, else the first free one from 7860)")
    parser.set_defaults(func=run)
