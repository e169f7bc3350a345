"""Authentication on both storage backends: verification, the cache and its invalidation,
throttling and stored lock-outs, the server secret."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from tests.storage.fixtures import TEST_SETTINGS, wait_until
from vwell_pbx.api.auth import (
    AUTH_FAILED_MESSAGE,
    Authenticator,
    AuthFailed,
    LoginThrottle,
    Principal,
    RateLimited,
    check_server_secret,
    peer_key,
)
from vwell_pbx.storage import LockoutStore, Storage, StorageUrl, open_storage
from vwell_pbx.users import UserDirectory, scrypt_hasher, sha1_of_password

FAST = (2**4, 8, 1)
SHA1 = sha1_of_password("demo")
WRONG = sha1_of_password("guess")
LOGIN, LOGIN2 = "Agent", "Иванов И.И."
PEER = "192.0.2.10"


class Clock:
    """A manually advanced clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingHasher:
    """The real scrypt, counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, secret: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
        self.calls += 1
        return scrypt_hasher(secret, salt, n, r, p)


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
async def directory(storage: Storage, hasher: CountingHasher) -> UserDirectory:
    d = UserDirectory(storage.users, hasher=hasher, scrypt_params=FAST)
    await d.add(LOGIN, LOGIN2, sha1_hex=SHA1, role="supervisor", extensions=["269"])
    await wait_until(lambda: d.generation() is not None)  # PostgreSQL: LISTEN is up
    return d


@pytest.fixture
async def cli(storage_url: StorageUrl, storage: Storage) -> AsyncIterator[UserDirectory]:
    """Another connection to the same database, as the CLI or another instance would be."""
    async with open_storage(storage_url, TEST_SETTINGS) as other:
        yield UserDirectory(other.users, scrypt_params=FAST)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(directory: UserDirectory, storage: Storage, clock: Clock) -> Authenticator:
    throttle = LoginThrottle(clock, after=5, after_address=20)
    return Authenticator(
        directory, cache_seconds=60, clock=clock, throttle=throttle, lockouts=storage.lockouts
    )


async def test_success_returns_the_principal(auth: Authenticator) -> None:
    principal = await auth.authenticate(LOGIN, LOGIN2, SHA1.upper(), PEER)
    assert principal == Principal(LOGIN, LOGIN2, "supervisor", ("269",))


@pytest.mark.parametrize(
    ("login", "login2", "sha1"),
    [
        (LOGIN, LOGIN2, WRONG),  # wrong password
        ("Nobody", LOGIN2, SHA1),  # unknown login
        (LOGIN, "Петров П.П.", SHA1),  # unknown person
        (LOGIN, LOGIN2, "not-a-sha1"),  # malformed sha1
        ("", "", ""),
    ],
)
async def test_every_failure_has_the_same_message(
    auth: Authenticator, hasher: CountingHasher, login: str, login2: str, sha1: str
) -> None:
    before = hasher.calls
    with pytest.raises(AuthFailed) as info:
        await auth.authenticate(login, login2, sha1, PEER)
    assert str(info.value) == AUTH_FAILED_MESSAGE
    # Unknown users and malformed input cost one scrypt too: no timing difference.
    assert hasher.calls == before + 1


async def test_cache_hit_skips_scrypt(
    auth: Authenticator, hasher: CountingHasher, clock: Clock
) -> None:
    before = hasher.calls
    for _ in range(10):
        await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert hasher.calls == before + 1
    assert auth.cache_size == 1
    clock.advance(61)  # the entry expired
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert hasher.calls == before + 2


async def test_cache_disabled(directory: UserDirectory, hasher: CountingHasher) -> None:
    auth = Authenticator(directory, cache_seconds=0, throttle=LoginThrottle())
    before = hasher.calls
    for _ in range(3):
        await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert hasher.calls == before + 3
    assert auth.cache_size == 0


async def test_wrong_password_is_never_served_from_the_cache(
    auth: Authenticator, hasher: CountingHasher
) -> None:
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    before = hasher.calls
    with pytest.raises(AuthFailed):
        await auth.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    assert hasher.calls == before + 1


async def test_cache_never_holds_the_secret(auth: Authenticator) -> None:
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    dumped = repr(auth._cache).encode() + b"".join(auth._cache)
    assert SHA1.encode() not in dumped
    assert bytes.fromhex(SHA1) not in dumped


async def test_cache_hits_make_no_database_round_trip(
    auth: Authenticator, storage: Storage, hasher: CountingHasher
) -> None:
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    statements, hashes = storage.db.statements, hasher.calls
    for _ in range(50):
        await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert (storage.db.statements, hasher.calls) == (statements, hashes)


async def test_changed_password_is_refused_at_once(
    auth: Authenticator, directory: UserDirectory
) -> None:
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    await directory.set_sha1(LOGIN, LOGIN2, sha1_hex=WRONG)
    with pytest.raises(AuthFailed):
        await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert (await auth.authenticate(LOGIN, LOGIN2, WRONG, PEER)).login == LOGIN


async def test_removed_user_is_refused_at_once(
    auth: Authenticator, directory: UserDirectory, cli: UserDirectory
) -> None:
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    before = directory.generation()
    # Removed by another connection, as the CLI would do while the server runs.
    assert await cli.remove(LOGIN, LOGIN2)
    # SQLite sees it at once; PostgreSQL as soon as the NOTIFY has arrived.
    await wait_until(lambda: directory.generation() != before)
    with pytest.raises(AuthFailed):
        await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)


async def test_unrelated_user_changes_cost_one_lookup_per_entry(
    auth: Authenticator, directory: UserDirectory, cli: UserDirectory, storage: Storage
) -> None:
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    before = directory.generation()
    await cli.add("Someone", "Else", sha1_hex=WRONG)
    await wait_until(lambda: directory.generation() != before)
    statements = storage.db.statements
    for _ in range(10):
        await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert storage.db.statements == statements + 1  # re-checked once, then trusted again


async def test_role_change_is_seen_at_once(auth: Authenticator, directory: UserDirectory) -> None:
    assert (await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)).role == "supervisor"
    await directory.update(LOGIN, LOGIN2, role="operator")
    assert (await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)).role == "operator"


async def test_concurrent_requests_share_one_scrypt(
    auth: Authenticator, hasher: CountingHasher
) -> None:
    before = hasher.calls
    results = await asyncio.gather(
        *(auth.authenticate(LOGIN, LOGIN2, SHA1, PEER) for _ in range(20))
    )
    assert {r.login for r in results} == {LOGIN}
    assert hasher.calls == before + 1


async def test_cancelled_waiter_does_not_cancel_the_shared_check(
    auth: Authenticator, hasher: CountingHasher
) -> None:
    first = asyncio.create_task(auth.authenticate(LOGIN, LOGIN2, SHA1, PEER))
    second = asyncio.create_task(auth.authenticate(LOGIN, LOGIN2, SHA1, PEER))
    await asyncio.sleep(0)
    first.cancel()
    principal = await asyncio.wait_for(second, timeout=5)
    assert principal.login == LOGIN
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_nfc_normalised_login2(auth: Authenticator) -> None:
    decomposed = unicodedata.normalize("NFD", LOGIN2)
    assert (await auth.authenticate(LOGIN, decomposed, SHA1, PEER)).login2 == LOGIN2


async def test_failures_are_throttled_per_login(auth: Authenticator, clock: Clock) -> None:
    for _ in range(4):
        with pytest.raises(AuthFailed):
            await auth.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    with pytest.raises(AuthFailed):  # the 5th failure locks the login for 1 s
        await auth.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    # Locked: even the right password is answered rate_limited, from any address.
    with pytest.raises(RateLimited) as info:
        await auth.authenticate(LOGIN, LOGIN2, SHA1, "198.51.100.7")
    assert info.value.retry_after == pytest.approx(1.0)
    assert "try again in 1 s" in str(info.value)
    # Another person of the same account is not affected.
    with pytest.raises(AuthFailed):
        await auth.authenticate(LOGIN, "Петров П.П.", WRONG, "198.51.100.7")
    clock.advance(1.0)
    with pytest.raises(AuthFailed):  # 6th failure: 2 s
        await auth.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    with pytest.raises(RateLimited) as info:
        await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert info.value.retry_after == pytest.approx(2.0)
    clock.advance(2.0)
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)  # success clears the login's count
    with pytest.raises(AuthFailed):
        await auth.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)  # not locked after one failure


async def test_failures_are_throttled_per_address(directory: UserDirectory, clock: Clock) -> None:
    throttle = LoginThrottle(clock, after=5, after_address=3)
    auth = Authenticator(directory, cache_seconds=60, clock=clock, throttle=throttle)
    for i in range(3):  # three different logins from one address
        with pytest.raises(AuthFailed):
            await auth.authenticate(f"guess{i}", "x", WRONG, PEER)
    with pytest.raises(RateLimited):
        await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    # Another address is fine.
    await auth.authenticate(LOGIN, LOGIN2, SHA1, "192.0.2.11")
    clock.advance(1.0)
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    # A success does not reset the address counter: the next failure locks for 2 s.
    with pytest.raises(AuthFailed):
        await auth.authenticate("guess9", "x", WRONG, PEER)
    assert throttle.retry_after(PEER, "other", "x") == pytest.approx(2.0)


def test_throttle_delay_grows_and_is_capped() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, after=2, after_address=1000, max_delay=10)
    delays = []
    for _ in range(8):
        throttle.failure(PEER, "a", "b")
        delays.append(throttle.retry_after(PEER, "a", "b"))
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_throttle_forgets_and_is_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, after=1, forget_after=60, max_keys=100)
    throttle.failure(PEER, "a", "b")
    assert throttle.retry_after(PEER, "a", "b") == 1.0
    clock.advance(61)
    assert throttle.retry_after(PEER, "a", "b") == 0.0
    assert len(throttle) == 0
    for i in range(1000):
        throttle.failure(f"10.0.{i // 256}.{i % 256}", f"user{i}", "x")
    assert len(throttle) == 200  # 100 logins + 100 addresses
    # The most recent are kept.
    assert throttle.retry_after("10.0.3.231", "user999", "x") > 0


def test_throttle_by_normalized_names_is_the_same_throttle() -> None:
    # What authenticate() asks (names it normalized once) and what retry_after() asks
    # (any spelling) see the same lock-outs, and only the keys that failed.
    clock = Clock()
    throttle = LoginThrottle(clock, after=1)
    assert throttle.retry_after(PEER, "a", "b") == 0.0  # nobody failed yet
    throttle.failure(PEER, "e\u0301", "x")  # decomposed é
    assert throttle.retry_after_names(PEER, ("\u00e9", "x")) == 1.0
    assert throttle.retry_after("10.9.9.9", "\u00e9", "x") == 1.0  # the login, any address
    assert throttle.retry_after_names("10.9.9.9", ("other", "x")) == 0.0
    assert throttle.success_names(("other", "x")) is None
    assert throttle.retry_after(PEER, "e\u0301", "x") == 1.0
    throttle.success_names(("\u00e9", "x"))
    assert throttle.retry_after(PEER, "e\u0301", "x") == 0.0


def test_peer_key_groups_ipv6_by_64() -> None:
    assert peer_key("192.0.2.1") == "192.0.2.1"
    assert peer_key("2001:db8:1:2:aaaa::1") == peer_key("2001:db8:1:2:bbbb::2")
    assert peer_key("2001:db8:1:2::1") != peer_key("2001:db8:1:3::1")
    assert peer_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert peer_key("fe80::1%eth0") == "fe80::/64"
    assert peer_key("unix-socket") == "unix-socket"


async def test_credentials_are_never_logged(
    auth: Authenticator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    with pytest.raises(AuthFailed):
        await auth.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    assert caplog.records  # the failure was logged...
    text = caplog.text.lower()
    assert SHA1 not in text  # ...without the secret
    assert WRONG not in text


def test_check_server_secret() -> None:
    assert check_server_secret("s3cret", "s3cret")
    assert check_server_secret("s3cret", SecretStr("s3cret"))
    assert not check_server_secret("s3cret", "other")
    assert not check_server_secret("s3cre", "s3cret")
    assert not check_server_secret(None, "s3cret")
    assert not check_server_secret("", "")
    assert not check_server_secret("anything", None)
    assert not check_server_secret("anything", SecretStr(""))


async def test_still_valid_follows_the_directory(
    auth: Authenticator, directory: UserDirectory, storage: Storage
) -> None:
    principal = await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert principal.version is not None
    assert await auth.still_valid(principal)
    statements = storage.db.statements
    assert await auth.still_valid(principal)  # nothing changed: no round trip
    assert storage.db.statements == statements
    await directory.update(LOGIN, LOGIN2, extensions=["270"])
    assert not await auth.still_valid(principal)
    fresh = await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert fresh.extensions == ("270",)
    assert await auth.still_valid(fresh)
    await directory.remove(LOGIN, LOGIN2)
    assert not await auth.still_valid(fresh)
    assert await auth.still_valid(Principal("server", "", "admin"))  # not a directory user


async def test_server_secret_attempts_are_throttled(directory: UserDirectory, clock: Clock) -> None:
    auth = Authenticator(
        directory, cache_seconds=60, clock=clock, throttle=LoginThrottle(clock, after=3)
    )
    await auth.verify_secret("s3cret", SecretStr("s3cret"), PEER)
    for _ in range(3):
        with pytest.raises(AuthFailed):
            await auth.verify_secret("guess", SecretStr("s3cret"), PEER)
    with pytest.raises(RateLimited):
        await auth.verify_secret("s3cret", SecretStr("s3cret"), PEER)
    await auth.verify_secret("s3cret", SecretStr("s3cret"), "192.0.2.99")
    with pytest.raises(AuthFailed):  # no configured secret: the feature is off
        await auth.verify_secret("anything", None, "192.0.2.99")


# --- stored lock-outs -----------------------------------------------------------------


async def _lock_out(auth: Authenticator, peer: str = PEER) -> None:
    for _ in range(5):
        with pytest.raises(AuthFailed):
            await auth.authenticate(LOGIN, LOGIN2, WRONG, peer)


async def test_lockouts_survive_a_restart(
    auth: Authenticator, directory: UserDirectory, storage: Storage, clock: Clock
) -> None:
    await _lock_out(auth)
    clock.advance(0.5)  # the same wall clock after the restart, half a second later
    restarted = Authenticator(
        directory,
        cache_seconds=60,
        clock=clock,
        throttle=LoginThrottle(clock, after=5, after_address=20),
        lockouts=storage.lockouts,
    )
    # The login's lock-out, and the address's count (5 of 20), which goes on from 5.
    assert await restarted.restore_lockouts() == 2
    with pytest.raises(RateLimited) as info:
        await restarted.authenticate(LOGIN, LOGIN2, SHA1, "198.51.100.7")
    assert info.value.retry_after == pytest.approx(0.5)
    for attempt in range(15):
        with pytest.raises(AuthFailed):
            await restarted.authenticate(f"guess{attempt}", LOGIN2, WRONG, PEER)
    with pytest.raises(RateLimited):  # 5 before the restart + 15 after = after_address
        await restarted.authenticate("another", LOGIN2, WRONG, PEER)


def _instance(directory: UserDirectory, lockouts: LockoutStore, clock: Clock) -> Authenticator:
    """Another instance's authenticator: its own memory, the same storage."""
    return Authenticator(
        directory,
        cache_seconds=60,
        clock=clock,
        throttle=LoginThrottle(clock, after=5, after_address=20),
        lockouts=lockouts,
    )


async def test_failures_at_several_instances_count_together(
    auth: Authenticator, directory: UserDirectory, storage: Storage, clock: Clock
) -> None:
    instance_b = _instance(directory, storage.lockouts, clock)
    for instance in (auth, instance_b, auth, instance_b):
        with pytest.raises(AuthFailed):
            await instance.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    assert await storage.db.fetch_value("SELECT failures FROM lockouts WHERE kind = 'login'") == 4
    # The fifth failure locks, wherever it happens; neither instance saw five by itself.
    with pytest.raises(AuthFailed):
        await instance_b.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    for instance in (auth, instance_b):
        with pytest.raises(RateLimited):
            await instance.authenticate(LOGIN, LOGIN2, SHA1, PEER)


async def test_a_success_at_one_instance_clears_the_count_made_at_another(
    auth: Authenticator, directory: UserDirectory, storage: Storage, clock: Clock
) -> None:
    instance_b = _instance(directory, storage.lockouts, clock)
    for _ in range(4):
        with pytest.raises(AuthFailed):
            await auth.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    await instance_b.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM lockouts WHERE kind = 'login'") == 0
    # The count starts again from the storage's zero, at A too, which remembers four.
    for instance in (instance_b, auth):
        with pytest.raises(AuthFailed):
            await instance.authenticate(LOGIN, LOGIN2, WRONG, PEER)
    assert await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)


async def test_another_instance_sees_the_lockout_before_checking_a_password(
    auth: Authenticator,
    storage_url: StorageUrl,
    storage: Storage,
    clock: Clock,
    hasher: CountingHasher,
) -> None:
    async with open_storage(storage_url, TEST_SETTINGS) as other:
        instance_b = Authenticator(
            UserDirectory(other.users, hasher=hasher, scrypt_params=FAST),
            cache_seconds=60,
            clock=clock,
            throttle=LoginThrottle(clock, after=5, after_address=20),
            lockouts=other.lockouts,
        )
        await _lock_out(auth)  # on instance A, after B started
        before = hasher.calls
        with pytest.raises(RateLimited):
            await instance_b.authenticate(LOGIN, LOGIN2, SHA1, "198.51.100.7")
        assert hasher.calls == before  # refused without running scrypt


async def test_a_success_after_the_lockout_clears_the_stored_row(
    auth: Authenticator, storage: Storage, clock: Clock
) -> None:
    await _lock_out(auth)
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM lockouts WHERE kind = 'login'") == 1
    clock.advance(1.0)
    await auth.authenticate(LOGIN, LOGIN2, SHA1, PEER)
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM lockouts WHERE kind = 'login'") == 0


async def test_hostile_logins_are_stored_as_lockout_keys(
    auth: Authenticator, storage: Storage
) -> None:
    # NUL and lone surrogates cannot be stored as text by PostgreSQL: the key escapes them.
    for _ in range(5):
        with pytest.raises(AuthFailed):
            await auth.authenticate("a\x00b", "\ud800'; --", WRONG, PEER)
    keys = await storage.db.fetch_all("SELECT key FROM lockouts WHERE kind = 'login'")
    assert keys == [('["a\\u0000b", "\\ud800\'; --"]',)]
