# Two commands do all the set-up: `make lab` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: lab explorer test unit nbval-variants execute dist clean
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[notebooks,dev]"
	touch $(STAMP)

# JupyterLab refuses to start as root (containers, some classroom machines) unless told it may.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)  ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks

explorer: $(STAMP)  ## serve the class explorer alone as a web page (Voilà, http://127.0.0.1:8866/)
	$(VENV)/bin/cnnviz explorer

test: $(STAMP)  ## unit tests + nbval re-execution of every notebook (pytest's exit 5, no tests, fails too)
	$(PY) -m pytest $(NBVAL) tests notebooks

# Another machine sums floats in another order: the notebooks must print the same digits with one thread
# and with TensorFlow's oneDNN kernels off (the default run, many threads and oneDNN on, is `make test`).
nbval-variants: $(STAMP)  ## the notebooks again under the three other (threads, oneDNN) layouts
	TF_NUM_INTRAOP_THREADS=1 TF_ENABLE_ONEDNN_OPTS=0 $(PY) -m pytest $(NBVAL) notebooks
	TF_NUM_INTRAOP_THREADS=1 TF_ENABLE_ONEDNN_OPTS=1 $(PY) -m pytest $(NBVAL) notebooks
	TF_ENABLE_ONEDNN_OPTS=0 $(PY) -m pytest $(NBVAL) notebooks

unit: $(STAMP)  ## unit tests only
	$(PY) -m pytest tests

execute: $(STAMP)  ## re-run every notebook from a fresh kernel and store its outputs
	for nb in notebooks/*.ipynb; do \
	  $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.kernel_name=python3 "$$nb" && \
	  $(VENV)/bin/nbstripout --keep-output --keep-count --extra-keys "metadata.widgets" "$$nb" || exit 1; \
	done

dist: $(STAMP)  ## build the wheel and the sdist into dist/ (package data included)
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV)
