# Two commands on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint clean bench bench-quick bench-setup

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tokenledger serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Benchmarks: they measure and print (nothing asserts a figure). Full runs write bench/results/.
bench-setup: $(STAMP)
	sh bench/setup.sh

bench: bench-setup
	$(BIN)/python -m bench.inprocess --backend sqlite --json bench/results/inprocess-sqlite.json
	$(BIN)/python -m bench.inprocess --backend postgres --json bench/results/inprocess-postgres.json
	$(BIN)/python -m bench.http --json bench/results/http.json
	$(BIN)/python -m bench.audit --json bench/results/audit.json

bench-quick: bench-setup
	$(BIN)/python -m bench.inprocess --quick
	$(BIN)/python -m bench.http --quick
	$(BIN)/python -m bench.audit --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
