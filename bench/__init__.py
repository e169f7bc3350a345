"""Benchmarks of vwell-pbx-srv: ``bash bench.sh`` (or ``python -m bench``); see
``bench/__main__.py`` and docs/performance.md. Never part of the test suite."""
