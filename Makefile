# `make run` starts the whole system on its embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements

.PHONY: run test fuzz lint format setup_queues clean chaos

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bin/run-dev

test: $(STAMP)
	mkdir -p var
	rm -rf var/test-metrics
	bin/ensure-chromium
	bin/ensure-promtool
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

# The API fuzzed against its own schema at length (make test runs a short round of the same).
fuzz: $(STAMP)
	mkdir -p var
	PATH="$(CURDIR)/$(BIN):$$PATH" FUZZ_EXAMPLES=500 $(BIN)/pytest tests/test_api_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The chaos run (bench/chaos.py): faults on loopback (10-20 min on two cores), then the invariants; 1 if any broke.
chaos: $(STAMP)
	mkdir -p var
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/chaos.py --report var/chaos-report.txt

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
