# storyboard-service: `make run` starts the service on the embedded backend,
# `make test` runs lint and the whole suite. Both create .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench bench-smoke clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/storyboard serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/mypy deploy/validate.py deploy/observability/rules.py
	$(BIN)/cfn-lint deploy/aws/storyboard.yaml
	$(BIN)/python deploy/validate.py
	$(BIN)/python deploy/observability/rules.py --check

# One pytest-xdist worker a core: every worker has its own moto server, and every test its
# own ports, data directory and AWS resource names, so tests can run side by side.
test: lint
	$(BIN)/pytest -q -n auto

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

# One tiny case of each benchmark, checked by bench/smoke.py; CI runs it after `make test`.
bench-smoke: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.smoke

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info
