# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both install from a lock (locks/*.txt: every package but torch, pinned with sha256 hashes; `make lock` writes them
# from pyproject.toml). docs/install.md explains the variables below.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False

# torch is installed first, on its own, from wherever TORCH_INDEX_URL says. Empty (the default): pip's configured
# indexes; on these machines that is a local CPU wheel, on plain PyPI for Linux a CUDA build (several GB).
# CPU-only anywhere: make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# A GPU: the CUDA index that matches your driver, e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
TORCH_VERSION := 2.13.0
TORCH_INDEX_URL ?=
# `make lock` only: a folder holding the CPU torch wheel, so the lock gets the CPU build's dependencies (no nvidia-*)
TORCH_WHEELS ?= /opt/wheels
LOCK_ALL := locks/all.txt
LOCK_APP := locks/app.txt
UV_VERSION := 0.13.9
PYTEST_ARGS ?=

.PHONY: venv venv-app venv-timm venv-mediapipe demo predict test test-slow test-timm lint lock lock-check clean

# $(1): the lock. torch (with its dependencies, so a CUDA build brings its nvidia-* wheels), then the lock exactly
# (hash-checked, no resolution), then this package in editable mode with the lock's setuptools, then `pip check`.
define install_lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==$(TORCH_VERSION)
	$(PIP) install -q --require-hashes --no-deps -r $(1)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PIP) check
endef

# The full lock (`.[all]`: train, eval, app, onnx, viz, dev): what `make test` and CI use.
$(VENV)/.installed: pyproject.toml $(LOCK_ALL)
	$(call install_lock,$(LOCK_ALL))
	touch $@ $(VENV)/.installed-app

# The app's lock (`.[app,eval]`): what the demo needs (`posebh`'s parser imports the evaluate verb, which needs
# pycocotools); no training, test, lint, browser, ONNX or viz packages.
$(VENV)/.installed-app: pyproject.toml $(LOCK_APP)
	$(call install_lock,$(LOCK_APP))
	touch $@

venv: $(VENV)/.installed

venv-app: $(VENV)/.installed-app

# `posebh predict` on scikit-image's bundled astronaut photo (public domain) with the embedded default model.
predict: venv-app
	$(VENV)/bin/posebh predict "$$($(PY) -c 'import skimage, pathlib; print(pathlib.Path(skimage.__file__).parent / "data" / "astronaut.png")')" --out-dir outputs/predict

demo: venv-app
	$(VENV)/bin/posebh demo

# The whole suite (no -x), skip reasons listed (-rs), pytest's counts last.
test: venv
	$(PY) -m pytest -q -rs --timeout 900 $(PYTEST_ARGS)

# The timm extra (`posebh convert timm`, `model.init: timm:NAME`) in its own venv. timm imports torchvision, whose
# compiled ops must match torch: PyPI has no CPU torchvision for this project's CPU torch 2.13.0 wheel (0.28.0 is a
# CUDA build that fails with "operator torchvision::nms does not exist"), while torch 2.14.1 + torchvision 0.29.1
# (a CUDA build that runs on the CPU) import and pass the timm tests. docs/install.md, "The timm extra".
# MediaPipe Pose in its own venv (it needs numpy < 2): the CPU anchor of benchmarks/anchor_mediapipe.py.
VENV_MEDIAPIPE ?= .venv-mediapipe
venv-mediapipe:
	test -x $(VENV_MEDIAPIPE)/bin/python || python3 -m venv $(VENV_MEDIAPIPE)
	$(VENV_MEDIAPIPE)/bin/pip install -q mediapipe==0.10.14 "numpy<2"
	$(VENV_MEDIAPIPE)/bin/python -c "import mediapipe; print('mediapipe', mediapipe.__version__)"

VENV_TIMM ?= .venv-timm
TIMM_TORCH ?= torch==2.14.1 torchvision==0.29.1
TIMM_VERSION ?= 1.0.31
venv-timm:
	test -x $(VENV_TIMM)/bin/python || python3 -m venv $(VENV_TIMM)
	$(VENV_TIMM)/bin/pip install -q $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(TIMM_TORCH)
	$(VENV_TIMM)/bin/pip install -q --require-hashes --no-deps -r $(LOCK_ALL)
	$(VENV_TIMM)/bin/pip install -q --no-deps --no-build-isolation -e .
	$(VENV_TIMM)/bin/pip install -q timm==$(TIMM_VERSION)
	$(VENV_TIMM)/bin/pip check
	$(VENV_TIMM)/bin/python -c "import torch, torchvision, timm; from transformers import VitPoseBackbone; import posebh_hf; print('timm', timm.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__)"

test-timm: venv-timm
	$(VENV_TIMM)/bin/python -m pytest -q -rs tests/test_conversion_timm.py tests/test_training_model_init.py $(PYTEST_ARGS)

test-slow: venv
	$(PY) -m pytest -q -rs -m slow --timeout 3600 $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests scripts benchmarks app

# docs/cli.md, every `posebh` verb and option, from the argparse parser (tests/test_cli_reference.py: not stale).
.PHONY: cli-reference
cli-reference: venv-app
	$(PY) scripts/cli_reference.py

# Re-resolve the locks from pyproject.toml (PyPI; keeps the pinned versions that still fit, `make lock UPGRADE=1`
# moves everything to the newest allowed). For CPython 3.11 on Linux x86_64, torch excluded (installed first).
UV := $(VENV)/bin/uv
UV_COMPILE = $(UV) pip compile -q pyproject.toml locks/build.in -c constraints.txt --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --generate-hashes --no-emit-package torch \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade) \
	$(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL) --index-strategy unsafe-best-match,$(if $(wildcard $(TORCH_WHEELS)),--find-links $(TORCH_WHEELS)))
LOCK_OUT ?= locks

$(UV):
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q uv==$(UV_VERSION)

lock: $(UV)
	mkdir -p $(LOCK_OUT)
	$(UV_COMPILE) --extra all -o $(LOCK_OUT)/all.txt
	$(UV_COMPILE) --extra app --extra eval -o $(LOCK_OUT)/app.txt
	@if grep -qE '^(nvidia-|triton==)' $(LOCK_OUT)/all.txt $(LOCK_OUT)/app.txt; then \
	  echo "lock: resolved the CUDA build of torch (nvidia-*/triton in the lock); run with TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu or TORCH_WHEELS=DIR holding the CPU wheel" >&2; exit 1; fi

# The committed locks still match pyproject.toml: re-resolving them (preferring their pins) changes nothing.
lock-check: $(UV)
	rm -rf $(VENV)/lock-check && mkdir -p $(VENV)/lock-check && cp $(LOCK_ALL) $(LOCK_APP) $(VENV)/lock-check/
	$(MAKE) --no-print-directory lock LOCK_OUT=$(VENV)/lock-check
	diff -u $(LOCK_ALL) $(VENV)/lock-check/all.txt && diff -u $(LOCK_APP) $(VENV)/lock-check/app.txt
	@echo "lock-check: locks/ matches pyproject.toml"

clean:
	rm -rf $(VENV) outputs
