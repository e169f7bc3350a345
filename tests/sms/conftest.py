"""The SMS outbox and inbox end to end: the real server (in this process, or as a
``vwell-pbx serve`` process) against the real simulator, over real sockets."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so that this folder's slow tests run the same whether or not
    # the project's own marker list has it yet (registering a marker twice is harmless).
    config.addinivalue_line(
        "markers", "slow: server processes, fault injection and long waits (the slow subset)"
    )
