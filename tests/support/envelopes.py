"""``assert_envelope``: what every answer of the API must look like, whatever it says."""

from __future__ import annotations

from typing import Any

from vwell_pbx.api.errors import ALL_CODES


def assert_envelope(answer: object) -> dict[str, Any]:
    """``answer`` is a well-formed envelope and not an ``internal`` error; returns it.

    Well-formed: an object with ``err``, ``errCode`` and ``reqId``; on success both
    ``err`` and ``errCode`` are null, on failure ``err`` is a message and ``errCode`` one
    of the documented codes. ``internal`` means a bug in the server, never an answer to
    anything a client can send.
    """
    assert isinstance(answer, dict), answer
    assert "err" in answer and "errCode" in answer and "reqId" in answer, answer
    err, code = answer["err"], answer["errCode"]
    if code is None:
        assert err is None, answer
    else:
        assert isinstance(err, str) and err, answer
        assert code in ALL_CODES, answer
        assert code != "internal", answer
    return answer
