# Trace Edge Agent: `make demo` runs the main job, `make test` runs every check.
# Both create the virtualenv and install what they need on a fresh Debian / Raspberry Pi OS.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv mosquitto chromium screenshots check lint typecheck layers test test-fast demo bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "cannot create a virtualenv: install python3-venv (sudo apt-get install python3-venv)"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,tools]'
	@touch $(STAMP)

venv: $(STAMP)

mosquitto:
	@sh scripts/ensure-mosquitto.sh

chromium:
	@sh scripts/ensure-chromium.sh

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

layers: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/core/test_layers.py

check: lint typecheck layers

test: venv mosquitto chromium check
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

demo: venv mosquitto
	$(BIN)/python scripts/demo.py

# Refresh docs/img/*.png from the browser tests of the technician's page.
screenshots: venv mosquitto chromium
	EDGE_AGENT_DOC_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/web/test_web_browser.py \
		tests/web/test_web_reader_settings.py

bench: venv mosquitto
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
