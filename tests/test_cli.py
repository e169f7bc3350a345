"""The vwell-pbx command line: user and database management on both backends, exit codes,
config discovery."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.storage.fixtures import TEST_SETTINGS, create_pg_database
from tests.storage.pg_cluster import PgCluster
from vwell_pbx.cli import main
from vwell_pbx.storage import LATEST, StorageUrl, open_storage
from vwell_pbx.users import UserDirectory, UserRecord, scrypt_hasher, sha1_of_password

ROOT = Path(__file__).resolve().parents[1]
VWELL_PBX = ROOT / ".venv" / "bin" / "vwell-pbx"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test runs in its own folder with no configuration named by the environment.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VWELL_PBX_CONFIG", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "app-config.toml"
    path.parent.mkdir()
    path.write_text(
        '[users]\ndatabase = "db/users.sqlite3"\n'
        '[[pbx]]\nname = "office"\nhost = "10.0.0.1"\nusername = "u"\nsecret = "s"\n'
        '[roles.sales]\nextends = "operator"\n',
        encoding="utf-8",
    )
    return path


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None
) -> tuple[int, str, str]:
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(argv)
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return code, out, err


PBX = '[[pbx]]\nname = "office"\nhost = "10.0.0.1"\nusername = "u"\nsecret = "s"\n'


@pytest.fixture
def storage_config(
    storage_backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, StorageUrl]:
    """A configuration with ``[storage] url`` on each backend (PostgreSQL's password from
    the environment, as in production); returns it and the URL the server would use."""
    if storage_backend == "sqlite":
        url = StorageUrl.sqlite(tmp_path / "etc" / "data" / "vwell.sqlite3")
        text = 'url = "sqlite:data/vwell.sqlite3"'
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        url = asyncio.run(create_pg_database(cluster))
        assert url.password is not None
        monkeypatch.setenv("VWELL_PBX_STORAGE_PASSWORD", url.password.get_secret_value())
        text = f'url = "{url.dsn()}"'
    path = tmp_path / "etc" / "app-config.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"[storage]\n{text}\n{PBX}", encoding="utf-8")
    return path, url


async def _records(url: StorageUrl) -> list[UserRecord]:
    async with open_storage(url, TEST_SETTINGS) as storage:
        return await UserDirectory(storage.users).list()


def records(where: Path | StorageUrl) -> list[UserRecord]:
    url = where if isinstance(where, StorageUrl) else StorageUrl.sqlite(where)
    return asyncio.run(_records(url))


def users_in(where: Path | StorageUrl) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(u.login, u.login2, u.role, u.extensions) for u in records(where)]


def verifies(where: Path | StorageUrl, login: str, login2: str, sha1: str) -> bool:
    for record in records(where):
        if (record.login, record.login2) == (login, login2):
            digest = scrypt_hasher(sha1.encode(), record.salt, record.n, record.r, record.p)
            return digest == record.hash
    return False


def test_user_lifecycle_with_config(
    storage_config: tuple[Path, StorageUrl], capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = storage_config
    cfg = ["--config", str(config)]
    code, out, _ = run(
        ["user", "add", "Agent", "Иванов И.И.", "--password", "demo", "--extension", "269", *cfg],
        capsys,
    )
    assert code == 0
    assert "added Agent / Иванов И.И. (role operator, extensions 269)" in out
    assert users_in(db) == [("Agent", "Иванов И.И.", "operator", ("269",))]

    code, out, _ = run(["user", "list", *cfg], capsys)
    assert code == 0
    assert "Иванов И.И." in out
    assert "LOGIN" in out

    code, out, _ = run(["user", "list", "--json", *cfg], capsys)
    row = json.loads(out)
    assert row["login2"] == "Иванов И.И."
    assert row["extensions"] == ["269"]
    assert "hash" not in row

    code, _, err = run(["user", "add", "Agent", "Иванов И.И.", "--password", "x", *cfg], capsys)
    assert code == 1
    assert "already exists" in err

    code, out, _ = run(
        ["user", "passwd", "Agent", "Иванов И.И.", "--password-sha1", "A" * 40, *cfg], capsys
    )
    assert code == 0
    assert "password changed" in out
    assert verifies(db, "Agent", "Иванов И.И.", "a" * 40)

    code, out, _ = run(["user", "remove", "Agent", "Иванов И.И.", *cfg], capsys)
    assert code == 0
    assert users_in(db) == []
    code, _, err = run(["user", "remove", "Agent", "Иванов И.И.", *cfg], capsys)
    assert code == 1
    assert "no user" in err


def test_config_option_may_come_first(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["--config", str(config), "user", "add", "A", "B", "--password", "p"], capsys)
    assert code == 0
    assert users_in(config.parent / "db" / "users.sqlite3")[0][:2] == ("A", "B")


def test_config_from_environment(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VWELL_PBX_CONFIG", str(config))
    assert run(["user", "add", "A", "B", "--password", "p"], capsys)[0] == 0
    assert len(users_in(config.parent / "db" / "users.sqlite3")) == 1


def test_demo_mode_uses_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["user", "add", "Agent", "Иванов И.И.", "--password", "demo"], capsys)
    assert code == 0
    assert "demo database" in err
    assert users_in(tmp_path / "data" / "vwell.sqlite3")[0][:2] == ("Agent", "Иванов И.И.")


def test_password_from_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["user", "add", "A", "B", "--password", "-"], capsys, stdin="s3cret\n")
    assert code == 0
    assert verifies(tmp_path / "data" / "vwell.sqlite3", "A", "B", sha1_of_password("s3cret"))
    code, _, err = run(["user", "passwd", "A", "B", "--password", "-"], capsys, stdin="")
    assert code == 2
    assert "standard input is empty" in err


def test_roles_are_checked(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ["--config", str(config)]
    code, out, _ = run(
        ["user", "add", "A", "B", "--password", "p", "--role", "sales", *cfg], capsys
    )
    assert code == 0
    assert "role sales" in out
    code, _, err = run(["user", "add", "A", "C", "--password", "p", "--role", "boss", *cfg], capsys)
    assert code == 1
    assert "unknown role 'boss'" in err
    assert "sales" in err


def test_list_warns_about_undefined_roles(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(["user", "add", "A", "B", "--password", "p", "--config", str(config)], capsys)[0] == 0
    )
    # A role that disappeared from the configuration after the user was added:
    edited = config.read_text(encoding="utf-8").replace("[roles.sales]", "[roles.ghost]")
    config.write_text(edited, encoding="utf-8")
    assert run(["user", "add", "A", "C", "--password", "p", "--role", "ghost",
                "--config", str(config)], capsys)[0] == 0  # fmt: skip
    config.write_text(edited.replace("[roles.ghost]", "[roles.sales]"), encoding="utf-8")
    code, _, err = run(["user", "list", "--config", str(config)], capsys)
    assert code == 0
    assert "role 'ghost' is not defined" in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["user", "add", "A", "B"], "one of the arguments --password --password-sha1"),
        (["user", "add", "A", "B", "--password", "x", "--password-sha1", "y"], "not allowed"),
        (["user", "passwd", "A", "B", "--password-sha1", "xyz"], "40 hexadecimal"),
        (["user", "add", "A", "B", "--password", ""], "must not be empty"),
        (["user"], "required"),
        ([], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2
    assert fragment in err


def test_bad_data_and_bad_config_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["user", "add", "A", "B\tC", "--password", "p"], capsys)
    assert code == 1
    assert "control characters" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[[pbx]]\nname = 'x'\nhost = 'h'\nusername = 'u'\nsecret = 's'\nport = -1\n")
    code, _, err = run(["user", "list", "--config", str(bad)], capsys)
    assert code == 1
    assert "pbx[0].port" in err
    code, _, err = run(["user", "list", "--config", "missing.toml"], capsys)
    assert code == 1
    assert "not found" in err
    code, _, err = run(["serve", "--config", "missing.toml"], capsys)
    assert code == 1
    assert "missing.toml: configuration file not found" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["user", "add", "--help"], capsys)
    assert code == 0
    assert "--password-sha1" in out


@pytest.mark.slow  # the installed console script, one process per command
def test_console_script_end_to_end(config: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VWELL_PBX_CONFIG"}

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VWELL_PBX), *args, "--config", str(config)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            cwd=tmp_path,
            check=False,
        )

    done = cli("user", "add", "Agent", "Иванов И.И.", "--password", "-", stdin="demo\n")
    assert done.returncode == 0, done.stderr
    done = cli("user", "list")
    assert done.returncode == 0
    assert "Иванов И.И." in done.stdout
    done = cli("user", "remove", "Nobody", "X")
    assert done.returncode == 1
    assert "no user" in done.stderr
    blob = b"".join(p.read_bytes() for p in (config.parent / "db").iterdir())
    assert sha1_of_password("demo").encode() not in blob
    assert b"demo\n" not in blob


@pytest.mark.parametrize("head", [["--config", "x.toml"], ["--config=x.toml"]])
def test_simulate_after_the_global_config_option(
    head: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # The simulator reads no configuration; naming one first must not break `simulate`.
    code, out, _ = run([*head, "simulate", "--help"], capsys)
    assert code == 0
    assert "--traffic" in out and "vwell-pbx simulate" in out


# --- db status / upgrade / copy -----------------------------------------------------


def test_db_status_and_upgrade(
    storage_config: tuple[Path, StorageUrl], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = storage_config
    cfg = ["--config", str(config)]
    code, out, _ = run(["db", "status", *cfg], capsys)
    assert code == 0
    assert f"schema   version 0 of {LATEST}, pending" in out
    assert str(url) in out
    code, out, _ = run(["db", "upgrade", *cfg], capsys)
    assert code == 0
    assert f"from version 0 to {LATEST}" in out
    code, out, _ = run(["db", "upgrade", *cfg], capsys)
    assert f"already at version {LATEST}" in out
    assert run(["user", "add", "A", "B", "--password", "p", *cfg], capsys)[0] == 0
    code, out, _ = run(["db", "status", *cfg], capsys)
    assert code == 0
    assert "up to date" in out
    assert "users 1" in out
    if url.password is not None:  # the URL is shown, its password never
        assert url.password.get_secret_value() not in out


def test_db_copy_sqlite_to_postgresql(
    config: Path,
    pg_cluster: PgCluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = ["--config", str(config)]
    assert run(["user", "add", "Agent", "Иванов И.И.", "--password", "demo",
                "--extension", "269", *cfg], capsys)[0] == 0  # fmt: skip
    assert run(["user", "add", "boss", "B", "--password", "x", *cfg], capsys)[0] == 0
    target = asyncio.run(create_pg_database(pg_cluster))
    assert target.password is not None
    monkeypatch.setenv("VWELL_PBX_STORAGE_PASSWORD", target.password.get_secret_value())
    code, out, err = run(["db", "copy", "--to", target.dsn(), *cfg], capsys)
    assert code == 0, err
    assert "users 2" in out
    assert users_in(target) == users_in(config.parent / "db" / "users.sqlite3")
    assert verifies(target, "Agent", "Иванов И.И.", sha1_of_password("demo"))
    # Twice: refused, nothing doubled; --force replaces.
    code, _, err = run(["db", "copy", "--to", target.dsn(), *cfg], capsys)
    assert code == 1
    assert "already holds data" in err
    assert "--force" in err
    code, out, _ = run(["db", "copy", "--to", target.dsn(), "--force", *cfg], capsys)
    assert code == 0
    assert len(users_in(target)) == 2
    # The version counter came along: a user added at the target continues after it.
    copied = max(r.version for r in records(target))
    asyncio.run(_add_at(target))
    assert max(r.version for r in records(target)) == copied + 1


async def _add_at(url: StorageUrl) -> None:
    async with open_storage(url, TEST_SETTINGS) as storage:
        await UserDirectory(storage.users, scrypt_params=(16, 8, 1)).add(
            "After", "Copy", sha1_hex="0" * 40
        )


def test_db_copy_refuses_itself_and_a_bad_url(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = config.parent / "db" / "users.sqlite3"
    code, _, err = run(["db", "copy", "--to", f"sqlite:{db}", "--config", str(config)], capsys)
    assert code == 2
    assert "itself" in err
    code, _, err = run(["db", "copy", "--to", "mysql://u:pw@h/db", "--config", str(config)], capsys)
    assert code == 1
    assert "unknown backend" in err
    assert "pw" not in err


def test_a_wrong_database_password_is_a_clear_error_without_it(
    pg_cluster: PgCluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "app-config.toml"
    path.write_text(f'[storage]\nurl = "{pg_cluster.url()}"\n{PBX}', encoding="utf-8")
    monkeypatch.setenv("VWELL_PBX_STORAGE_PASSWORD", "not-the-pw-123")
    code, out, err = run(["user", "list", "--config", str(path)], capsys)
    assert code == 1
    assert "password authentication failed" in err
    assert "not-the-pw-123" not in out + err
