# On a fresh clone `make run` and `make test` are the whole set-up: both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# No "Entering directory" lines on stdout either, when make runs inside another make (CI, a user's own Makefile).
MAKEFLAGS += --no-print-directory

.PHONY: run test lint typecheck unit bench crash clean browser

# Set-up output goes to stderr and recipes are not echoed, so `make run | jq` sees only the daemon's JSON lines.
$(STAMP): pyproject.toml
	@echo "creating $(VENV) and installing trader with its test tools (first run only)" >&2
	@$(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet -e '.[test]' >&2
	@# The official Fyers SDK, test only (tests/test_fyers_*conformance*): it pins exact old versions of aiohttp,
	@# requests and setuptools that would downgrade ours, so it comes without its pins; what it imports is in [test].
	@$(BIN)/python -m pip install --quiet --no-deps 'fyers-apiv3==3.2.0' >&2
	@touch $(STAMP)

run: $(STAMP)
	@$(BIN)/trader run $(ARGS)

# mypy checks trader, tests and bench, all --strict: the list is [tool.mypy] files in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check trader tests bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest

test: browser $(BIN)/promtool lint unit

# promtool (Prometheus's own checker) for tests/test_metrics_promtool.py: taken from Debian's prometheus package with
# `apt-get download` and unpacked into .venv/bin (nothing installed system-wide, no server started, no root needed).
# All output goes to stderr; without apt-get a message says what to do and that test fails, naming the fix.
$(BIN)/promtool: $(STAMP)
	@if command -v apt-get >/dev/null 2>&1; then \
		echo "fetching promtool from Debian's prometheus package (first run only)" >&2; \
		tmp=$$(mktemp -d) && ( cd $$tmp && { apt-get download prometheus >/dev/null 2>&1 \
		  || { apt-get update >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; } \
		  && dpkg-deb -x prometheus_*.deb x && cp x/usr/bin/promtool $(CURDIR)/$(BIN)/promtool ) >&2 \
		  || echo "could not fetch promtool with apt-get download: tests/test_metrics_promtool.py will fail" >&2; \
		rm -rf $$tmp; \
	else \
		echo "tests/test_metrics_promtool.py needs promtool in $(BIN)/ or on PATH (Prometheus's release archive)" >&2; \
	fi

# The dashboard's browser test (tests/test_dashboard_browser.py) drives Debian's Chromium through Playwright (never
# `playwright install`: no browser download). Installed here when /usr/bin/chromium is missing and we are root with
# apt-get; otherwise a message says what to do. All output goes to stderr.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the dashboard's browser test (first run only)" >&2; \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
		  || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }; \
		} >&2 || echo "could not install chromium with apt-get: tests/test_dashboard_browser.py will fail" >&2; \
	else \
		echo "tests/test_dashboard_browser.py needs Chromium at /usr/bin/chromium: install Debian's package as root" \
		     "(apt-get install chromium), then run make test again" >&2; \
	fi

# Standard output is the figures, one line each: figure | baseline measured in the same run | ratio.
bench: $(STAMP)
	@$(BIN)/python bench/bus.py
	@$(BIN)/python bench/decode.py
	@$(BIN)/python bench/recorder.py
	@$(BIN)/python bench/backtest.py

# The kill -9 harness: 200 SIGKILLs of the live daemon against `trader sim`, fault knobs on (tens of minutes);
# prints its counts one line each and exits non-zero unless all are 0. ARGS="--quick" for a handful of kills.
crash: $(STAMP)
	@$(BIN)/python bench/crash.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
