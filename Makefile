# Two commands do all set-up (see README.md):
#   make run    start the whole service locally on 127.0.0.1:8000
#   make test   run the whole test suite
# Both create .venv and install into it first; a second run reuses what is there.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test install lint format bench clean

run: $(INSTALLED)
	$(BIN)/python manage.py runstack

test: $(INSTALLED)
	$(BIN)/python tests/run.py $(ARGS)

install: $(INSTALLED)

# torch first and pinned: on these machines 2.13.0 is a local CPU build, while an unpinned torch would
# pull gigabytes of CUDA packages. pyproject.toml keeps a range that 2.13.0 satisfies. Then everything:
# the base install is the client alone; [server] adds the service (and [ml], rlcore's), [dev] the tests.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	touch $@

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
