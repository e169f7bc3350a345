"""Sending SMS through the PBX's GSM hardware (the ``gsmSendSMS`` method).

Three backends, one shape, chosen by ``[sms] backend`` (``make_sms_backend``):

- ``yeastar`` (MyPBX, the original's): ``Action: Command`` with the CLI line
  ``gsm send sms SPAN NUMBER "TEXT"``; the answer only says the command ran
  (``accepted``). See ``yeastar``.
- ``yeastar-tg`` (TG gateways): ``Action: smscommand``; delivery reported by
  ``UpdateSMSSend``. See ``yeastar``.
- ``dongle`` (chan_dongle): ``Action: DongleSendSMS``; delivery reported by
  ``DongleSMSStatus``. See ``dongle``.

The package is cut along the seams of the job:

=================  =====================================================================
``text``           the encodings that keep SMS text inside its quotes or header, and
                   the size limits (refused as ``InvalidArgument('msg')``)
``submission``     the contract between a backend and whatever schedules it: one
                   SMS handed over now, its ``Attempt`` and ``Verdict`` (accepted,
                   sent, failed for good, worth a retry, in doubt)
``outbox``         ``SmsOutbox``, the durable scheduler ``gsmSendSMS`` uses: the SMS is
                   stored, then sent by one sender per PBX from the store (``queued ->
                   sending -> sent | failed | unknown``), paced per lane across restarts
                   and instances, retried with backoff, never resent when in doubt
``inbox``          incoming SMS: the three backends' events decoded (URL-encoding,
                   base64, UCS-2 hex), long SMS joined, stored, announced (``SmsInbox``)
``pacing``         ``SmsQueue``, the in-memory scheduler behind ``PacedSmsBackend.send``
                   (for embedders without a database; the server uses the outbox)
``base``           ``PacedSmsBackend``: ``submit``/``settle`` (no scheduling) and
                   ``send`` (= check, queue, submit, settle)
``yeastar``,       the backends: how each PBX takes an SMS and reports on it
``dongle``
``backends``       ``make_sms_backend`` from the configuration
=================  =====================================================================

A scheduler drives a backend through ``SmsSubmitter``: ``lane`` to pace, ``check``
before storing, ``submit`` in the lane's turn, ``settle`` for the report, and the
``Verdict`` to decide between done, retry with backoff, and asking a human
(``IN_DOUBT``: never resent automatically). The outbox and the inbox reach the database
through the ``OutboxStore`` and ``InboxStore`` protocols (``storage.sms.SmsStore``
implements both), so this layer never imports the storage.
"""

from vwell_pbx.pbx.sms.backends import BACKENDS, make_sms_backend
from vwell_pbx.pbx.sms.base import PacedSmsBackend
from vwell_pbx.pbx.sms.dongle import DongleBackend
from vwell_pbx.pbx.sms.inbox import (
    INCOMING_EVENTS,
    InboxSettings,
    InboxStore,
    IncomingSms,
    SmsAssembler,
    SmsInbox,
    decode_base64,
    decode_content,
    sender_number,
    ucs2_hex_text,
)
from vwell_pbx.pbx.sms.outbox import (
    FINAL_STATUSES,
    OutboxRecord,
    OutboxSettings,
    OutboxStore,
    SmsOutbox,
)
from vwell_pbx.pbx.sms.pacing import DEFAULT_INTERVAL, DEFAULT_QUEUE_SIZE, SmsQueue
from vwell_pbx.pbx.sms.submission import (
    Attempt,
    PendingReport,
    SmsBackend,
    SmsResult,
    SmsStatus,
    SmsSubmitter,
    Verdict,
    verdict_for,
)
from vwell_pbx.pbx.sms.text import (
    MAX_LINE_BYTES,
    MAX_TEXT_CHARS,
    escape_sms_text,
    flatten_controls,
    percent_encode,
)
from vwell_pbx.pbx.sms.yeastar import (
    DEFAULT_SPAN_CACHE_SECONDS,
    YeastarCommandBackend,
    YeastarTgBackend,
    parse_span_detail,
    parse_span_list,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_INTERVAL",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_SPAN_CACHE_SECONDS",
    "FINAL_STATUSES",
    "INCOMING_EVENTS",
    "MAX_LINE_BYTES",
    "MAX_TEXT_CHARS",
    "Attempt",
    "DongleBackend",
    "InboxSettings",
    "InboxStore",
    "IncomingSms",
    "OutboxRecord",
    "OutboxSettings",
    "OutboxStore",
    "PacedSmsBackend",
    "PendingReport",
    "SmsAssembler",
    "SmsBackend",
    "SmsInbox",
    "SmsOutbox",
    "SmsQueue",
    "SmsResult",
    "SmsStatus",
    "SmsSubmitter",
    "Verdict",
    "YeastarCommandBackend",
    "YeastarTgBackend",
    "decode_base64",
    "decode_content",
    "escape_sms_text",
    "flatten_controls",
    "make_sms_backend",
    "parse_span_detail",
    "parse_span_list",
    "percent_encode",
    "sender_number",
    "ucs2_hex_text",
    "verdict_for",
]
