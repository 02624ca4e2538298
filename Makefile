# Pawpularity MLOps — run `make help` for the targets.
SHELL := /bin/bash
# uv from PATH, else the module (right after `pip install uv`, before any shell rehash).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export NML_DISABLE_USAGE_LOGGING := 1

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Install uv if missing, then the locked environment (.venv)
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv || \
		python3 -m pip install --quiet --user --break-system-packages uv
	$(UV) sync --frozen --all-extras --compile-bytecode

.PHONY: demo
demo: setup ## Quick start: the local stack, two months run by Airflow's scheduler, the champion served
	$(UV) run --frozen pawpaw demo

.PHONY: up
up: setup ## Start the local stack (lakeFS emulator, MLflow, Airflow x4, the bento); a no-op when up
	$(UV) run --frozen pawpaw up

.PHONY: down
down: ## Stop every process of the local stack
	$(UV) run --frozen pawpaw down

.PHONY: status
status: ## Each service of the local stack: URL, pid, health
	$(UV) run --frozen pawpaw status

.PHONY: services
services: ## Start the services the tests need (PostgreSQL), install headless Chromium
	bash scripts/postgres.sh
	bash scripts/browser.sh

.PHONY: test
test: setup services ## Run every test tier (unit, integration, dags, e2e, browser)
	$(UV) run --frozen pytest

.PHONY: test-unit
test-unit: setup ## Unit tests only (no services)
	$(UV) run --frozen pytest -m unit

.PHONY: lint
lint: ## ruff format --check + ruff check
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .

.PHONY: format
format: ## Format and autofix with ruff
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

.PHONY: bench
bench: setup ## Run the benchmarks (numbers go to the README)
	@for b in benchmarks/*.py; do echo "== $$b"; $(UV) run --frozen python $$b || exit 1; done
