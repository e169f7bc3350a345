"""The vwell-pbx command line: user management, exit codes, config discovery."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vwell_pbx.cli import main
from vwell_pbx.users import UserDirectory, sha1_of_password

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


def users_in(path: Path) -> list[tuple[str, str, str, tuple[str, ...]]]:
    with UserDirectory(path) as d:
        return [(u.login, u.login2, u.role, u.extensions) for u in d.list()]


def test_user_lifecycle_with_config(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = config.parent / "db" / "users.sqlite3"
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
    with UserDirectory(db) as d:
        rec = d.get("Agent", "Иванов И.И.")
        assert rec is not None
        assert d.verify(rec, "a" * 40)

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
    assert users_in(tmp_path / "data" / "users.sqlite3")[0][:2] == ("Agent", "Иванов И.И.")


def test_password_from_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["user", "add", "A", "B", "--password", "-"], capsys, stdin="s3cret\n")
    assert code == 0
    with UserDirectory(tmp_path / "data" / "users.sqlite3") as d:
        rec = d.get("A", "B")
        assert rec is not None
        assert d.verify(rec, sha1_of_password("s3cret"))
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
    with UserDirectory(config.parent / "db" / "users.sqlite3") as d:
        d.add("A", "B", sha1_hex="0" * 40, role="ghost")
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
    blob = (config.parent / "db" / "users.sqlite3").read_bytes()
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
