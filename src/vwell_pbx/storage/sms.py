"""``SmsStore``: the SMS outbox and inbox (``sms_messages``), idempotency keys
(``sms_keys``) and the pacing lanes (``sms_lanes``).

One row of ``sms_messages`` is one SMS, outgoing (``direction = 'out'``) or incoming
(``'in'``); times are Unix epoch seconds. The status of an outgoing SMS moves only
along ``queued -> sending -> sent | failed | unknown`` (and ``sending -> queued`` for
a retry); an incoming one is ``received``. Every transition is one conditional
``UPDATE ... RETURNING`` inside a transaction, so its caller learns the row as it now is
and whether the transition happened at all.

Rules the queries keep, on both engines (SQLite: every write transaction is ``BEGIN
IMMEDIATE``, so transactions run one at a time; PostgreSQL: row locks):

1. **One owner.** An outgoing SMS is worked on only by the owner (a server run's id)
   that claimed it: ``claimed_by`` with a lease (``lease_until``). A claim takes the
   lane row and the message row ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
   instances never claim the same SMS and never block each other; every later
   transition says ``WHERE claimed_by = :owner``, so an owner that lost its lease
   (another instance took over) changes nothing.
2. **Pacing in the database.** ``sms_lanes`` holds, per lane (a PBX's GSM span or
   device), when its last send ended and until when a send is in progress. A claim
   succeeds only when the lane is idle and ``interval`` seconds have passed since the
   last send ended, whichever instance made it.
3. **No resend after a crash.** A claimed SMS whose owner vanished before sending is
   claimed again after the lease; one that was ``sending`` becomes ``unknown``
   (``sent`` if the PBX had already accepted it): ``recover``.
4. **Idempotency by a unique key.** ``sms_keys`` has the primary key ``(login,
   login2, client_key)``; a key younger than ``key_since`` is never replaced, so two
   concurrent requests with one key insert one SMS between them.
5. **Bounded outbox.** ``enqueue`` counts the open (``queued``/``sending``) SMS and
   refuses past the limits, without writing anything. On PostgreSQL enqueues take a
   transaction-scoped advisory lock, so the count holds across instances too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from vwell_pbx.storage.database import Database, Params, Row, Transaction

__all__ = [
    "SMS_COLUMNS",
    "EnqueueOutcome",
    "Enqueued",
    "SmsHistoryQuery",
    "SmsRow",
    "SmsStore",
    "SmsVisibility",
]

SMS_COLUMNS: Final = (
    "id, sms_id, direction, pbx, status, number, text, span, backend, login, login2, "
    "client_key, attempts, error, detail, pbx_sms_id, created_at, updated_at, "
    "next_attempt_at, expires_at, accepted_at, done_at, claimed_by, lease_until, "
    "pbx_time, raw, undecodable, partial, parts"
)

# Advisory lock keys (any constants) for the two kinds of serialised inserts.
_OUTBOX_LOCK: Final = 0x76_77_73_6D_73_6F  # "vwsmso"
_INBOX_LOCK_BASE: Final = 0x76_77_73_6D_73_69 << 16  # "vwsmsi" plus a hash of the key

EnqueueOutcome = Literal["created", "existing", "user_full", "total_full", "user_rate"]


@dataclass(frozen=True, slots=True)
class SmsRow:
    """One row of ``sms_messages`` (see the module docstring for the statuses)."""

    row_id: int
    sms_id: str
    direction: Literal["out", "in"]
    pbx: str
    status: str
    number: str
    """The recipient (outgoing) or the sender (incoming)."""
    text: str
    span: str | None
    backend: str | None
    login: str | None
    login2: str | None
    client_key: str | None
    attempts: int
    error: str | None
    detail: str | None
    pbx_sms_id: str | None
    created_at: float
    updated_at: float
    next_attempt_at: float | None
    expires_at: float | None
    accepted_at: float | None
    done_at: float | None
    claimed_by: str | None
    lease_until: float | None
    pbx_time: str | None
    raw: str | None
    """Base64 of the bytes as received, kept when they could not be decoded."""
    undecodable: bool
    partial: bool
    parts: int

    @property
    def tel(self) -> str:
        """The recipient of an outgoing SMS."""
        return self.number


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _row(row: Row) -> SmsRow:
    return SmsRow(
        row_id=int(row[0]),
        sms_id=str(row[1]),
        direction="in" if row[2] == "in" else "out",
        pbx=str(row[3]),
        status=str(row[4]),
        number=str(row[5]),
        text=str(row[6]),
        span=_opt_str(row[7]),
        backend=_opt_str(row[8]),
        login=_opt_str(row[9]),
        login2=_opt_str(row[10]),
        client_key=_opt_str(row[11]),
        attempts=int(row[12]),
        error=_opt_str(row[13]),
        detail=_opt_str(row[14]),
        pbx_sms_id=_opt_str(row[15]),
        created_at=float(row[16]),
        updated_at=float(row[17]),
        next_attempt_at=_opt_float(row[18]),
        expires_at=_opt_float(row[19]),
        accepted_at=_opt_float(row[20]),
        done_at=_opt_float(row[21]),
        claimed_by=_opt_str(row[22]),
        lease_until=_opt_float(row[23]),
        pbx_time=_opt_str(row[24]),
        raw=_opt_str(row[25]),
        undecodable=bool(row[26]),
        partial=bool(row[27]),
        parts=int(row[28]),
    )


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What ``enqueue`` did: ``created`` (``row`` is the new SMS), ``existing`` (the key
    was used within the window: ``row`` is the first SMS), or ``user_full`` /
    ``total_full`` / ``user_rate`` (nothing written, ``row`` is ``None``; for
    ``user_rate``, ``retry_at`` is when the oldest SMS of the window leaves it)."""

    row: SmsRow | None
    outcome: EnqueueOutcome
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class SmsVisibility:
    """Which SMS a reader may see: everything, or their own outgoing SMS plus the
    incoming SMS of ``spans`` (``all_spans``: of every span)."""

    everything: bool = False
    login: str = ""
    login2: str = ""
    spans: tuple[str, ...] = ()
    all_spans: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsHistoryQuery:
    """``history``'s filters; ``before`` is the ``(created_at, row_id)`` of the last row
    of the previous page."""

    visibility: SmsVisibility
    direction: Literal["in", "out"] | None = None
    number: str | None = None
    statuses: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    before: tuple[float, int] | None = None
    limit: int = 100


def _inbox_lock(dedupe_key: str) -> int:
    digest = hashlib.sha256(dedupe_key.encode()).digest()
    return _INBOX_LOCK_BASE | int.from_bytes(digest[:2], "big")


class SmsStore:
    """The SMS tables of one database (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        postgres = db.dialect.backend == "postgresql"
        self._postgres = postgres
        # SQLite has no row locks: its write transactions already run one at a time.
        self._skip_locked = " FOR UPDATE SKIP LOCKED" if postgres else ""

    async def _serialise(self, tx: Transaction, key: int) -> None:
        if self._postgres:
            await tx.execute("SELECT pg_advisory_xact_lock(:key)", {"key": key})

    @staticmethod
    async def _returning(tx: Transaction, sql: str, params: Params) -> SmsRow | None:
        row = await tx.fetch_one(f"{sql} RETURNING {SMS_COLUMNS}", params)
        return None if row is None else _row(row)

    # --- the outbox -----------------------------------------------------------------

    async def enqueue(
        self,
        *,
        sms_id: str,
        pbx: str,
        tel: str,
        text: str,
        backend: str,
        span: str | None,
        login: str,
        login2: str,
        client_key: str | None,
        now: float,
        expires_at: float,
        key_since: float,
        max_per_user: int,
        max_total: int,
        rate_since: float = 0.0,
        max_since: int | None = None,
    ) -> Enqueued:
        """Store a new outgoing SMS as ``queued`` (see ``Enqueued`` for the outcomes).

        With ``client_key``, a key of the same user stored at or after ``key_since``
        returns that key's SMS instead; an older key is taken over by this SMS. With
        ``max_since``, a user who stored that many outgoing SMS after ``rate_since``
        is refused (``user_rate``): the SMS rate per user, counted in the database so
        that every instance sharing it counts the same SMS.
        """
        async with self.db.transaction() as tx:
            await self._serialise(tx, _OUTBOX_LOCK)
            who = {"login": login, "login2": login2}
            if client_key is not None:
                existing = await self._keyed(tx, who, client_key, key_since)
                if existing is not None:
                    return Enqueued(existing, "existing")
            counts = await tx.fetch_one(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN login = :login AND login2 = :login2 "
                "THEN 1 ELSE 0 END), 0) FROM sms_messages "
                "WHERE status IN ('queued', 'sending')",
                who,
            )
            total, mine = (int(counts[0]), int(counts[1])) if counts else (0, 0)
            if mine >= max_per_user:
                return Enqueued(None, "user_full")
            if total >= max_total:
                return Enqueued(None, "total_full")
            if max_since is not None:
                leaves = await self._window_full(tx, who, rate_since, max_since)
                if leaves is not None:  # the window has room once that SMS leaves it
                    return Enqueued(None, "user_rate", leaves + (now - rate_since))
            if client_key is not None:
                taken = await tx.fetch_one(
                    "INSERT INTO sms_keys (login, login2, client_key, sms_id, created_at) "
                    "VALUES (:login, :login2, :client_key, :sms_id, :now) "
                    "ON CONFLICT (login, login2, client_key) DO UPDATE SET "
                    "sms_id = excluded.sms_id, created_at = excluded.created_at "
                    "WHERE sms_keys.created_at < :key_since RETURNING sms_id",
                    {
                        **who,
                        "client_key": client_key,
                        "sms_id": sms_id,
                        "now": float(now),
                        "key_since": float(key_since),
                    },
                )
                if taken is None:  # a live key after all: only the unique index can tell
                    existing = await self._keyed(tx, who, client_key, key_since)
                    if existing is not None:
                        return Enqueued(existing, "existing")
            row = await self._returning(
                tx,
                "INSERT INTO sms_messages (sms_id, direction, pbx, status, number, text, span, "
                "backend, login, login2, client_key, attempts, created_at, updated_at, "
                "next_attempt_at, expires_at) VALUES (:sms_id, 'out', :pbx, 'queued', :tel, "
                ":text, :span, :backend, :login, :login2, :client_key, 0, :now, :now, :now, "
                ":expires_at)",
                {
                    **who,
                    "sms_id": sms_id,
                    "pbx": pbx,
                    "tel": tel,
                    "text": text,
                    "span": span,
                    "backend": backend,
                    "client_key": client_key,
                    "now": float(now),
                    "expires_at": float(expires_at),
                },
            )
        assert row is not None  # an INSERT ... RETURNING returns its row
        return Enqueued(row, "created")

    @staticmethod
    async def _window_full(tx: Transaction, who: Params, since: float, limit: int) -> float | None:
        """If the user stored ``limit`` outgoing SMS after ``since``: the creation time of
        the ``limit``-th newest of them (``None``: fewer). Reads ``sms_by_sender``."""
        row = await tx.fetch_one(
            "SELECT created_at FROM sms_messages WHERE login = :login AND login2 = :login2 "
            "AND direction = 'out' AND created_at > :since "
            "ORDER BY created_at DESC LIMIT 1 OFFSET :skip",
            {**who, "since": float(since), "skip": limit - 1},
        )
        return None if row is None else float(row[0])

    async def _keyed(
        self, tx: Transaction, who: Params, client_key: str, key_since: float
    ) -> SmsRow | None:
        row = await tx.fetch_one(
            f"SELECT {_prefixed('m')} FROM sms_keys k JOIN sms_messages m "
            "ON m.sms_id = k.sms_id WHERE k.login = :login AND k.login2 = :login2 "
            "AND k.client_key = :client_key AND k.created_at >= :key_since",
            {**who, "client_key": client_key, "key_since": float(key_since)},
        )
        return None if row is None else _row(row)

    async def ensure_lane(self, lane: str) -> None:
        """Create the pacing row of ``lane`` if it does not exist yet."""
        await self.db.execute(
            "INSERT INTO sms_lanes (lane) VALUES (:lane) ON CONFLICT (lane) DO NOTHING",
            {"lane": lane},
        )

    async def claim(
        self, *, pbx: str, lane: str, owner: str, now: float, interval: float, lease: float
    ) -> SmsRow | float | None:
        """Claim the next due SMS of ``pbx`` for ``owner`` if ``lane`` may send now.

        Returns the claimed row (still ``queued``; ``lease`` seconds to start sending
        it), or the seconds to wait before asking again (the lane is busy or paced,
        the next SMS is due later, or the rows are locked by another instance), or
        ``None`` when nothing is queued. Call ``ensure_lane`` once first.
        """
        until = float(now + lease)
        async with self.db.transaction() as tx:
            lane_row = await tx.fetch_one(
                f"SELECT last_send, busy_until FROM sms_lanes WHERE lane = :lane"
                f"{self._skip_locked}",
                {"lane": lane},
            )
            if lane_row is None:  # being claimed by another instance right now
                return _LOCKED_RETRY
            last_send, busy_until = _opt_float(lane_row[0]), _opt_float(lane_row[1])
            if busy_until is not None and busy_until > now:
                return busy_until - now
            if last_send is not None and last_send + interval > now:
                return last_send + interval - now
            due = {"pbx": pbx, "now": float(now)}
            picked = await tx.fetch_one(
                f"SELECT id FROM sms_messages WHERE status = 'queued' AND pbx = :pbx "
                "AND next_attempt_at <= :now AND expires_at > :now "
                "AND (lease_until IS NULL OR lease_until < :now) "
                f"ORDER BY next_attempt_at, id LIMIT 1{self._skip_locked}",
                due,
            )
            if picked is None:
                return await self._next_due(tx, due)
            row = await self._returning(
                tx,
                "UPDATE sms_messages SET claimed_by = :owner, lease_until = :until WHERE id = :id",
                {"owner": owner, "until": until, "id": int(picked[0])},
            )
            await tx.execute(
                "UPDATE sms_lanes SET busy_until = :until, busy_by = :owner WHERE lane = :lane",
                {"until": until, "owner": owner, "lane": lane},
            )
        return row

    @staticmethod
    async def _next_due(tx: Transaction, due: Params) -> float | None:
        first = await tx.fetch_value(
            "SELECT MIN(next_attempt_at) FROM sms_messages WHERE status = 'queued' "
            "AND pbx = :pbx AND expires_at > :now "
            "AND (lease_until IS NULL OR lease_until < :now)",
            due,
        )
        if first is None:
            return None
        wait = float(first) - float(due["now"])  # type: ignore[arg-type]
        # Due now but not picked: locked by another instance's claim in progress.
        return wait if wait > 0 else _LOCKED_RETRY

    async def start_sending(
        self, sms_id: str, *, owner: str, now: float, lease: float
    ) -> SmsRow | None:
        """``queued -> sending`` for an SMS ``owner`` claimed (one more attempt);
        ``None`` if the claim was lost meanwhile (do not send)."""
        async with self.db.transaction() as tx:
            return await self._returning(
                tx,
                "UPDATE sms_messages SET status = 'sending', attempts = attempts + 1, "
                "lease_until = :until, updated_at = :now, error = NULL "
                "WHERE sms_id = :sms_id AND claimed_by = :owner AND status = 'queued'",
                {"sms_id": sms_id, "owner": owner, "now": float(now), "until": now + lease},
            )

    async def record_acceptance(
        self,
        sms_id: str,
        *,
        owner: str,
        now: float,
        span: str | None,
        pbx_sms_id: str | None,
        detail: str | None,
    ) -> SmsRow | None:
        """Note that the PBX took a ``sending`` SMS whose delivery report is awaited
        (so that a crash meanwhile ends in ``sent``, not ``unknown``)."""
        async with self.db.transaction() as tx:
            return await self._returning(
                tx,
                "UPDATE sms_messages SET accepted_at = :now, updated_at = :now, "
                "span = COALESCE(:span, span), pbx_sms_id = :pbx_sms_id, detail = :detail "
                "WHERE sms_id = :sms_id AND claimed_by = :owner AND status = 'sending'",
                {
                    "sms_id": sms_id,
                    "owner": owner,
                    "now": float(now),
                    "span": span,
                    "pbx_sms_id": pbx_sms_id,
                    "detail": detail,
                },
            )

    async def finish(
        self,
        sms_id: str,
        *,
        owner: str,
        now: float,
        status: Literal["sent", "failed", "unknown"],
        error: str | None,
        detail: str | None,
        span: str | None = None,
        pbx_sms_id: str | None = None,
    ) -> SmsRow | None:
        """``sending -> sent | failed | unknown``; ``None`` if ``owner`` lost the SMS."""
        async with self.db.transaction() as tx:
            return await self._returning(
                tx,
                "UPDATE sms_messages SET status = :status, error = :error, "
                "detail = COALESCE(:detail, detail), span = COALESCE(:span, span), "
                "pbx_sms_id = COALESCE(:pbx_sms_id, pbx_sms_id), done_at = :now, "
                "updated_at = :now, claimed_by = NULL, lease_until = NULL, "
                "next_attempt_at = NULL "
                "WHERE sms_id = :sms_id AND claimed_by = :owner AND status = 'sending'",
                {
                    "sms_id": sms_id,
                    "owner": owner,
                    "now": float(now),
                    "status": status,
                    "error": error,
                    "detail": detail,
                    "span": span,
                    "pbx_sms_id": pbx_sms_id,
                },
            )

    async def retry_later(
        self, sms_id: str, *, owner: str, now: float, at: float, error: str
    ) -> SmsRow | None:
        """``sending -> queued``, due again at ``at``; ``None`` if ``owner`` lost it."""
        async with self.db.transaction() as tx:
            return await self._returning(
                tx,
                "UPDATE sms_messages SET status = 'queued', error = :error, "
                "next_attempt_at = :at, updated_at = :now, claimed_by = NULL, "
                "lease_until = NULL "
                "WHERE sms_id = :sms_id AND claimed_by = :owner AND status = 'sending'",
                {
                    "sms_id": sms_id,
                    "owner": owner,
                    "now": float(now),
                    "at": float(at),
                    "error": error,
                },
            )

    async def unclaim(self, sms_id: str, *, owner: str) -> None:
        """Give back a claimed, not yet sending SMS (another may claim it at once)."""
        await self.db.execute(
            "UPDATE sms_messages SET claimed_by = NULL, lease_until = NULL "
            "WHERE sms_id = :sms_id AND claimed_by = :owner AND status = 'queued'",
            {"sms_id": sms_id, "owner": owner},
        )

    async def lane_done(self, lane: str, *, owner: str, sent_at: float | None) -> None:
        """End ``owner``'s send on ``lane``; ``sent_at`` starts the pacing interval
        (``None``: nothing was sent, the lane may send again at once)."""
        await self.db.execute(
            "UPDATE sms_lanes SET busy_until = NULL, busy_by = NULL, "
            "last_send = COALESCE(:sent_at, last_send) WHERE lane = :lane AND busy_by = :owner",
            {"lane": lane, "owner": owner, "sent_at": _opt_float(sent_at)},
        )

    async def renew(
        self, owner: str, *, sms_ids: Sequence[str], lanes: Sequence[str], until: float
    ) -> None:
        """Extend ``owner``'s leases on these SMS and lanes (what it is working on)."""
        if not sms_ids and not lanes:
            return
        async with self.db.transaction() as tx:
            for sms_id in sms_ids:
                await tx.execute(
                    "UPDATE sms_messages SET lease_until = :until WHERE sms_id = :sms_id "
                    "AND claimed_by = :owner AND status IN ('queued', 'sending')",
                    {"owner": owner, "until": float(until), "sms_id": sms_id},
                )
            for lane in lanes:
                await tx.execute(
                    "UPDATE sms_lanes SET busy_until = :until WHERE lane = :lane "
                    "AND busy_by = :owner AND busy_until IS NOT NULL",
                    {"owner": owner, "until": float(until), "lane": lane},
                )

    async def release(self, owner: str, *, now: float, error: str) -> list[SmsRow]:
        """A clean stop of ``owner``: its claimed SMS go back to the queue, its lanes
        are freed, and its ``sending`` SMS end as ``recover`` would end them."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE sms_messages SET claimed_by = NULL, lease_until = NULL "
                "WHERE claimed_by = :owner AND status = 'queued'",
                {"owner": owner},
            )
            await tx.execute(
                "UPDATE sms_lanes SET busy_until = NULL, busy_by = NULL WHERE busy_by = :owner",
                {"owner": owner},
            )
            return await self._abandon(
                tx, "claimed_by = :owner", {"owner": owner, "now": float(now), "error": error}
            )

    async def recover(self, *, now: float, expired_error: str, lost_error: str) -> list[SmsRow]:
        """End what nobody will finish: ``queued`` SMS past their expiry become
        ``failed``; ``sending`` SMS whose owner's lease ran out become ``unknown``
        (``sent`` if the PBX had accepted them). Returns the rows changed."""
        params = {"now": float(now), "error": expired_error}
        async with self.db.transaction() as tx:
            rows = await tx.fetch_all(
                "UPDATE sms_messages SET status = 'failed', error = :error, done_at = :now, "
                "updated_at = :now, claimed_by = NULL, lease_until = NULL, "
                "next_attempt_at = NULL WHERE status = 'queued' AND expires_at <= :now "
                f"AND (lease_until IS NULL OR lease_until < :now) RETURNING {SMS_COLUMNS}",
                params,
            )
            expired = [_row(row) for row in rows]
            lost = await self._abandon(
                tx, "lease_until < :now", {"now": float(now), "error": lost_error}
            )
        return expired + lost

    @staticmethod
    async def _abandon(tx: Transaction, where: str, params: Params) -> list[SmsRow]:
        # ``where`` is one of two constants of this module, never caller text.
        rows = await tx.fetch_all(
            "UPDATE sms_messages SET "
            "status = CASE WHEN accepted_at IS NULL THEN 'unknown' ELSE 'sent' END, "
            "error = CASE WHEN accepted_at IS NULL THEN :error ELSE NULL END, "
            "detail = CASE WHEN accepted_at IS NULL THEN detail ELSE "
            "'accepted by the PBX; its delivery report was no longer awaited' END, "
            "done_at = :now, updated_at = :now, claimed_by = NULL, lease_until = NULL, "
            f"next_attempt_at = NULL WHERE status = 'sending' AND {where} "
            f"RETURNING {SMS_COLUMNS}",
            params,
        )
        return [_row(row) for row in rows]

    # --- the inbox ------------------------------------------------------------------

    async def add_incoming(
        self,
        *,
        sms_id: str,
        pbx: str,
        span: str | None,
        from_number: str,
        text: str,
        pbx_time: str | None,
        raw: str | None,
        undecodable: bool,
        partial: bool,
        parts: int,
        detail: str | None,
        dedupe_key: str,
        owner: str,
        now: float,
        dedupe_since: float,
    ) -> tuple[SmsRow, bool]:
        """Store an incoming SMS; ``(row, True)`` when stored now.

        Several instances connected to one PBX each receive the same event: if another
        owner stored an SMS with the same ``dedupe_key`` at or after ``dedupe_since``,
        that row is returned with ``False`` and nothing is written. (The same owner
        never sees one event twice, so its own rows never count as duplicates.)
        """
        async with self.db.transaction() as tx:
            await self._serialise(tx, _inbox_lock(dedupe_key))
            found = await tx.fetch_one(
                f"SELECT {SMS_COLUMNS} FROM sms_messages WHERE dedupe_key = :dedupe_key "
                "AND created_at >= :since AND stored_by <> :owner "
                "ORDER BY created_at DESC, id DESC LIMIT 1",
                {"dedupe_key": dedupe_key, "since": float(dedupe_since), "owner": owner},
            )
            if found is not None:
                return _row(found), False
            row = await self._returning(
                tx,
                "INSERT INTO sms_messages (sms_id, direction, pbx, status, number, text, span, "
                "attempts, detail, created_at, updated_at, done_at, pbx_time, raw, undecodable, "
                "partial, parts, dedupe_key, stored_by) VALUES (:sms_id, 'in', :pbx, "
                "'received', :number, :text, :span, 0, :detail, :now, :now, :now, :pbx_time, "
                ":raw, :undecodable, :partial, :parts, :dedupe_key, :owner)",
                {
                    "sms_id": sms_id,
                    "pbx": pbx,
                    "number": from_number,
                    "text": text,
                    "span": span,
                    "now": float(now),
                    "pbx_time": pbx_time,
                    "raw": raw,
                    "undecodable": int(undecodable),
                    "partial": int(partial),
                    "parts": int(parts),
                    "detail": detail,
                    "dedupe_key": dedupe_key,
                    "owner": owner,
                },
            )
        assert row is not None
        return row, True

    # --- reading --------------------------------------------------------------------

    async def get(self, sms_id: str) -> SmsRow | None:
        """One SMS by its id, or ``None``."""
        row = await self.db.fetch_one(
            f"SELECT {SMS_COLUMNS} FROM sms_messages WHERE sms_id = :sms_id",
            {"sms_id": sms_id},
        )
        return None if row is None else _row(row)

    async def history(self, query: SmsHistoryQuery) -> list[SmsRow]:
        """The SMS matching ``query`` that its reader may see, newest first."""
        where, params = _history_filter(query)
        rows = await self.db.fetch_all(
            f"SELECT {SMS_COLUMNS} FROM sms_messages WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT :limit",
            {**params, "limit": int(query.limit)},
        )
        return [_row(row) for row in rows]


_LOCKED_RETRY: Final = 0.05
"""Seconds to wait when the rows a claim needs are locked by another instance's claim."""


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in SMS_COLUMNS.split(","))


def _history_filter(query: SmsHistoryQuery) -> tuple[list[str], dict[str, object]]:
    """The WHERE terms and parameters of ``query``: fixed texts, every value a parameter."""
    where = ["1 = 1"]
    params: dict[str, object] = {}
    seen = query.visibility
    if not seen.everything:
        params.update(login=seen.login, login2=seen.login2)
        own = "(direction = 'out' AND login = :login AND login2 = :login2)"
        if seen.all_spans:
            where.append(f"({own} OR direction = 'in')")
        elif seen.spans:
            names = _numbered("span", seen.spans, params)
            where.append(f"({own} OR (direction = 'in' AND span IN ({names})))")
        else:
            where.append(own)
    if query.direction is not None:
        where.append("direction = :direction")
        params["direction"] = query.direction
    if query.number is not None:
        where.append("number = :number")
        params["number"] = query.number
    if query.statuses:
        where.append(f"status IN ({_numbered('status', query.statuses, params)})")
    if query.since is not None:
        where.append("created_at >= :since")
        params["since"] = float(query.since)
    if query.until is not None:
        where.append("created_at < :until")
        params["until"] = float(query.until)
    if query.before is not None:
        where.append("(created_at < :before_at OR (created_at = :before_at AND id < :before_id))")
        params["before_at"] = float(query.before[0])
        params["before_id"] = int(query.before[1])
    return where, params


def _numbered(prefix: str, values: Sequence[str], params: dict[str, object]) -> str:
    """``:prefix0, :prefix1, ...`` for ``values``, which go into ``params``."""
    names = []
    for index, value in enumerate(values):
        params[f"{prefix}{index}"] = value
        names.append(f":{prefix}{index}")
    return ", ".join(names)
