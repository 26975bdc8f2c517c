# ongrid: two commands matter. `make demo` runs the simulated house with every service;
# `make test` runs the test suite. Both set up what they need on a fresh Debian/Ubuntu machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The fault suite and the fuzzers run the whole fleet (~7 min on 2 cores): their own target,
# which .ci/run calls after `make test`.
.PHONY: test-faults

.PHONY: demo test check lint typecheck docs bench clean venv system-deps-demo system-deps-test

# The one container image and the image run for real: their own targets (docs/deployment.md).
.PHONY: image test-image system-deps-image

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

system-deps-demo:
	@deploy/system-deps.sh demo

system-deps-test:
	@deploy/system-deps.sh test

system-deps-image:
	@deploy/system-deps.sh image

demo: system-deps-demo venv
	$(BIN)/ongrid demo

test: system-deps-test venv check
	$(BIN)/pytest -q --ignore=tests/faults --ignore=tests/fuzz --ignore=tests/image

test-faults: system-deps-test venv
	$(BIN)/pytest -q tests/faults tests/fuzz

# deploy/Dockerfile built with podman or docker, whichever works here; without a registry the base
# image is made locally first (deploy/base-image.sh). IMAGE=, BASE_IMAGE= override.
image:
	@deploy/build-image.sh

# The fleet of docker-compose.yml in containers of that image under podman (tests/image): builds the
# image, installs podman and runc as root when missing, skips with the reason where none can be had.
test-image: system-deps-image venv
	ONGRID_TEST_IMAGE=1 $(BIN)/pytest -q -rs tests/image

check: lint typecheck
	$(BIN)/python -m shared.asyncapi --check
	$(BIN)/python -m shared.config.reference --check

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy shared services

docs: venv
	$(BIN)/python -m shared.asyncapi
	$(BIN)/python -m shared.config.reference
	$(BIN)/python deploy/grafana/generate.py

# Every benchmark, one after another, JSON collected in var/bench/results.json (about an hour;
# `make bench BENCH_ARGS=--quick` for reduced sizes, see benchmarks/run_all.py).
bench: system-deps-test venv
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
