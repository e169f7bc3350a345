"""Fault suites: ``soak`` tests (long variants, registered in pyproject.toml) run only with
``VWELL_SOAK=1``."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``soak`` tests unless ``VWELL_SOAK=1``."""
    if os.environ.get("VWELL_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak test: run with VWELL_SOAK=1 (see docs/security.md)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
