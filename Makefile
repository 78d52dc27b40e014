# Two commands on a fresh machine: `make run` and `make test`. Only python3 (3.11+) and make needed.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: run test lint format bench install tools clean os-packages

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e '.[dev]'
	touch $(STAMP)

# Tesseract OCR and DejaVu fonts from Debian where missing (as root); otherwise says what to install.
os-packages:
	@bash .ci/os-packages.sh

# Platform tools from Debian (as root; elsewhere a clear note and the check that needs it is skipped):
# promtool checks deploy/prometheus/alerts.yml.
tools:
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
	  || echo "promtool not installed (Debian package prometheus, needs root): the alert-rules check will be skipped"


install: os-packages $(STAMP) tools

run: os-packages $(STAMP)
	$(BIN)/autodispatch up

# Test files spread over TEST_WORKERS processes (pytest-xdist), each with its own servers; 0: one process.
TEST_WORKERS ?= 2

test: os-packages $(STAMP) tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/autodispatch bench --scenario all

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache
