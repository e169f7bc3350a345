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
