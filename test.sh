#!/usr/bin/env bash
# Runs every test. On a fresh Debian/Ubuntu machine with only Python 3.11+ it first
# creates .venv and installs the package with its dev dependencies (and, when they are
# missing, Debian's chromium for the browser tests, postgresql for the storage tests
# and mariadb-server for the user directory tests, which start throw-away servers of
# their own). Extra arguments go to pytest.
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

# Storage tests run every case on SQLite and on a throw-away PostgreSQL cluster that
# they start themselves (initdb in a temporary folder, a free loopback port): only the
# server binaries are needed, not a running service.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing postgresql from Debian's packages for the storage tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "test.sh: postgresql is missing; PostgreSQL storage tests will be skipped (apt-get install postgresql)" >&2
    fi
fi

# The SQL user directory's tests also run on a throw-away MariaDB of their own
# (mariadb-install-db in a temporary folder, a free loopback port): again only the
# server binaries are needed.
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing mariadb-server from Debian's packages for the user directory tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
    else
        echo "test.sh: mariadb-server is missing; the MariaDB user directory tests will be skipped (apt-get install mariadb-server)" >&2
    fi
fi

# One pytest-xdist worker per core (-n auto); --dist loadscope keeps each test module on
# one worker, so a module's shared fixtures (tests/instances starts three server
# processes per module) are built once. Each worker starts its own throw-away database
# servers (free ports, temporary folders). Asking for -n yourself (-n 0: serially), for
# -s or for a debugger runs pytest as asked, without these defaults.
parallel=(-n auto --dist loadscope)
for arg in "$@"; do
    case "$arg" in
        -n | -n[0-9]* | -nauto | -nlogical | --numprocesses* | --dist* | no:xdist | -pno:xdist \
            | -s | --capture=no | --pdb | --trace)
            parallel=()
            ;;
    esac
done
exec .venv/bin/python -m pytest "${parallel[@]}" "$@"
