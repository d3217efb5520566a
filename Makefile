# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: venv demo predict test test-slow lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[all]'
	touch $@

venv: $(VENV)/.installed

# `posebh predict` on scikit-image's bundled astronaut photo (public domain) with the embedded default model.
predict: venv
	$(VENV)/bin/posebh predict "$$($(PY) -c 'import skimage, pathlib; print(pathlib.Path(skimage.__file__).parent / "data" / "astronaut.png")')" --out-dir outputs/predict

demo: venv
	$(VENV)/bin/posebh demo

test: venv
	$(PY) -m pytest -q -x --timeout 900

test-slow: venv
	$(PY) -m pytest -q -m slow --timeout 3600

lint: venv
	$(VENV)/bin/ruff check src tests scripts benchmarks app

clean:
	rm -rf $(VENV) outputs
