#!/usr/bin/env bash
# Run the benchmarks: bash bench.sh [--quick] [--only fanout,broadcast,roundtrip,connections,startup] [--uvloop] [--no-calls-off] [--feeds ast20,yeastar,newchannel] [--compare-src DIR]
# Results: Markdown tables on stdout and bench/results/<date>.json. See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")"
# 10,000 idle WebSockets need more than the usual 1024 open files per process.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export PYTHONPATH="$PWD:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m bench "$@"
