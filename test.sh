#!/usr/bin/env bash
# Runs every test. On a fresh Debian/Ubuntu machine with only Python 3.11+ it first
# creates .venv and installs the package with its dev dependencies (and, for the
# browser tests, Debian's chromium if it is missing). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.dev-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    touch "$stamp"
fi

# The original's $.post example runs in the browser against Debian's jQuery
# (tests/web/test_seed_examples.py skips that part without it).
if [ -d tests/browser ] && [ ! -f /usr/share/javascript/jquery/jquery.min.js ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing libjs-jquery from Debian's packages for the browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjs-jquery >/dev/null
    else
        echo "test.sh: libjs-jquery is missing; the \$.post example will be skipped (apt-get install libjs-jquery)" >&2
    fi
fi

# Browser tests drive Debian's chromium through Playwright (no browser download).
if [ -d tests/browser ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing chromium from Debian's packages for the browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "test.sh: chromium is missing; browser tests will be skipped (apt-get install chromium)" >&2
    fi
fi

exec .venv/bin/python -m pytest "$@"
