# Two commands on a fresh clone:
#   make demo   - runs the main job on the bundled samples, then a refresh a day later,
#                 offline (a fake TMDB), into ./out
#   make test   - lint (ruff, mypy --strict) + the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SAM_VENV ?= .venv-sam

.PHONY: demo test lint validate-template bench layer install-check clean schema

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/.runtime
	PYTHON=$(PY) bash scripts/demo.sh

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

$(SAM_VENV)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q -r requirements-sam.txt
	touch $@

validate-template: $(SAM_VENV)/.installed
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region us-east-1 -t template.yaml

test: lint validate-template
	$(PY) -m pytest

bench: $(VENV)/.dev
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	$(PY) -m benchmarks

# `pip install .` in a clean virtual environment gives a working `tmdb-ingest` command.
install-check:
	rm -rf build/install-check
	$(PYTHON) -m venv build/install-check
	build/install-check/bin/python -m pip install -q .
	cd build && install-check/bin/tmdb-ingest run --help >/dev/null
	rm -rf build tmdb_ingest.egg-info

# docs/events.schema.json: the JSON Schema of every Lambda event, from tmdb_async/events.py.
schema: $(VENV)/.dev
	$(PY) -m tmdb_devtools schema

layer: $(VENV)/.dev
	$(PY) layer/build.py

clean:
	rm -rf $(VENV) $(SAM_VENV) out build .pytest_cache
