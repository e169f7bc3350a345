"""The durable SMS outbox: ``gsmSendSMS`` stores the SMS, a sender per PBX sends it.

::

             enqueue                claim (lane idle, paced)   start_sending
    client ──────────► queued ─────────────────────────────► queued, claimed ───► sending
                         ▲   lease ran out, owner gone: claim again  │              │
                         │                                           ▼              │
                         └──── RETRY (backoff; attempts left) ────── submit ◄───────┘
                                                                    │
                 ACCEPTED / SENT ─► sent    FAILED, no attempts left, expired ─► failed
                 IN_DOUBT, or the owner died while sending ─► unknown (never resent)

Guarantees (the store keeps them with conditional updates, see ``storage.sms``):

1. **At most once.** An SMS is handed to the PBX only by the owner that claimed it
   and moved it to ``sending`` first (one committed write before the AMI action). A
   send whose outcome is lost (the answer never came, the server died meanwhile) ends
   as ``unknown`` and is never resent by itself: a duplicate SMS is worse than a
   question. Only ``RETRY`` verdicts (the SMS provably did not reach the PBX: link
   down, span busy or not ready) go back to the queue.
2. **Durable.** Every state is in the database before anything depends on it: a
   restarted server (or another instance) carries on from there.
3. **Paced per lane across instances.** A lane (``PBX/span N``, ``PBX/device X``) sends
   one SMS at a time, ``interval`` seconds after the previous one ended, whoever sent
   it; the lane's state is in the database (``sms_lanes``).
4. **Owned with a lease.** Each server run has an owner id; what it claims carries a
   lease of ``lease_seconds``, renewed every third of it while the run lives. A run
   that dies (SIGKILL, power) loses its claims when the lease runs out: claimed SMS are
   claimed again by anyone, ``sending`` ones become ``unknown`` (``sent`` when the PBX
   had already accepted them and only a delivery report was awaited).
5. **One doubt at a time.** After a send whose answer was lost, a sender sends nothing
   more until the PBX answers a ``Ping``: a PBX that hangs with its connection open
   turns at most one SMS per lane ``unknown``.
6. **Bounded.** At most ``max_total`` open (``queued``/``sending``) SMS in all and
   ``max_per_user`` per user; past that ``enqueue`` raises ``SmsQueueFull`` at once.
   A user who stored ``per_user_per_minute`` SMS within the last 60 s gets
   ``SmsRateLimited``; the store counts them, so instances sharing it share the limit.
   Each PBX has one sender task; reports awaited in the background are at most the
   SMS accepted within one ``report_seconds``.

The scheduler does not know SQL: it drives an ``OutboxStore`` (``storage.sms.SmsStore``
is one) and tells its owner about every status change through ``on_change`` (the
server publishes ``sms.status`` events from it). Time comes from ``clock`` (wall-clock
seconds: the database keeps absolute times) and ids from ``new_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Generic, Literal, Protocol, TypeVar

from vwell_pbx.ami.errors import LoginFailed, PbxUnavailable
from vwell_pbx.errors import VwellError
from vwell_pbx.futures import cancel_and_wait
from vwell_pbx.pbx.errors import SmsQueueFull, SmsRateLimited
from vwell_pbx.pbx.sms.submission import Attempt, SmsSubmitter, Verdict

if TYPE_CHECKING:  # the client is only a parameter type here
    from vwell_pbx.ami.client import AmiClient

__all__ = [
    "FINAL_STATUSES",
    "EnqueueResult",
    "OutboxRecord",
    "OutboxSettings",
    "OutboxStore",
    "SmsOutbox",
]

log = logging.getLogger(__name__)

_RATE_WINDOW: Final = 60.0  # seconds: per_user_per_minute counts SMS stored in any window

FINAL_STATUSES: Final = frozenset({"sent", "failed", "unknown"})
"""Statuses an outgoing SMS never leaves."""

Ending = Literal["sent", "failed", "unknown"]

_ENDINGS: Final[dict[Verdict, Ending]] = {
    Verdict.ACCEPTED: "sent",
    Verdict.SENT: "sent",
    Verdict.FAILED: "failed",
    Verdict.IN_DOUBT: "unknown",
}

LOST_ERROR: Final = (
    "the server that was sending this SMS stopped before the PBX answered; it may or may "
    "not have been sent and is not sent again by itself (check with the recipient, then "
    "send it anew if needed)"
)
STOPPED_ERROR: Final = (
    "the server stopped while this SMS was being handed to the PBX; it may or may not have "
    "been sent and is not sent again by itself (check with the recipient, then send it "
    "anew if needed)"
)


class OutboxRecord(Protocol):
    """What the scheduler reads of a stored outgoing SMS."""

    @property
    def sms_id(self) -> str:
        """The SMS's id."""
        ...

    @property
    def tel(self) -> str:
        """The normalised recipient."""
        ...

    @property
    def text(self) -> str:
        """The text as the client sent it."""
        ...

    @property
    def status(self) -> str:
        """``queued``, ``sending``, ``sent``, ``failed`` or ``unknown``."""
        ...

    @property
    def attempts(self) -> int:
        """Submissions started so far."""
        ...

    @property
    def expires_at(self) -> float | None:
        """When a still queued SMS is given up (epoch seconds)."""
        ...


R = TypeVar("R", bound=OutboxRecord)
R_co = TypeVar("R_co", bound=OutboxRecord, covariant=True)


class EnqueueResult(Protocol[R_co]):
    """What the store did with a new SMS (``storage.sms.Enqueued``)."""

    @property
    def row(self) -> R_co | None:
        """The new SMS, or the first SMS of a repeated key; ``None`` when refused."""
        ...

    @property
    def outcome(self) -> str:
        """``created``, ``existing``, ``user_full``, ``total_full`` or ``user_rate``."""
        ...

    @property
    def retry_at(self) -> float | None:
        """For ``user_rate``: when the user may store one more."""
        ...


class OutboxStore(Protocol[R_co]):
    """The persistence the scheduler needs; ``storage.sms.SmsStore`` documents each."""

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
        rate_since: float,
        max_since: int | None,
    ) -> EnqueueResult[R_co]:
        """Store a new ``queued`` SMS (or find a repeated key, or refuse: full)."""
        ...

    async def ensure_lane(self, lane: str) -> None:
        """Create a lane's pacing row."""
        ...

    async def claim(
        self, *, pbx: str, lane: str, owner: str, now: float, interval: float, lease: float
    ) -> R_co | float | None:
        """The next due SMS, or seconds to wait, or ``None`` (nothing queued)."""
        ...

    async def start_sending(
        self, sms_id: str, *, owner: str, now: float, lease: float
    ) -> R_co | None:
        """``queued -> sending``; ``None`` if the claim was lost."""
        ...

    async def record_acceptance(
        self,
        sms_id: str,
        *,
        owner: str,
        now: float,
        span: str | None,
        pbx_sms_id: str | None,
        detail: str | None,
    ) -> R_co | None:
        """Note that the PBX took the SMS (a report is awaited)."""
        ...

    async def finish(
        self,
        sms_id: str,
        *,
        owner: str,
        now: float,
        status: Ending,
        error: str | None,
        detail: str | None,
        span: str | None = None,
        pbx_sms_id: str | None = None,
    ) -> R_co | None:
        """``sending -> sent | failed | unknown``."""
        ...

    async def retry_later(
        self, sms_id: str, *, owner: str, now: float, at: float, error: str
    ) -> R_co | None:
        """``sending -> queued``, due at ``at``."""
        ...

    async def unclaim(self, sms_id: str, *, owner: str) -> None:
        """Give back a claimed SMS that was not sent."""
        ...

    async def lane_done(self, lane: str, *, owner: str, sent_at: float | None) -> None:
        """End a send on a lane (``sent_at`` starts its interval)."""
        ...

    async def renew(
        self, owner: str, *, sms_ids: Sequence[str], lanes: Sequence[str], until: float
    ) -> None:
        """Extend ``owner``'s leases on these SMS and lanes."""
        ...

    async def release(self, owner: str, *, now: float, error: str) -> Sequence[R_co]:
        """A clean stop: claims back to the queue, ``sending`` ones ended."""
        ...

    async def recover(self, *, now: float, expired_error: str, lost_error: str) -> Sequence[R_co]:
        """End expired SMS and those whose owner's lease ran out."""
        ...

    async def get(self, sms_id: str) -> R_co | None:
        """One SMS."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxSettings:
    """The outbox's bounds and timings (``[sms]`` in the configuration)."""

    interval: float = 10.0
    """Seconds between the end of one send on a lane and the start of the next."""
    max_attempts: int = 3
    """Submissions of one SMS at most (RETRY verdicts count)."""
    expire_seconds: float = 3600.0
    """A queued SMS not sent within this time after it was stored fails."""
    retry_seconds: float = 15.0
    """Backoff after the first RETRY; doubled after each further one."""
    retry_max_seconds: float = 600.0
    """The backoff never exceeds this."""
    lease_seconds: float = 60.0
    """How long a claim outlives its owner (renewed every third of it)."""
    poll_seconds: float = 2.0
    """How often a sender looks for SMS queued by other instances or due retries."""
    answer_seconds: float = 15.0
    """Longest wait for each AMI answer of a send."""
    report_seconds: float = 60.0
    """Longest wait for a delivery report (``yeastar-tg``, ``dongle``)."""
    max_per_user: int = 200
    max_total: int = 10_000
    per_user_per_minute: int | None = None
    """SMS a user may store in any 60 s (``None``: no limit), counted in the store."""
    key_seconds: float = 24 * 3600.0
    """How long a client's ``key`` returns its first SMS."""
    stop_seconds: float = 5.0
    """On shutdown, how long a send in progress may take to finish."""

    def __post_init__(self) -> None:
        if self.lease_seconds <= self.answer_seconds:
            raise ValueError("sms.lease_seconds must be longer than one AMI answer may take")
        if self.max_attempts < 1 or self.max_per_user < 1 or self.max_total < 1:
            raise ValueError("sms.max_attempts and the outbox bounds must be at least 1")

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` submissions."""
        backoff = self.retry_seconds * 2.0 ** max(0, attempts - 1)
        return min(backoff, self.retry_max_seconds)


@dataclass(eq=False)
class _Sender:
    """One PBX's sender: its backend, its AMI link and its wake-up call."""

    pbx: str
    submitter: SmsSubmitter
    client: AmiClient
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    lane_ready: bool = False
    #: The last send's answer was lost: the link must prove alive before the next one.
    doubtful: bool = False

    @property
    def lane(self) -> str:
        return f"{self.pbx}/{self.submitter.lane}"


class SmsOutbox(Generic[R]):
    """The durable outbox of one server run (see the module docstring)."""

    def __init__(
        self,
        store: OutboxStore[R],
        settings: OutboxSettings | None = None,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        on_change: Callable[[R], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or OutboxSettings()
        #: This run's owner id: what it claims is marked with it.
        self.owner = owner or f"run-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._new_id = new_id
        self._on_change = on_change
        self._senders: dict[str, _Sender] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._reports: set[asyncio.Task[None]] = set()
        # What this run is working on: only these leases are renewed, so an SMS whose
        # outcome could not be recorded is not held for ever (its lease runs out and
        # ``recover`` ends it).
        self._held: set[str] = set()
        self._busy_lanes: set[str] = set()
        self._keeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- set-up -----------------------------------------------------------------------

    def add_pbx(self, pbx: str, submitter: SmsSubmitter, client: AmiClient) -> None:
        """Send the SMS queued for ``pbx`` through ``submitter`` (call before ``start``)."""
        if pbx in self._senders:
            raise ValueError(f"PBX {pbx!r} added twice")
        self._senders[pbx] = _Sender(pbx, submitter, client)

    async def start(self) -> None:
        """Start a sender per PBX and the keeper (leases, expiry, dead owners)."""
        for sender in self._senders.values():
            sender.task = asyncio.create_task(self._send_loop(sender), name=f"sms {sender.lane}")
        self._keeper = asyncio.create_task(self._keep(), name="sms outbox keeper")

    async def aclose(self) -> None:
        """Stop sending; a send in progress gets ``stop_seconds`` to finish, then what
        is still in flight ends as ``unknown`` and claims go back to the queue."""
        self._stopping.set()
        for sender in self._senders.values():
            sender.wake.set()
        tasks = [s.task for s in self._senders.values() if s.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.stop_seconds)
            await cancel_and_wait(pending)
        await cancel_and_wait([*self._reports, *([self._keeper] if self._keeper else [])])
        try:
            changed = await self.store.release(self.owner, now=self._clock(), error=STOPPED_ERROR)
        except VwellError as exc:
            log.warning(
                "SMS outbox: could not release this run's SMS (%s); they are taken "
                "over when their lease ends",
                exc,
            )
            return
        for row in changed:
            self._changed(row)

    # --- for the API ------------------------------------------------------------------

    async def enqueue(
        self,
        pbx: str,
        tel: str,
        text: str,
        *,
        login: str,
        login2: str,
        key: str | None = None,
    ) -> tuple[R, bool]:
        """Store one SMS for ``pbx``; ``(record, True)`` when new, ``(first, False)``
        when ``key`` was used by the same user within ``key_seconds``.

        Raises ``InvalidArgument`` for what the backend cannot send and
        ``SmsQueueFull`` past the outbox's bounds; storage errors pass through.
        """
        sender = self._senders[pbx]
        sender.submitter.check(tel, text)
        settings = self.settings
        now = self._clock()
        result = await self.store.enqueue(
            sms_id=self._new_id(),
            pbx=pbx,
            tel=tel,
            text=text,
            backend=sender.submitter.name,
            span=sender.submitter.fixed_span,
            login=login,
            login2=login2,
            client_key=key,
            now=now,
            expires_at=now + settings.expire_seconds,
            key_since=now - settings.key_seconds,
            max_per_user=settings.max_per_user,
            max_total=settings.max_total,
            rate_since=now - _RATE_WINDOW,
            max_since=settings.per_user_per_minute,
        )
        if result.outcome == "user_rate":
            wait = max(0.0, (result.retry_at or now) - now)
            raise SmsRateLimited(
                f"SMS rate limit reached ({settings.per_user_per_minute} a minute, "
                f"limits.sms_per_minute_user); retry in {math.ceil(wait)} s",
                wait,
            )
        if result.outcome == "user_full":
            raise SmsQueueFull(
                f"you already have {settings.max_per_user} SMS waiting to be sent "
                "(sms.outbox_max_per_user); try again when some are sent"
            )
        if result.outcome == "total_full":
            raise SmsQueueFull(
                f"the SMS outbox holds {settings.max_total} SMS waiting to be sent "
                "(sms.outbox_max); try again later"
            )
        row = result.row
        assert row is not None  # created or existing
        created = result.outcome == "created"
        if created:
            self._changed(row)
            sender.wake.set()
        return row, created

    async def wait_final(self, sms_id: str, timeout: float) -> R | None:  # noqa: ASYNC109
        """The SMS once it is ``sent``, ``failed`` or ``unknown``, or as it is after
        ``timeout`` seconds. Changes made here are seen at once, those of other
        instances within ``poll_seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            row = await self.store.get(sms_id)
            remaining = deadline - loop.time()
            if row is None or row.status in FINAL_STATUSES or remaining <= 0:
                return row
            waiter: asyncio.Future[None] = loop.create_future()
            waiting = self._waiters.setdefault(sms_id, set())
            waiting.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=min(remaining, self.settings.poll_seconds))
            finally:
                waiting.discard(waiter)
                if not waiting:
                    self._waiters.pop(sms_id, None)

    def wake(self) -> None:
        """Make every sender look at the queue now (tests that move the clock)."""
        for sender in self._senders.values():
            sender.wake.set()

    # --- changes ----------------------------------------------------------------------

    def _changed(self, row: R) -> None:
        for waiter in self._waiters.get(row.sms_id, ()):
            if not waiter.done():
                waiter.set_result(None)
        if self._on_change is not None:
            try:
                self._on_change(row)
            except Exception:
                log.exception("SMS outbox: the change listener failed for %s", row.sms_id)

    def _changed_opt(self, row: R | None) -> None:
        if row is not None:
            self._changed(row)

    # --- the senders ------------------------------------------------------------------

    async def _send_loop(self, sender: _Sender) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                wait = await self._turn(sender)
                failures = 0
            except Exception as exc:  # the database or the link failed (or a bug): back off
                failures += 1
                wait = min(0.5 * 2**failures, self.settings.poll_seconds * 5)
                if isinstance(exc, VwellError):
                    log.warning("SMS sender %s: %s; again in %.1f s", sender.lane, exc, wait)
                else:
                    log.exception("SMS sender %s failed; again in %.1f s", sender.lane, wait)
            if wait > 0:
                await self._pause(sender, wait)
            else:
                await asyncio.sleep(0)  # a busy queue still lets the loop breathe

    async def _pause(self, sender: _Sender, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sender.wake.wait(), seconds)
        sender.wake.clear()

    async def _turn(self, sender: _Sender) -> float:
        """One look at the queue: send one SMS if the lane may; the seconds to wait."""
        settings = self.settings
        if not sender.client.connected:
            # Nothing is attempted while the PBX is away: SMS wait (and may expire)
            # instead of using up their attempts.
            try:
                await sender.client.wait_connected(settings.poll_seconds)
            except (PbxUnavailable, LoginFailed):
                # Also raised at once by a closed client: wait, never spin.
                return settings.poll_seconds
            return 0
        if sender.doubtful and not await self._link_answers(sender):
            return settings.poll_seconds
        if not sender.lane_ready:
            await self.store.ensure_lane(sender.lane)
            sender.lane_ready = True
        got = await self.store.claim(
            pbx=sender.pbx,
            lane=sender.lane,
            owner=self.owner,
            now=self._clock(),
            interval=settings.interval,
            lease=settings.lease_seconds,
        )
        if got is None:
            return settings.poll_seconds
        if isinstance(got, float | int):
            return min(float(got), settings.poll_seconds)
        await self._send(sender, got)
        return 0

    async def _link_answers(self, sender: _Sender) -> bool:
        """After a lost answer, a PBX that is hung but still connected would swallow
        the next SMS too (one more ``unknown``): a ``Ping`` must be answered first."""
        try:
            await sender.client.send_action(
                [("Action", "Ping")], timeout=self.settings.answer_seconds
            )
        except VwellError:
            return False
        sender.doubtful = False
        return True

    async def _send(self, sender: _Sender, claimed: R) -> None:
        self._held.add(claimed.sms_id)
        self._busy_lanes.add(sender.lane)
        reported = False
        try:
            reported = await self._send_claimed(sender, claimed)
        finally:
            self._busy_lanes.discard(sender.lane)
            if not reported:  # else the report task lets go of it
                self._held.discard(claimed.sms_id)

    async def _send_claimed(self, sender: _Sender, claimed: R) -> bool:
        """Send one claimed SMS; True when a delivery report is awaited in the background."""
        store, settings = self.store, self.settings
        if self._stopping.is_set():
            await store.unclaim(claimed.sms_id, owner=self.owner)
            await store.lane_done(sender.lane, owner=self.owner, sent_at=None)
            return False
        row = await store.start_sending(
            claimed.sms_id, owner=self.owner, now=self._clock(), lease=settings.lease_seconds
        )
        if row is None:  # our lease ran out and another instance took it
            await store.lane_done(sender.lane, owner=self.owner, sent_at=None)
            return False
        self._changed(row)
        try:
            attempt = await sender.submitter.submit(
                row.tel,
                row.text,
                await_report=True,
                timeout=settings.answer_seconds,
                report_within=settings.report_seconds,
            )
        except Exception as exc:  # a bug: the SMS's fate is unknown, never leave it sending
            log.exception("SMS sender %s: sending %s failed unexpectedly", sender.lane, row.sms_id)
            attempt = Attempt(verdict=Verdict.IN_DOUBT, error=VwellError(f"internal error: {exc}"))
        sender.doubtful = attempt.verdict is Verdict.IN_DOUBT
        await self._persist(
            lambda: store.lane_done(sender.lane, owner=self.owner, sent_at=self._clock())
        )
        return await self._conclude(sender, row, attempt)

    async def _conclude(self, sender: _Sender, row: R, attempt: Attempt) -> bool:
        """Record what one submission came to; True when a report is awaited."""
        verdict, result, report = attempt.verdict, attempt.result, attempt.report
        if verdict is Verdict.ACCEPTED and report is not None and result is not None:
            accepted = await self._persist(
                lambda: self.store.record_acceptance(
                    row.sms_id,
                    owner=self.owner,
                    now=self._clock(),
                    span=result.span,
                    pbx_sms_id=result.sms_id,
                    detail=f"accepted by the PBX; awaiting its {report.event} report",
                )
            )
            if accepted is None:
                return False
            self._await_report(sender, row, attempt)
            return True
        if verdict is Verdict.RETRY:
            await self._retry_or_fail(row, attempt)
        else:
            await self._finish(row, attempt)
        return False

    async def _finish(self, row: R, attempt: Attempt) -> None:
        result = attempt.result
        status = _ENDINGS[attempt.verdict]
        error = None if status == "sent" else _reason(attempt)
        if status == "unknown":
            error = (
                f"{error}: the PBX may or may not have taken it; it is not sent again by "
                "itself (check with the recipient, then send it anew if needed)"
            )
        finished = await self._persist(
            lambda: self.store.finish(
                row.sms_id,
                owner=self.owner,
                now=self._clock(),
                status=status,
                error=error,
                detail=result.detail if result is not None else None,
                span=result.span if result is not None else None,
                pbx_sms_id=result.sms_id if result is not None else None,
            )
        )
        self._changed_opt(finished)

    async def _retry_or_fail(self, row: R, attempt: Attempt) -> None:
        settings = self.settings
        now = self._clock()
        reason = _reason(attempt)
        at = now + settings.backoff(row.attempts)
        if row.attempts >= settings.max_attempts:
            gave_up = f"not sent after {row.attempts} attempts; the last: {reason}"
        elif row.expires_at is not None and at >= row.expires_at:
            gave_up = f"not sent before it expired; the last attempt: {reason}"
        else:
            retried = await self._persist(
                lambda: self.store.retry_later(
                    row.sms_id, owner=self.owner, now=now, at=at, error=reason
                )
            )
            self._changed_opt(retried)
            return
        failed = await self._persist(
            lambda: self.store.finish(
                row.sms_id, owner=self.owner, now=now, status="failed", error=gave_up, detail=None
            )
        )
        self._changed_opt(failed)

    def _await_report(self, sender: _Sender, row: R, attempt: Attempt) -> None:
        """Wait for the delivery report in the background: the lane is free meanwhile."""

        async def settle() -> None:
            try:
                settled = await sender.submitter.settle(attempt)
                await self._finish(row, settled)
            finally:
                self._held.discard(row.sms_id)

        task = asyncio.create_task(settle(), name=f"sms report {row.sms_id}")
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _persist(self, write: Callable[[], Awaitable[_T]]) -> _T | None:
        """Run a write, retrying storage failures for up to half a lease (past that
        another instance may take over; ``recover`` then decides). ``None`` if it
        never succeeded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.lease_seconds / 2
        delay = 0.2
        while True:
            try:
                return await write()
            except VwellError as exc:
                if loop.time() + delay > deadline:
                    log.error("SMS outbox: could not record a send's outcome: %s", exc)
                    return None
                log.warning("SMS outbox: storage failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- the keeper -------------------------------------------------------------------

    async def _keep(self) -> None:
        """Renew this run's leases; end expired SMS and those of dead owners."""
        settings = self.settings
        every = min(settings.lease_seconds / 3, settings.poll_seconds)
        renewed = 0.0
        while not self._stopping.is_set():
            now = self._clock()
            try:
                if now - renewed >= settings.lease_seconds / 3:
                    await self.store.renew(
                        self.owner,
                        sms_ids=sorted(self._held),
                        lanes=sorted(self._busy_lanes),
                        until=now + settings.lease_seconds,
                    )
                    renewed = now
                changed = await self.store.recover(
                    now=now,
                    expired_error=(
                        f"not sent within {settings.expire_seconds / 60:g} minutes "
                        "(sms.expire_minutes)"
                    ),
                    lost_error=LOST_ERROR,
                )
            except VwellError as exc:
                log.warning("SMS outbox: lease renewal or recovery failed: %s", exc)
            else:
                for row in changed:
                    self._changed(row)
            await asyncio.sleep(every)


_T = TypeVar("_T")


def _reason(attempt: Attempt) -> str:
    return attempt.reason or attempt.verdict.value
