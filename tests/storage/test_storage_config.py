"""[storage] url: parsing, redaction, the default, the earlier [users] database, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from vwell_pbx.config import AppConfig, ConfigError, load_config
from vwell_pbx.storage import StorageUrl, StorageUrlError

PBX = '[[pbx]]\nname = "office"\nhost = "10.0.0.1"\nusername = "u"\nsecret = "s"\n'


def write(folder: Path, text: str) -> Path:
    path = folder / "app-config.toml"
    path.write_text(text + PBX, encoding="utf-8")
    return path


def test_postgresql_url_parts_and_redaction() -> None:
    url = StorageUrl.parse("postgresql://vwell:s%40cret@db.example.com:6432/pbx?sslmode=require")
    assert (url.backend, url.host, url.port, url.user, url.database) == (
        "postgresql",
        "db.example.com",
        6432,
        "vwell",
        "pbx",
    )
    assert url.password is not None
    assert url.password.get_secret_value() == "s@cret"
    for text in (str(url), repr(url), url.redacted(), url.dsn()):
        assert "cret" not in text
    assert str(url) == "postgresql://vwell:***@db.example.com:6432/pbx?sslmode=require"
    assert url.dsn() == "postgresql://vwell@db.example.com:6432/pbx?sslmode=require"
    assert StorageUrl.parse("postgres://h/db").backend == "postgresql"


def test_sqlite_url_forms(tmp_path: Path) -> None:
    assert StorageUrl.parse("sqlite:data/x.sqlite3", base_dir=tmp_path).path == (
        tmp_path / "data" / "x.sqlite3"
    )
    assert StorageUrl.parse("sqlite:///var/lib/x.sqlite3").path == Path("/var/lib/x.sqlite3")
    assert str(StorageUrl.sqlite(Path("/a/b"))) == "sqlite:/a/b"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("mysql://u:hunter2@h/db", "unknown backend"),
        ("postgresql://u:hunter2@/db", "a host and a database"),
        ("postgresql://u:hunter2@h", "a host and a database"),
        ("postgresql://u:hunter2@h:port/db", "port"),
        ("sqlite:", "file path"),
        ("just-a-path", "expected sqlite:PATH"),
    ],
)
def test_bad_urls_are_explained_without_the_password(text: str, fragment: str) -> None:
    with pytest.raises(StorageUrlError, match=fragment) as info:
        StorageUrl.parse(text)
    assert "hunter2" not in str(info.value)


def test_default_is_data_vwell_sqlite3_next_to_the_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""), env={})
    assert cfg.storage.resolved_url == StorageUrl.sqlite(
        tmp_path.resolve() / "data" / "vwell.sqlite3"
    )


def test_an_earlier_default_users_file_is_kept(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "users.sqlite3").write_bytes(b"")
    cfg = load_config(write(tmp_path, ""), env={})
    assert cfg.storage.resolved_url.path == tmp_path.resolve() / "data" / "users.sqlite3"
    # Once the new file exists it wins.
    (tmp_path / "data" / "vwell.sqlite3").write_bytes(b"")
    cfg = load_config(write(tmp_path, ""), env={})
    assert cfg.storage.resolved_url.path == tmp_path.resolve() / "data" / "vwell.sqlite3"


def test_users_database_becomes_the_storage(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[users]\ndatabase = "db/users.sqlite3"\n'), env={})
    assert cfg.storage.resolved_url.path == tmp_path.resolve() / "db" / "users.sqlite3"


def test_url_and_users_database_together_are_an_error(tmp_path: Path) -> None:
    text = '[users]\ndatabase = "u.sqlite3"\n[storage]\nurl = "sqlite:v.sqlite3"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.field == "storage"
    assert "users.database" in str(info.value)


def test_password_from_the_environment_or_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[storage]\nurl = "postgresql://vwell@db:5432/pbx"\n')
    cfg = load_config(path, env={"VWELL_PBX_STORAGE_PASSWORD": "from-env"})
    url = cfg.storage.resolved_url
    assert url.password is not None
    assert url.password.get_secret_value() == "from-env"
    assert "from-env" not in repr(cfg) + str(cfg)
    path = write(tmp_path, '[storage]\nurl = "postgresql://vwell@db/pbx"\npassword = "in-file"\n')
    url = load_config(path, env={}).storage.resolved_url
    assert url.password is not None
    assert url.password.get_secret_value() == "in-file"


def test_the_whole_url_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    env = {"VWELL_PBX_STORAGE_URL": "postgresql://app:pw-9@10.0.0.5/vwell"}
    url = load_config(path, env=env).storage.resolved_url
    assert (url.host, url.database, str(url)) == (
        "10.0.0.5",
        "vwell",
        "postgresql://app:***@10.0.0.5/vwell",
    )


def test_a_bad_url_names_the_field_and_hides_the_password(tmp_path: Path) -> None:
    path = write(tmp_path, '[storage]\nurl = "postgresql://u:hunter2@h:99999999/db"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.field == "storage.url"
    assert "hunter2" not in str(info.value)


def test_pool_bounds_are_checked() -> None:
    data = {
        "pbx": [{"name": "a", "host": "h", "username": "u", "secret": "s"}],
        "storage": {"pool_size": 2, "pool_min": 3},
    }
    with pytest.raises(ValueError, match="pool_min"):
        AppConfig.model_validate(data)
