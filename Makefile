# `make run` starts the whole system on its embedded defaults; `make test` runs the suite.
# Both are development commands: they run with DJANGO_DEBUG=true (the settings default to false).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The runtime set (requirements.txt) plus the test and development tools, installed again when
# either lock file changes. Every package is pinned with its hashes; pip refuses anything else.
STAMP := $(VENV)/.installed-requirements-dev
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check --require-hashes
# pip-compile's options for both lock files: hashes, pip and setuptools pinned too (hash-checking
# needs every package), and no index or find-links of this machine written into them.
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

.PHONY: run test fuzz lint format lock audit setup_queues clean chaos evaluate-anomalies bench bench-growth demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@

run: $(STAMP)
	DJANGO_DEBUG=true PATH="$(CURDIR)/$(BIN):$$PATH" bin/run-dev

# The suite in TEST_WORKERS processes (pytest-xdist; each with its own ports, Redis database and test
# database: tests/parallel.py). Most integration tests wait on workers and timeouts, so three share two
# cores well. TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 3

test: $(STAMP)
	mkdir -p var
	rm -rf var/test-metrics
	bin/ensure-chromium
	bin/ensure-promtool
	DJANGO_DEBUG=true PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

# The API fuzzed against its own schema at length (make test runs a short round of the same).
fuzz: $(STAMP)
	mkdir -p var
	DJANGO_DEBUG=true PATH="$(CURDIR)/$(BIN):$$PATH" FUZZ_EXAMPLES=500 $(BIN)/pytest tests/test_api_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The deployment (README, Deploying): the CloudFormation template through cfn-lint and checkov, the
# Dockerfile through hadolint, all offline. make test runs the same checks (tests/test_deploy_*.py).
.PHONY: lint-infra
lint-infra: $(STAMP)
	$(BIN)/cfn-lint ops/aws/gift-a-voucher.yaml
	$(BIN)/checkov -f ops/aws/gift-a-voucher.yaml --framework cloudformation --skip-policy-download \
		--no-guide --compact --quiet
	$(BIN)/hadolint Dockerfile

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Recompile both lock files from requirements.in and requirements-dev.in. Pins already in the lock
# files are kept; to move one: make lock ARGS="--upgrade-package django" (or ARGS=--upgrade).
lock: $(STAMP)
	$(PIP_COMPILE) $(ARGS) --output-file requirements.txt requirements.in
	$(PIP_COMPILE) $(ARGS) --output-file requirements-dev.txt requirements-dev.in

# The pinned runtime set against a vulnerability database (pip-audit and OSV); see bin/audit-dependencies.
audit: $(STAMP)
	$(BIN)/python bin/audit-dependencies requirements.txt

# The chaos run (bench/chaos.py): faults on loopback (10-20 min on two cores), then the invariants; 1 if any broke.
chaos: $(STAMP)
	mkdir -p var
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/chaos.py --report var/chaos-report.txt

# The benchmarks (docs/benchmarks.md): accept against its floors, the drain against Celery's and raw
# SQS, accept with SQS slowed and down, serial and end-to-end latency; the real stack on loopback
# (PostgreSQL database `bench`, Redis db 12, LocalStack's SQS, web on :8411), about 12 minutes.
bench: $(STAMP)
	mkdir -p var
	bin/ensure-wrk
	bin/ensure-localstack
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/accept.py $(ACCEPT_ARGS)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/drain.py $(DRAIN_ARGS)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/accept_faults.py $(FAULTS_ARGS)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/latency.py $(LATENCY_ARGS)

# The growth benchmark (bench/growth.py; docs/benchmarks.md, "Growth"): accept and the review queue
# with 10 thousand, then 1 million existing gifts, bulk-loaded; about 15 minutes on two cores.
bench-growth: $(STAMP)
	mkdir -p var
	bin/ensure-localstack
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/growth.py $(GROWTH_ARGS)

# Demo users and a gift in every state (gifting/demo.py), with `make run` going in another terminal.
demo: $(STAMP)
	DJANGO_DEBUG=true $(BIN)/python manage.py demo

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

# The anomaly detectors evaluated offline on generated data with injected incidents and fraud
# (figures in docs/anomaly-detection.md).
evaluate-anomalies: $(STAMP)
	mkdir -p var
	DJANGO_DEBUG=true $(BIN)/python bench/evaluate_ops_anomalies.py
	DJANGO_DEBUG=true $(BIN)/python bench/evaluate_fraud_anomalies.py
