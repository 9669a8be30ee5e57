# OpenSSM developer entry points. The README's two commands are `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart server test check unit install system-deps console-assets dist bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

console-assets: $(STAMP)
	@if [ -f package.json ]; then npm install --no-audit --no-fund --silent && $(BIN)/python scripts/build-console-assets; fi

## Run an embedded server, register a local agent and open a shell into it.
quickstart: install console-assets
	$(BIN)/openssm quickstart

## Run just the embedded server (SQLite + files under ./.data).
server: install console-assets
	$(BIN)/openssm server --data-dir .data

## Wheel and sdist in dist/ with the console's built assets: `pip install dist/openssm-*.whl`
## serves a working console with no npm anywhere (scripts/check-dist makes sure).
dist: install console-assets
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python scripts/check-dist dist

system-deps:
	bash scripts/install-system-deps
	bash scripts/start-services

## Lint, type-check, contracts, then the whole test suite (2 workers).
check: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/mypy tests
	$(BIN)/mypy bench
	$(BIN)/lint-imports

test: system-deps install console-assets check
	$(BIN)/pytest -n 2 -q -p no:cacheprovider
	@echo "== API integration tests again, on PostgreSQL (scale-out store)"
	OPENSSM_TEST_DATABASE=postgresql $(BIN)/pytest -n 2 -q -p no:cacheprovider -m "not slow" \
	    $$(grep -l api_harness tests/integration/test_*.py)

unit: install
	$(BIN)/pytest -q tests/unit tests/replay

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache node_modules build dist
