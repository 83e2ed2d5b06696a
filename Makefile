# Two commands for a fresh machine:
#   make demo   set up, then run the main job on the built-in corpus
#   make test   set up, then run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# PyTorch is installed first, pinned: a bare `pip install torch` may pull a multi-GB CUDA build.
# On Linux, PyPI's wheel of the pin carries CUDA too; for the CPU-only wheel (about 200 MB) add
# TORCH_INDEX=https://download.pytorch.org/whl/cpu (make test TORCH_INDEX=...).
TORCH_PIN ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/voxmetric demo

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo
