# Two commands for a fresh machine:
#   make demo   set up, then run the main job on the built-in corpus
#   make test   set up, then run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The CPU build of PyTorch; a bare `pip install torch` may pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/voxmetric demo

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo
