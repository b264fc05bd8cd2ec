# The README's two commands: `make demo` and `make test`. Both work on a fresh machine with
# Python 3.11+, make, and (for the tests) Node.js with npm.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev lint bench addon clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# the demo runs the whole pipeline (bake, splat, local verifier peers, quote, report): every extra
install: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all]'

# torch pinned first (the CPU build on CI machines): the extras' torch range then installs nothing
# more, where a bare `torch` requirement would pull a multi-GB CUDA build
install-dev: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	npm ci --prefix tests/external --no-audit --no-fund --loglevel=error
	@# headless Chromium loads report.html in the report tests (Debian's package; needs root or sudo)
	command -v chromium >/dev/null || { SUDO=$$(command -v sudo || true); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@# msgpack wheels for Blender's Python 3.11 on each platform, so add-on builds in tests need no network
	for tag in manylinux2014_x86_64 win_amd64 macosx_11_0_arm64; do \
	  $(BIN)/pip download msgpack --only-binary=:all: --no-deps --python-version 3.11 --platform $$tag \
	    --quiet -d .wheels || exit 1; done

demo: install
	$(BIN)/optimizer demo --out optimizer-demo

# pytest exits 5 when it collected no tests: a broken setup, never a pass
test: install-dev
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

lint: install-dev
	$(BIN)/ruff check engine tests bench build_addon.py

bench: install
	$(BIN)/python bench/bench_analyze.py
	$(BIN)/python bench/bench_wire.py

addon: install-dev
	$(BIN)/python build_addon.py --wheels-from .wheels

clean:
	rm -rf $(VENV) optimizer-demo build dist .wheels *.egg-info tests/external/node_modules
