# Baton: the two commands a new user needs, `make demo` and `make test`.
# Both create .venv on first use and install Baton into it; nothing else is needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

# Where `make demo` / `make dev` put their Temporal server, for a second stack beside a first:
#   make demo PORT=7300 UI_PORT=8300     (UI_PORT defaults to PORT+1000, DB to .baton/temporal-PORT.db)
# Unset, the demo uses the server TEMPORAL_ADDRESS / TEMPORAL_PROFILE names, else 7233.
STACK_ARGS = $(if $(PORT),--port $(PORT)) $(if $(UI_PORT),--ui-port $(UI_PORT)) $(if $(DB),--db $(DB))

.PHONY: demo test chaos bench dev worker clean

# Baton, and its shipped processes as the package of their own they are (examples/pyproject.toml).
$(STAMP): pyproject.toml examples/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]' -e ./examples
	touch $(STAMP)

demo: $(STAMP)  ## run every shipped process on the example inputs, on a local Temporal
	$(BIN)/baton demo $(STACK_ARGS)

test: $(STAMP) $(CHROMIUM)  ## the whole suite: time-skipping unit tests, dev-server integration, Web UI in chromium, replay
	$(BIN)/python -m pytest

# Debian's chromium: tests/test_web_ui_browser.py reads the Web UI in it. Installed as root
# (CI); anyone else is told how, and that test fails saying the same.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else echo "make: $(CHROMIUM) is missing: sudo apt-get update && sudo apt-get install -y chromium"; fi

chaos: $(STAMP)  ## 200 runs through worker kill -9s and a server restart: nothing lost, nothing twice
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

bench: $(STAMP)  ## issue 20's figures beside bare temporalio, each with its goal, in one run (encrypted)
	$(BIN)/python -m benchmarks.steps
	$(BIN)/python -m benchmarks.model_path
	$(BIN)/python -m benchmarks.overhead
	$(BIN)/python -m benchmarks.cost
	$(BIN)/python -m benchmarks.throughput
	$(BIN)/python -m benchmarks.parked --parked 1000
	$(BIN)/python -m benchmarks.parked --parked 2000 --cache 250

dev: $(STAMP)  ## Temporal's dev server (Web UI :8233) and a worker, until Ctrl-C
	$(BIN)/baton dev $(STACK_ARGS)

worker: $(STAMP)  ## a worker only, against whatever TEMPORAL_* / profile points at
	$(BIN)/python -m worker

clean:
	rm -rf $(VENV) .baton *.egg-info
