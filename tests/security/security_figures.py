"""Figures the security and fault suites report: how many inputs they tried, how many
PBX restarts the server survived. Each test adds its counts to
``test-artifacts/security-figures.json`` (merged, so a partial run keeps the others) and
prints them (visible with ``pytest -s``); docs/security.md quotes them."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FIGURES = ARTIFACTS / "security-figures.json"
_lock = threading.Lock()


def record(name: str, **counts: int | float | str) -> None:
    """Store ``counts`` under ``name`` in the figures file and print them."""
    with _lock:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            data: dict[str, Any] = json.loads(FIGURES.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        data[name] = counts
        tmp = FIGURES.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(FIGURES)
    print(f"\n[figures] {name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
