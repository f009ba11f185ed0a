# The two commands a newcomer needs:
#   make run   - install into .venv and run the daemon (SQLite, demo catalog, built-in Stripe emulator)
#   make test  - install test dependencies and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCALSTRIPE_VENV ?= .venv-localstripe
PYTEST_ARGS ?=

.PHONY: run test lint venv test-deps bench bench-quick

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[postgres,redis,fast]'

run: venv
	$(BIN)/syncd run

# localstripe (GPL) is only ever run as a separate process, from its own virtualenv.
$(LOCALSTRIPE_VENV)/bin/localstripe:
	$(PYTHON) -m venv $(LOCALSTRIPE_VENV)
	$(LOCALSTRIPE_VENV)/bin/python -m pip install -q 'localstripe>=1.15,<2'

test-deps: $(BIN)/python $(LOCALSTRIPE_VENV)/bin/localstripe
	$(BIN)/python -m pip install -q -e '.[test]'

test: test-deps
	SYNCD_LOCALSTRIPE=$(abspath $(LOCALSTRIPE_VENV))/bin/localstripe $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy

# Every performance target of issues #3/#4/#5/#8 in one table, written into bench/RESULTS.md.
# flock: one benchmark at a time on a shared machine.
bench: test-deps
	flock /tmp/bench.lock $(BIN)/python bench/run.py --markdown bench/RESULTS.md

bench-quick: test-deps
	flock /tmp/bench.lock $(BIN)/python bench/run.py --quick
