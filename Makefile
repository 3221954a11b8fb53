# sslkit — one command for the main job, one for the tests.
#   make demo   create .venv if missing, install the kit, run `sslkit demo`
#   make test   create .venv if missing, run unit tests, notebooks (nbval) and browser tests
#   make lab    JupyterLab on 127.0.0.1 (token authentication on), opening the first notebook
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The stamp is keyed by a hash of the requirement files, so a second run is instant and
# an edited pyproject.toml reinstalls.
REQ_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: venv demo test test-unit test-notebooks test-browser lab bench clean

venv: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

demo: venv
	$(BIN)/sslkit demo

test: test-unit test-notebooks test-browser

test-unit: venv
	$(BIN)/python -m pytest -q tests --ignore=tests/browser

test-notebooks: venv
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks; \
	else echo "no notebooks yet"; fi

test-browser: venv
	@if [ -d tests/browser ]; then $(BIN)/python -m pytest -q tests/browser; else echo "no browser tests yet"; fi

# Token authentication stays on (a fresh random token, printed in the URL); root needs --allow-root.
lab: venv
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root) \
	  --ServerApp.root_dir=notebooks --LabApp.default_url=/lab/tree/00_tour.ipynb

bench: venv
	$(BIN)/python benchmarks/pretext_throughput.py

clean:
	rm -rf $(VENV) runs artifacts .pytest_cache
