"""Authentication: ``(login, login2, sha1)`` to a ``Principal``, with a cache and throttling.

The original protocol sends the credentials with every request, and checking them
costs one scrypt (tens of milliseconds of CPU). So successful verifications are
remembered for ``cache_seconds``:

- The cache key is ``HMAC-SHA256(per-process random key, login NUL login2 NUL sha1)``:
  the cache never holds anything that could be replayed as a credential, and a memory
  dump does not give the SHA-1 away.
- Each entry holds the user's row ``version`` and the directory's ``generation()`` seen
  when it was verified. A hit whose generation is unchanged costs no database round
  trip; when the generation moved (some user changed, in this process, in the CLI or
  in another instance) or is unknown (PostgreSQL's LISTEN connection is down), the hit
  reads the user's current version (one indexed lookup) before it is trusted. So a
  changed password or role, or a removed user, is refused or re-checked at once.
- Concurrent requests with the same credentials share one scrypt (single flight), and
  at most ``max_concurrent_hashes`` scrypts run at a time, so a burst cannot take
  every CPU.

Failures are throttled by ``LoginThrottle``, per client address and per
``(login, login2)``. With a storage (``LockoutStore``) every failure is also counted
there, and the shared count decides, so instances sharing a database count an
attacker's guesses together (N instances do not give N times the guesses). Lock-outs
are written there too: they are reloaded at start-up, and before any credentials are
checked by scrypt the stored lock-outs of the address and login are consulted, so a
restart or another instance does not reset an attacker's count.

A failure always answers ``AuthFailed`` with the same message, whatever was wrong; an
unknown user costs one scrypt like a wrong password, so neither the answer nor its
timing tells which logins exist. Credentials are never logged and never put into an
exception message.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import SecretStr

from vwell_pbx.errors import VwellError
from vwell_pbx.storage import LockoutStore, StorageError, StoredLockout
from vwell_pbx.storage.lockouts import LockoutKind, login_key
from vwell_pbx.users import normalize_login, normalize_sha1

__all__ = [
    "AUTH_FAILED_MESSAGE",
    "Account",
    "AuthFailed",
    "Authenticator",
    "CredentialDirectory",
    "LoginThrottle",
    "Principal",
    "RateLimited",
    "check_server_secret",
]

log = logging.getLogger(__name__)

K = TypeVar("K")
R = TypeVar("R")


class Account(Protocol):
    """What a directory's record must say about a user (read-only attributes)."""

    @property
    def login(self) -> str:
        """The account."""
        ...

    @property
    def login2(self) -> str:
        """The person within it."""
        ...

    @property
    def role(self) -> str:
        """The role's name."""
        ...

    @property
    def extensions(self) -> tuple[str, ...]:
        """The user's own extensions."""
        ...

    @property
    def version(self) -> int:
        """Changes whenever the user's password, role or extensions do."""
        ...


class CredentialDirectory(Protocol[R]):
    """Where users are: the local one (``users.UserDirectory``, scrypt) or another
    application's database (``directory.SqlDirectory``, its SHA-1)."""

    @property
    def slow_verify(self) -> bool:
        """Whether ``verify`` is slow (scrypt): then it runs in a thread, a few at a time."""
        ...

    def generation(self) -> int | None:
        """Moves whenever any user may have changed; ``None``: ask every time."""
        ...

    async def get(self, login: str, login2: str) -> R | None:
        """The user's record (an ``Account``), or ``None``."""
        ...

    async def current_version(self, login: str, login2: str) -> int | None:
        """The user's version now, or ``None`` if there is no such user."""
        ...

    def verify(self, record: R | None, sha1_hex: str) -> bool:
        """Whether ``sha1_hex`` is the user's; with ``record=None`` as costly as a miss."""
        ...


AUTH_FAILED_MESSAGE = "login, login2 or sha1 is wrong"
# The throttle's login key for server-secret attempts (a NUL cannot be in a real login).
_SECRET_LOGIN = "\0server-secret"


class AuthFailed(VwellError):
    """The credentials do not identify a user. The message never says which part."""

    def __init__(self) -> None:
        super().__init__(AUTH_FAILED_MESSAGE)


class RateLimited(VwellError):
    """Too many failed logins from this address or for this login; retry later."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        seconds = max(1, math.ceil(retry_after))
        super().__init__(f"too many failed logins; try again in {seconds} s")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user's identity, role name and own extensions.

    ``version`` is the user's row version when it was verified (``None`` for callers
    that are not directory users, e.g. the server-to-server secret); see
    ``Authenticator.is_current``.
    """

    login: str
    login2: str
    role: str
    extensions: tuple[str, ...] = ()
    version: int | None = field(default=None, compare=False)


def check_server_secret(given: str | None, configured: SecretStr | str | None) -> bool:
    """Constant-time comparison of a caller's shared secret with the configured one.

    False when either is missing or empty (no configured secret = the feature is off).
    """
    if isinstance(configured, SecretStr):
        configured = configured.get_secret_value()
    if not given or not configured:
        return False
    # Compare digests so that the time taken does not depend on the lengths either.
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8")).digest(),
        hashlib.sha256(configured.encode("utf-8")).digest(),
    )


@functools.lru_cache(maxsize=4096)  # asked on every request; parsing is the cost
def peer_key(peer: str) -> str:
    """The throttling key of a client address.

    IPv6 clients are grouped by /64 (one customer usually owns a whole /64 and could
    otherwise rotate addresses); IPv4-mapped IPv6 addresses count as their IPv4.
    Anything that does not parse as an address is used as it is.
    """
    try:
        addr = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return peer
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    locked_until: float
    stored: bool = False  # a row for this key is in the LockoutStore


LoginKey = tuple[str, str]


class LoginThrottle:
    """Counts failed logins per address and per login and locks them out for a while.

    After ``after`` failures of a login (``after_address`` of an address) each further
    failure locks that key for ``min(2 ** (k - after), max_delay)`` seconds, k being the
    failure count. Counts are forgotten ``forget_after`` seconds after the last failure.
    A success clears the login's count but not the address's (otherwise an attacker
    with one valid account could reset the address counter between guesses).

    Pure bookkeeping: the clock is injected and nothing here sleeps or does I/O. The
    clock is wall-clock time (``time.time``) because lock-outs are stored and must mean
    the same after a restart. ``failure`` returns the lock-outs to store, ``success``
    the stored key to delete, ``restore`` takes stored ones back. Memory is bounded: at
    most ``max_keys`` keys of each kind, the least recently failed evicted first.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        after: int = 5,
        after_address: int = 20,
        max_delay: float = 300.0,
        forget_after: float = 900.0,
        max_keys: int = 10_000,
    ) -> None:
        self._clock = clock
        self._after = after
        self._after_address = after_address
        self._max_delay = max_delay
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._by_login: OrderedDict[LoginKey, _Failures] = OrderedDict()
        self._by_peer: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        """How many keys (logins plus addresses) are tracked."""
        return len(self._by_login) + len(self._by_peer)

    def now(self) -> float:
        """The throttle's clock."""
        return self._clock()

    def _expire(self, table: OrderedDict[K, _Failures], now: float) -> None:
        # Ordered by last failure, so stale entries are at the front.
        while table:
            key, entry = next(iter(table.items()))
            if now - entry.last < self.forget_after and len(table) <= self.max_keys:
                break
            del table[key]

    def retry_after(self, peer: str, login: str, login2: str) -> float:
        """Seconds until this address and login may try again (0.0 = now)."""
        if not (self._by_login or self._by_peer):
            return 0.0  # nobody failed lately: the common case, asked on every request
        return self.retry_after_names(peer, (normalize_login(login), normalize_login(login2)))

    def retry_after_names(self, peer: str, names: LoginKey) -> float:
        """``retry_after`` for a login already in its normalized form (``normalize_login``)."""
        if not (self._by_login or self._by_peer):
            return 0.0
        now = self._clock()
        return max(
            self._locked_for(self._by_login, names, now),
            self._locked_for(self._by_peer, peer_key(peer), now),
        )

    def _locked_for(self, table: OrderedDict[K, _Failures], key: K, now: float) -> float:
        entry = table.get(key)
        if entry is None:
            # Expiring could only remove entries: nothing to do for an absent key (the
            # tables stay bounded all the same: failure() expires them).
            return 0.0
        self._expire(table, now)
        return max(0.0, entry.locked_until - now) if table.get(key) is entry else 0.0

    def _bump(
        self, table: OrderedDict[K, _Failures], key: K, after: int, now: float, shared: int
    ) -> _Failures:
        entry = table.pop(key, None)
        if entry is None:
            entry = _Failures(count=0, last=now, locked_until=now)
        # `shared` (0: none) is the count every instance made, this failure included; it
        # decides, since a success at another instance may have cleared this one's count.
        entry.count = shared or entry.count + 1
        entry.last = now
        if entry.count >= after:
            entry.locked_until = now + min(2.0 ** (entry.count - after), self._max_delay)
        table[key] = entry  # re-inserted at the end: most recent
        self._expire(table, now)
        return entry

    def failure(
        self, peer: str, login: str, login2: str, shared: Mapping[LockoutKind, int] | None = None
    ) -> list[StoredLockout]:
        """Record a failed login from ``peer`` for ``(login, login2)``.

        ``shared`` holds the counts of the login and the address as the storage counted
        them (this failure included), when there is one: they decide.
        Returns the keys that are now locked out, for the caller to store.
        """
        now = self._clock()
        names = (normalize_login(login), normalize_login(login2))
        address = peer_key(peer)
        counts = shared or {}
        by_login = self._bump(self._by_login, names, self._after, now, counts.get("login", 0))
        by_peer = self._bump(
            self._by_peer, address, self._after_address, now, counts.get("address", 0)
        )
        bumped: list[tuple[LockoutKind, str, _Failures]] = [
            ("login", login_key(*names), by_login),
            ("address", address, by_peer),
        ]
        locked: list[StoredLockout] = []
        for kind, key, entry in bumped:
            if shared is not None:
                entry.stored = True  # the storage holds its count
            if entry.locked_until > now:
                entry.stored = True
                locked.append(StoredLockout(kind, key, entry.count, entry.locked_until, entry.last))
        return locked

    def success(self, peer: str, login: str, login2: str) -> str | None:
        """Record a successful login: the login's failure count is cleared.

        Returns the stored key of the login to delete, if the storage holds its count.
        """
        if not self._by_login:
            return None  # nothing to clear: the common case, after every cache hit
        return self.success_names((normalize_login(login), normalize_login(login2)))

    def success_names(self, names: LoginKey) -> str | None:
        """``success`` for a login already in its normalized form (``normalize_login``)."""
        entry = self._by_login.pop(names, None) if self._by_login else None
        return login_key(*names) if entry is not None and entry.stored else None

    def restore(self, lockouts: Iterable[StoredLockout]) -> None:
        """Take stored counts and lock-outs back (at start-up, or found stored by
        another instance).

        A stored entry replaces a weaker one in memory, never a stronger one; either way
        the key is known to be stored, so a success deletes its row.
        """
        for lock in lockouts:
            entry = _Failures(lock.failures, lock.last_failure, lock.locked_until, stored=True)
            if lock.kind == "login":
                try:
                    login, login2 = json.loads(lock.key)
                except (ValueError, TypeError):
                    continue  # not written by us: ignore
                self._adopt(self._by_login, (str(login), str(login2)), entry)
            else:
                self._adopt(self._by_peer, lock.key, entry)

    def _adopt(self, table: OrderedDict[K, _Failures], key: K, entry: _Failures) -> None:
        current = table.get(key)
        if current is not None and current.locked_until >= entry.locked_until:
            current.stored = True
            return
        table[key] = entry
        table.move_to_end(key)
        self._expire(table, self._clock())

    @staticmethod
    def stored_keys(peer: str, login: str, login2: str) -> list[tuple[LockoutKind, str]]:
        """The ``LockoutStore`` keys of this address and login."""
        names = (normalize_login(login), normalize_login(login2))
        return [("login", login_key(*names)), ("address", peer_key(peer))]


@dataclass(slots=True)
class _CacheEntry:
    principal: Principal
    version: int
    expires: float
    generation: int | None  # the directory's generation when last known current


class Authenticator:
    """Checks credentials against a ``CredentialDirectory``; see the module docstring.

    ``cache_seconds=0`` disables the cache. ``clock`` drives cache expiry (the
    throttle has its own). ``lockouts`` (optional) stores the throttle's lock-outs;
    call ``restore_lockouts`` once at start-up. ``verify`` (scrypt) runs in
    ``asyncio.to_thread``, at most ``max_concurrent_hashes`` at a time.
    """

    def __init__(
        self,
        directory: CredentialDirectory[Any],
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        throttle: LoginThrottle,
        lockouts: LockoutStore | None = None,
        max_cache_entries: int = 10_000,
        max_concurrent_hashes: int = 4,
    ) -> None:
        self.directory = directory
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._throttle = throttle
        self._lockouts = lockouts
        self._max_cache_entries = max_cache_entries
        self._cache_key = os.urandom(32)
        self._cache: OrderedDict[bytes, _CacheEntry] = OrderedDict()
        # (login, login2, version) -> the generation at which that row was last current;
        # lets still_valid() answer without the database while nothing changed.
        self._current: OrderedDict[tuple[str, str, int], int] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Task[Principal | None]] = {}
        self._hash_slots = asyncio.Semaphore(max_concurrent_hashes)

    @property
    def cache_size(self) -> int:
        """Number of cached verifications (for tests and metrics)."""
        return len(self._cache)

    def forget(self) -> None:
        """Drop every cached verification."""
        self._cache.clear()
        self._current.clear()

    async def restore_lockouts(self) -> int:
        """Load the stored lock-outs into the throttle (and purge stale ones); how many."""
        if self._lockouts is None:
            return 0
        now = self._throttle.now()
        since = now - self._throttle.forget_after
        await self._lockouts.purge(since)
        stored = await self._lockouts.recent(since, self._throttle.max_keys)
        self._throttle.restore(stored)
        return len(stored)

    def _key(self, login: str, login2: str, sha1: str) -> bytes:
        # surrogatepass: a lone surrogate (possible in decoded client input) must not
        # turn a wrong login into an internal error.
        material = "\0".join((login, login2, sha1)).encode("utf-8", "surrogatepass")
        # A keyed BLAKE2b: a MAC like HMAC-SHA256, a third of its cost (Python's built-in
        # BLAKE2, no OpenSSL digest look-up per call); this runs for every request.
        return hashlib.blake2b(material, key=self._cache_key, digest_size=32).digest()

    async def _row_is_current(
        self, login: str, login2: str, version: int, known: int | None
    ) -> tuple[bool, int | None]:
        """Is ``(login, login2)`` still at ``version``, and at which generation?

        ``known`` is the generation at which it was last seen current. Returns whether
        it still is, and the generation to remember with that (``None``: unknown).
        """
        generation = self.directory.generation()  # read before the query: see below
        if generation is not None and generation == known:
            return True, generation
        # A change committed after `generation` was read moves the generation again,
        # so remembering this (older) value can only cause one more check, never one less.
        current = await self.directory.current_version(login, login2) == version
        return current, generation

    async def still_valid(self, principal: Principal) -> bool:
        """Is the user behind ``principal`` unchanged since it was verified?

        For a WebSocket that authenticated once and now omits credentials: no database
        round trip while no user changed; otherwise one indexed lookup, so that a removed
        user or a changed password or role ends the session's rights at once. Principals
        without a version (not directory users) are always valid.
        """
        if principal.version is None:
            return True
        key = (principal.login, principal.login2, principal.version)
        current, generation = await self._row_is_current(*key, self._current.get(key))
        if not current:
            self._current.pop(key, None)
            return False
        if generation is not None:
            self._current[key] = generation
            self._current.move_to_end(key)
            while len(self._current) > self._max_cache_entries:
                self._current.popitem(last=False)
        return True

    async def verify_secret(
        self, given: str, configured: SecretStr | str | None, peer: str
    ) -> None:
        """Check a server-to-server ``secret`` with the same throttling as logins.

        Raises ``RateLimited`` while ``peer`` is locked out, ``AuthFailed`` if wrong
        (and counts the failure against the address, so the secret cannot be guessed
        at full speed).
        """
        # Keyed by address only: a per-secret key would let anyone lock every
        # legitimate server-to-server caller out.
        key = peer_key(peer)
        wait = self._throttle.retry_after(peer, _SECRET_LOGIN, key)
        if wait > 0:
            raise RateLimited(wait)
        if not check_server_secret(given, configured):
            await self._failed(peer, _SECRET_LOGIN, key)
            log.info("server secret refused from %s", peer)
            raise AuthFailed()

    async def authenticate(self, login: str, login2: str, sha1: str, peer: str) -> Principal:
        """The ``Principal`` for these credentials.

        Raises ``RateLimited`` while ``peer`` or the login is locked out (without
        checking the credentials), ``AuthFailed`` when they are wrong in any way.
        """
        login, login2 = normalize_login(login), normalize_login(login2)
        wait = self._throttle.retry_after_names(peer, (login, login2))
        if wait > 0:
            raise RateLimited(wait)
        sha1_norm = normalize_sha1(sha1) or ""
        key = self._key(login, login2, sha1_norm)

        principal = await self._cached(key, login, login2)
        if principal is None and key not in self._inflight:
            # About to run scrypt: first the lock-outs other instances stored. Then the
            # cache again, since a verification of the same credentials may have
            # finished while we waited (single flight would miss it otherwise).
            await self._check_stored_lockouts(peer, login, login2)
            principal = await self._cached(key, login, login2)
        if principal is None:
            principal = await self._verify_once(key, login, login2, sha1_norm)
        if principal is None:
            await self._failed(peer, login, login2)
            # Only the login (an account name, not a secret) and the address are logged.
            log.info("login failed for %r from %s", login, peer)
            raise AuthFailed()
        stored = self._throttle.success_names((login, login2))
        if stored is not None and self._lockouts is not None:
            await self._best_effort(self._lockouts.clear("login", stored))
        return principal

    async def _check_stored_lockouts(self, peer: str, login: str, login2: str) -> None:
        """Counts and lock-outs written by another instance (or before a restart we
        missed). Taking the counts too means a success here clears the login's count
        even when only another instance saw its failures."""
        if self._lockouts is None:
            return
        found = await self._lockouts.find(
            LoginThrottle.stored_keys(peer, login, login2),
            self._throttle.now() - self._throttle.forget_after,
        )
        if found:
            self._throttle.restore(found)
            wait = self._throttle.retry_after(peer, login, login2)
            if wait > 0:
                raise RateLimited(wait)

    async def _failed(self, peer: str, login: str, login2: str) -> None:
        shared = await self._count_failure(peer, login, login2)
        locked = self._throttle.failure(peer, login, login2, shared)
        if locked and self._lockouts is not None:
            await self._best_effort(self._lockouts.save(locked))

    async def _count_failure(
        self, peer: str, login: str, login2: str
    ) -> dict[LockoutKind, int] | None:
        """This failure counted in the storage: the shared counts (``None``: no storage,
        or it failed, and this instance's own count decides)."""
        if self._lockouts is None:
            return None
        now = self._throttle.now()
        forget_before = now - self._throttle.forget_after
        counts: dict[LockoutKind, int] = {}
        try:
            for kind, key in LoginThrottle.stored_keys(peer, login, login2):
                counts[kind] = await self._lockouts.count_failure(kind, key, now, forget_before)
        except StorageError as exc:
            log.warning("could not count a failed login in the storage: %s", exc)
            return None
        return counts

    @staticmethod
    async def _best_effort(write: Awaitable[object]) -> None:
        # The lock-out is in force in memory already; failing to store it must not turn
        # the caller's auth_failed into an internal error.
        try:
            await write
        except StorageError as exc:
            log.warning("could not store a login lock-out: %s", exc)

    async def _cached(self, key: bytes, login: str, login2: str) -> Principal | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._cache[key]
            return None
        generation = self.directory.generation()
        if generation is not None and generation == entry.generation:
            # Nothing changed since it was last current (as in _row_is_current, without
            # the extra coroutine: this is the hit of nearly every request).
            self._cache.move_to_end(key)
            return entry.principal
        current, generation = await self._row_is_current(
            login, login2, entry.version, entry.generation
        )
        if not current:
            self._cache.pop(key, None)
            return None
        entry.generation = generation
        if key in self._cache:
            self._cache.move_to_end(key)
        return entry.principal

    async def _verify_once(
        self, key: bytes, login: str, login2: str, sha1: str
    ) -> Principal | None:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._verify(key, login, login2, sha1))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # shield: one waiter being cancelled (its client left) must not cancel the
        # verification that other waiters share.
        return await asyncio.shield(task)

    async def _verify(self, key: bytes, login: str, login2: str, sha1: str) -> Principal | None:
        generation = self.directory.generation()  # before the read: see _row_is_current
        record: Account | None = await self.directory.get(login, login2)
        if self.directory.slow_verify:
            async with self._hash_slots:
                ok = await asyncio.to_thread(self.directory.verify, record, sha1)
        else:
            ok = self.directory.verify(record, sha1)
        if not ok or record is None:
            return None
        principal = Principal(
            record.login, record.login2, record.role, record.extensions, record.version
        )
        if self._cache_seconds > 0:
            self._cache[key] = _CacheEntry(
                principal, record.version, self._clock() + self._cache_seconds, generation
            )
            self._cache.move_to_end(key)
            now = self._clock()
            while self._cache and (
                len(self._cache) > self._max_cache_entries
                or next(iter(self._cache.values())).expires <= now
            ):
                self._cache.popitem(last=False)
        return principal
