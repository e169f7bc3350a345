"""Logging set-up: plain text or one JSON object per line, with a request id when known.

Log records never carry credentials: the API layer logs logins (not passwords or
SHA-1s), and the AMI client never logs its secret.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import secrets
import sys
import time

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The id of the request being handled in this task, set by the web layer."""

_RUN_ID = secrets.token_hex(2)
_REQUEST_NUMBERS = itertools.count(1)


def new_request_id() -> str:
    """A short id for log lines, unique within this run (a counter: cheap)."""
    return f"{_RUN_ID}-{next(_REQUEST_NUMBERS):x}"


def sub_request_id() -> str:
    """An id for one request of a connection: the connection's id, a dot, a number."""
    return f"{request_id.get()}.{next(_REQUEST_NUMBERS):x}"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "requestId": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str, fmt: str) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_vwell", False):
            root.removeHandler(old)
    handler._vwell = True  # type: ignore[attr-defined]  # marks our own handler
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
