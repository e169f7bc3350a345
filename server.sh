#!/usr/bin/env bash
# Starts the server. On first use it creates .venv and installs the package.
# With no configuration file it starts in demo mode (embedded PBX simulator, loopback only).
# Arguments go to `vwell-pbx serve`, e.g. `bash server.sh --config config/app-config.toml`.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/vwell-pbx ]; then
    echo "server.sh: first run, creating .venv and installing vwell-pbx-srv"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e .
fi
exec .venv/bin/vwell-pbx serve "$@"
