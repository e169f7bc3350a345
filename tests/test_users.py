"""The SQLite user directory: CRUD, uniqueness, Unicode, versions, no secrets at rest."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from vwell_pbx.users import (
    SCRYPT_N,
    UserDataError,
    UserDirectory,
    UserDirectoryError,
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
def directory(tmp_path: Path) -> Iterator[UserDirectory]:
    with UserDirectory(tmp_path / "data" / "users.sqlite3", scrypt_params=FAST) as d:
        yield d


def test_sha1_of_password_matches_the_demo_user() -> None:
    assert sha1_of_password("demo") == "89e495e7941cf9e40e6980d14a16bf023ccd4c91"


def test_add_get_verify(directory: UserDirectory) -> None:
    rec = directory.add("Agent", "Иванов И.И.", sha1_hex=PW_SHA1.upper(), extensions=["269"])
    assert (rec.login, rec.login2, rec.role, rec.extensions) == (
        "Agent",
        "Иванов И.И.",
        "operator",
        ("269",),
    )
    got = directory.get("Agent", "Иванов И.И.")
    assert got == rec
    assert directory.verify(got, PW_SHA1)
    assert directory.verify(got, PW_SHA1.upper())  # hex case does not matter
    assert not directory.verify(got, OTHER_SHA1)
    assert not directory.verify(got, "not hex")
    assert directory.get("Agent", "Петров П.П.") is None
    assert directory.get("agent", "Иванов И.И.") is None  # logins are case-sensitive


def test_unique_pair_but_same_login_for_several_people(directory: UserDirectory) -> None:
    directory.add("Agent", "Иванов И.И.", sha1_hex=PW_SHA1)
    directory.add("Agent", "Петров П.П.", sha1_hex=PW_SHA1)
    with pytest.raises(UserExists, match="already exists"):
        directory.add("Agent", "Иванов И.И.", sha1_hex=OTHER_SHA1)
    assert [(u.login, u.login2) for u in directory.list()] == [
        ("Agent", "Иванов И.И."),
        ("Agent", "Петров П.П."),
    ]


def test_login2_is_compared_nfc_normalised(directory: UserDirectory) -> None:
    composed = unicodedata.normalize("NFC", "Йёлкин")
    decomposed = unicodedata.normalize("NFD", "Йёлкин")
    assert composed != decomposed
    directory.add("Agent", decomposed, sha1_hex=PW_SHA1)
    rec = directory.get("Agent", composed)
    assert rec is not None
    assert rec.login2 == composed
    with pytest.raises(UserExists):
        directory.add("Agent", composed, sha1_hex=PW_SHA1)
    assert directory.current_version("Agent", decomposed) == rec.version


def test_passwd_bumps_version_and_replaces_hash(directory: UserDirectory) -> None:
    rec = directory.add("Agent", "A", sha1_hex=PW_SHA1)
    new_version = directory.set_sha1("Agent", "A", sha1_hex=OTHER_SHA1)
    assert new_version > rec.version
    assert directory.current_version("Agent", "A") == new_version
    after = directory.get("Agent", "A")
    assert after is not None
    assert after.salt != rec.salt
    assert directory.verify(after, OTHER_SHA1)
    assert not directory.verify(after, PW_SHA1)
    with pytest.raises(UserNotFound):
        directory.set_sha1("Nobody", "X", sha1_hex=PW_SHA1)


def test_versions_never_repeat_across_remove_and_add(directory: UserDirectory) -> None:
    first = directory.add("Agent", "A", sha1_hex=PW_SHA1)
    assert directory.remove("Agent", "A")
    assert directory.current_version("Agent", "A") is None
    assert not directory.remove("Agent", "A")
    again = directory.add("Agent", "A", sha1_hex=PW_SHA1, role="admin")
    assert again.version > first.version


def test_update_role_and_extensions(directory: UserDirectory) -> None:
    rec = directory.add("Agent", "A", sha1_hex=PW_SHA1)
    version = directory.update("Agent", "A", role="supervisor", extensions=["269", "270"])
    assert version > rec.version
    got = directory.get("Agent", "A")
    assert got is not None
    assert (got.role, got.extensions) == ("supervisor", ("269", "270"))
    with pytest.raises(UserDataError):
        directory.update("Agent", "A")
    with pytest.raises(UserNotFound):
        directory.update("X", "Y", role="admin")


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
def test_invalid_data_is_refused(  # noqa: PLR0917 (one argument per table column)
    directory: UserDirectory,
    login: str,
    login2: str,
    sha1: str,
    kwargs: dict[str, object],
    fragment: str,
) -> None:
    with pytest.raises(UserDataError, match=fragment):
        directory.add(login, login2, sha1_hex=sha1, **kwargs)  # type: ignore[arg-type]


def test_repr_has_no_hash_or_salt(directory: UserDirectory) -> None:
    rec = directory.add("Agent", "A", sha1_hex=PW_SHA1)
    text = repr(rec) + repr(directory.list())
    assert rec.hash.hex() not in text
    assert "hash" not in text
    assert "salt" not in text


def test_the_file_holds_neither_password_nor_sha1(tmp_path: Path) -> None:
    db = tmp_path / "users.sqlite3"
    password = "Pa55-word-Ünïcode"
    sha1 = sha1_of_password(password)
    with UserDirectory(db) as directory:  # the real scrypt parameters
        rec = directory.add("Agent", "Иванов И.И.", sha1_hex=sha1)
        assert (rec.n, rec.r, rec.p) == (SCRYPT_N, 8, 1)
        assert directory.verify(rec, sha1)
        assert rec.hash == hashlib.scrypt(
            sha1.encode(), salt=rec.salt, n=SCRYPT_N, r=8, p=1, dklen=32, maxmem=64 * 1024**2
        )
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for needle in (
        password.encode(),
        sha1.encode(),
        sha1.upper().encode(),
        bytes.fromhex(sha1),
    ):
        assert needle not in blob


def test_schema_is_versioned_and_wal(directory: UserDirectory) -> None:
    con = sqlite3.connect(directory.path)
    try:
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        con.close()


def test_a_second_connection_sees_changes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite3"
    with (
        UserDirectory(path, scrypt_params=FAST) as server,
        UserDirectory(path, scrypt_params=FAST) as cli,
    ):
        cli.add("Agent", "A", sha1_hex=PW_SHA1)
        version = server.current_version("Agent", "A")
        assert version is not None
        cli.set_sha1("Agent", "A", sha1_hex=OTHER_SHA1)
        assert server.current_version("Agent", "A") != version
        cli.remove("Agent", "A")
        assert server.current_version("Agent", "A") is None


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite3"
    UserDirectory(path, scrypt_params=FAST).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(UserDirectoryError, match="newer"):
        UserDirectory(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserDirectoryError, match="not a usable user database"):
        UserDirectory(path)


def test_verify_of_unknown_user_still_hashes(tmp_path: Path) -> None:
    calls: list[int] = []

    def counting(secret: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
        calls.append(n)
        return scrypt_hasher(secret, salt, n, r, p)

    with UserDirectory(tmp_path / "u.sqlite3", hasher=counting, scrypt_params=FAST) as d:
        assert not d.verify(None, PW_SHA1)
    assert calls == [FAST[0]]


def test_concurrent_threads(directory: UserDirectory) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            directory.add("Agent", f"user {i}", sha1_hex=PW_SHA1)
            assert directory.get("Agent", f"user {i}") is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors
    assert len(directory.list()) == 16
