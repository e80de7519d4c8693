# Two commands: `make demo` and `make test`. Each creates .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= healthy
SEED ?= 1

.PHONY: demo test lint bench bench-quick clean services

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/canary-analyzer demo --scenario $(SCENARIO) --seed $(SEED) --db sqlite:///demo.db $(if $(LOAD),--load $(LOAD))

test: $(STAMP)
	bash scripts/ensure-services.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.judges --quick

bench: $(STAMP)
	$(BIN)/python -m benchmarks.judges

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache demo.db
