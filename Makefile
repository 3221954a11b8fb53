# sslkit — one command for the main job, one for the tests.
#   make demo   create .venv if missing, install the kit, run `sslkit demo`
#   make test   create .venv if missing, run unit tests, notebooks (nbval) and browser tests
#   make lab    JupyterLab on 127.0.0.1 (token authentication on), opening the first notebook
#   make lock   rewrite requirements.lock from a fresh environment (after changing pyproject.toml)
# The kit supports version ranges (pyproject.toml); make installs the exact versions pinned in
# requirements.lock, so every run gets the same torch, torchvision and everything below them.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
# The stamp is keyed by a hash of the requirement files, so a second run is instant and
# an edited pyproject.toml or lock file reinstalls.
REQ_HASH := $(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: venv demo test test-unit test-notebooks test-browser lab bench lock clean

venv: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || { $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
	  || { echo "sslkit needs Python >= 3.10; run: make PY=/path/to/python3.11"; exit 1; }; \
	  $(PY) -m venv $(VENV); }
	$(BIN)/python -m pip install -q -c $(LOCK) --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[dev]'
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

# The lock is the pip freeze of an environment made from pyproject.toml alone (no lock), so it
# holds exactly the dependencies of sslkit[dev]; review the diff, then commit it.
lock:
	d=$$(mktemp -d) && $(PY) -m venv $$d && $$d/bin/python -m pip install -q --upgrade pip \
	  && $$d/bin/python -m pip install -q -e '.[dev]' \
	  && { sed -n '/^#/p' $(LOCK); $$d/bin/python -m pip freeze --all --exclude-editable; } > $(LOCK).new \
	  && mv $(LOCK).new $(LOCK); rm -rf $$d

clean:
	rm -rf $(VENV) runs artifacts .pytest_cache
