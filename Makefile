# Two commands do all set-up on a fresh machine (see README):
#   make demo   - install, then run the main job on the bundled sample data
#   make test   - install (incl. Java/ImageJ/Jython/Xvfb), then run the test suite
# Any Python 3.10-3.13: make demo PYTHON=python3.13
PYTHON ?= python3
VENV   ?= .venv
DEMO_OUT ?= demo_out
PY      = $(VENV)/bin/python
# CPU build of torch for machines without a GPU; a GPU user installs their own torch first.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install system-deps demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

system-deps:
	bash scripts/install_system_deps.sh

demo: install
	$(VENV)/bin/cellseg segment sample_data/nuclei_00.ome.tif sample_data/nuclei_01.ome.tif sample_data/nuclei_02.ome.tif --out $(DEMO_OUT)

test: install system-deps
	$(VENV)/bin/pytest -q

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
