"""The user directory on the storage (both backends): CRUD, uniqueness, Unicode, versions,
change generations, no secrets at rest."""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.storage.fixtures import TEST_SETTINGS, wait_until
from vwell_pbx.storage import Storage, StorageError, StorageUrl, open_storage
from vwell_pbx.users import (
    SCRYPT_N,
    UserDataError,
    UserDirectory,
    UserExists,
    UserNotFound,
    scrypt_hasher,
    sha1_of_password,
)

# Cheap scrypt parameters keep the suite fast; one test uses the real defaults.
FAST = (2**4, 8, 1)
PW_SHA1 = sha1_of_password("correct horse")
OTHER_SHA1 = sha1_of_password("battery staple")


@pytest.fixture
async def directory(storage: Storage) -> UserDirectory:
    return UserDirectory(storage.users, scrypt_params=FAST)


def test_sha1_of_password_matches_the_demo_user() -> None:
    assert sha1_of_password("demo") == "89e495e7941cf9e40e6980d14a16bf023ccd4c91"


async def test_add_get_verify(directory: UserDirectory) -> None:
    rec = await directory.add("Agent", "Иванов И.И.", sha1_hex=PW_SHA1.upper(), extensions=["269"])
    assert (rec.login, rec.login2, rec.role, rec.extensions) == (
        "Agent",
        "Иванов И.И.",
        "operator",
        ("269",),
    )
    got = await directory.get("Agent", "Иванов И.И.")
    assert got == rec
    assert directory.verify(got, PW_SHA1)
    assert directory.verify(got, PW_SHA1.upper())  # hex case does not matter
    assert not directory.verify(got, OTHER_SHA1)
    assert not directory.verify(got, "not hex")
    assert await directory.get("Agent", "Петров П.П.") is None
    assert await directory.get("agent", "Иванов И.И.") is None  # logins are case-sensitive


async def test_unique_pair_but_same_login_for_several_people(directory: UserDirectory) -> None:
    await directory.add("Agent", "Иванов И.И.", sha1_hex=PW_SHA1)
    await directory.add("Agent", "Петров П.П.", sha1_hex=PW_SHA1)
    with pytest.raises(UserExists, match="already exists"):
        await directory.add("Agent", "Иванов И.И.", sha1_hex=OTHER_SHA1)
    assert [(u.login, u.login2) for u in await directory.list()] == [
        ("Agent", "Иванов И.И."),
        ("Agent", "Петров П.П."),
    ]


async def test_login2_is_compared_nfc_normalised(directory: UserDirectory) -> None:
    composed = unicodedata.normalize("NFC", "Йёлкин")
    decomposed = unicodedata.normalize("NFD", "Йёлкин")
    assert composed != decomposed
    await directory.add("Agent", decomposed, sha1_hex=PW_SHA1)
    rec = await directory.get("Agent", composed)
    assert rec is not None
    assert rec.login2 == composed
    with pytest.raises(UserExists):
        await directory.add("Agent", composed, sha1_hex=PW_SHA1)
    assert await directory.current_version("Agent", decomposed) == rec.version


async def test_passwd_bumps_version_and_replaces_hash(directory: UserDirectory) -> None:
    rec = await directory.add("Agent", "A", sha1_hex=PW_SHA1)
    new_version = await directory.set_sha1("Agent", "A", sha1_hex=OTHER_SHA1)
    assert new_version > rec.version
    assert await directory.current_version("Agent", "A") == new_version
    after = await directory.get("Agent", "A")
    assert after is not None
    assert after.salt != rec.salt
    assert directory.verify(after, OTHER_SHA1)
    assert not directory.verify(after, PW_SHA1)
    with pytest.raises(UserNotFound):
        await directory.set_sha1("Nobody", "X", sha1_hex=PW_SHA1)


async def test_versions_never_repeat_across_remove_and_add(directory: UserDirectory) -> None:
    first = await directory.add("Agent", "A", sha1_hex=PW_SHA1)
    assert await directory.remove("Agent", "A")
    assert await directory.current_version("Agent", "A") is None
    assert not await directory.remove("Agent", "A")
    again = await directory.add("Agent", "A", sha1_hex=PW_SHA1, role="admin")
    assert again.version > first.version


async def test_update_role_and_extensions(directory: UserDirectory) -> None:
    rec = await directory.add("Agent", "A", sha1_hex=PW_SHA1)
    version = await directory.update("Agent", "A", role="supervisor", extensions=["269", "270"])
    assert version > rec.version
    got = await directory.get("Agent", "A")
    assert got is not None
    assert (got.role, got.extensions) == ("supervisor", ("269", "270"))
    with pytest.raises(UserDataError):
        await directory.update("Agent", "A")
    with pytest.raises(UserNotFound):
        await directory.update("X", "Y", role="admin")


@pytest.mark.parametrize(
    ("login", "login2", "sha1", "kwargs", "fragment"),  # one tuple per case below
    [
        ("", "A", PW_SHA1, {}, "login must not be empty"),
        ("Agent", "  ", PW_SHA1, {}, "login2 must not be empty"),
        ("Agent", "A\nB", PW_SHA1, {}, "control characters"),
        ("Agent", "A", "abc", {}, "40 hexadecimal"),
        ("Agent", "A", PW_SHA1, {"role": "bad role"}, "role"),
        ("Agent", "A", PW_SHA1, {"extensions": ["26 9"]}, "extension"),
    ],
)
async def test_invalid_data_is_refused(  # noqa: PLR0917 (one argument per table column)
    directory: UserDirectory,
    login: str,
    login2: str,
    sha1: str,
    kwargs: dict[str, object],
    fragment: str,
) -> None:
    with pytest.raises(UserDataError, match=fragment):
        await directory.add(login, login2, sha1_hex=sha1, **kwargs)  # type: ignore[arg-type]


async def test_repr_has_no_hash_or_salt(directory: UserDirectory) -> None:
    rec = await directory.add("Agent", "A", sha1_hex=PW_SHA1)
    text = repr(rec) + repr(await directory.list())
    assert rec.hash.hex() not in text
    assert "hash" not in text
    assert "salt" not in text


async def test_the_file_holds_neither_password_nor_sha1(tmp_path: Path) -> None:
    password = "Pa55-word-Ünïcode"
    sha1 = sha1_of_password(password)
    async with open_storage(StorageUrl.sqlite(tmp_path / "vwell.sqlite3"), TEST_SETTINGS) as st:
        directory = UserDirectory(st.users)  # the real scrypt parameters
        rec = await directory.add("Agent", "Иванов И.И.", sha1_hex=sha1)
        assert (rec.n, rec.r, rec.p) == (SCRYPT_N, 8, 1)
        assert directory.verify(rec, sha1)
        assert rec.hash == hashlib.scrypt(
            sha1.encode(), salt=rec.salt, n=SCRYPT_N, r=8, p=1, dklen=32, maxmem=64 * 1024**2
        )
    blob = await asyncio.to_thread(
        lambda: b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    )
    for needle in (
        password.encode(),
        sha1.encode(),
        sha1.upper().encode(),
        bytes.fromhex(sha1),
    ):
        assert needle not in blob


async def test_names_a_database_cannot_store_are_simply_not_found(
    directory: UserDirectory,
) -> None:
    # NUL cannot be stored in PostgreSQL text, a lone surrogate is not UTF-8 at all:
    # lookups with them find nobody instead of failing inside the driver.
    for bad in ("Agent\x00", "Agent\ud800"):
        assert await directory.get(bad, "A") is None
        assert await directory.current_version("A", bad) is None
        with pytest.raises(UserDataError, match="control characters"):
            await directory.add(bad, "A", sha1_hex=PW_SHA1)


@pytest.fixture
async def second(storage_url: StorageUrl, storage: Storage) -> AsyncIterator[UserDirectory]:
    """The same database through its own connections, as the CLI or another instance."""
    async with open_storage(storage_url, TEST_SETTINGS) as other:
        yield UserDirectory(other.users, scrypt_params=FAST)


async def test_a_second_connection_sees_changes_at_once(
    directory: UserDirectory, second: UserDirectory
) -> None:
    await second.add("Agent", "A", sha1_hex=PW_SHA1)
    version = await directory.current_version("Agent", "A")
    assert version is not None
    await second.set_sha1("Agent", "A", sha1_hex=OTHER_SHA1)
    assert await directory.current_version("Agent", "A") != version
    await second.remove("Agent", "A")
    assert await directory.current_version("Agent", "A") is None


async def test_the_generation_moves_on_every_user_write_from_elsewhere(
    storage: Storage, directory: UserDirectory, second: UserDirectory
) -> None:
    await wait_until(lambda: directory.generation() is not None)
    for write in (
        second.add("Agent", "A", sha1_hex=PW_SHA1),
        second.update("Agent", "A", role="admin"),
        second.set_sha1("Agent", "A", sha1_hex=OTHER_SHA1),
        second.remove("Agent", "A"),
    ):
        before = directory.generation()
        await write
        # SQLite: at once (PRAGMA data_version); PostgreSQL: when the NOTIFY arrives.
        await wait_until(lambda before=before: directory.generation() != before)
    # Writes to other tables do not invalidate the users' caches.
    before = directory.generation()
    await storage.db.execute(
        "INSERT INTO lockouts (kind, key, failures, locked_until, last_failure) "
        "VALUES ('address', '192.0.2.1', 1, 0, 0)"
    )
    assert directory.generation() == before


async def test_local_writes_move_the_generation_at_once(directory: UserDirectory) -> None:
    await wait_until(lambda: directory.generation() is not None)
    before = directory.generation()
    await directory.add("Agent", "A", sha1_hex=PW_SHA1)
    assert directory.generation() != before


async def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "vwell.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="not a usable database"):
        async with open_storage(StorageUrl.sqlite(path), TEST_SETTINGS):
            pass


async def test_verify_of_unknown_user_still_hashes(storage: Storage) -> None:
    calls: list[int] = []

    def counting(secret: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
        calls.append(n)
        return scrypt_hasher(secret, salt, n, r, p)

    d = UserDirectory(storage.users, hasher=counting, scrypt_params=FAST)
    assert not d.verify(None, PW_SHA1)
    assert calls == [FAST[0]]


async def test_concurrent_writers(directory: UserDirectory) -> None:
    async def work(i: int) -> None:
        await directory.add("Agent", f"user {i}", sha1_hex=PW_SHA1)
        assert await directory.get("Agent", f"user {i}") is not None

    await asyncio.gather(*(work(i) for i in range(16)))
    records = await directory.list()
    assert len(records) == 16
    assert len({r.version for r in records}) == 16
