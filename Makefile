# One entry point for set-up: every target creates .venv and installs bench into it on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install quickstart test test-slow bench-perf lint clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python -m bench run configs/quickstart.yaml

# the import contracts first (pyproject.toml [tool.importlinter]: layers, no cycles), then the suite
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not slow"

# kill-and-resume, torchrun, pip-installed plugin, the trained ResNet/plain lesion pairs: minutes; CI runs them after `make test`
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench-perf: $(STAMP)
	$(BIN)/python -m bench bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
