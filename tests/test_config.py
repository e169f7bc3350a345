"""Configuration loading: defaults, validation messages, env overrides, secrets, paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from vwell_pbx.config import (
    AppConfig,
    CallsConfig,
    ConfigError,
    demo_config,
    find_config_path,
    load_config,
    parse_listen_address,
    pbx_secret_env_name,
    render_template,
)
from vwell_pbx.pbx.numbers import PhoneRules

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "app-config.example.toml"

MINIMAL = """
[[pbx]]
name = "office"
host = "192.168.1.10"
username = "vwell"
secret = "s3cr3t-ami"
"""


def write(tmp_path: Path, text: str, name: str = "app-config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> AppConfig:
    return load_config(write(tmp_path, text), env=env or {})


def error_for(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, env)
    return info.value


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    assert cfg.server.http == "0.0.0.0:8930"
    assert cfg.server.http_address == ("0.0.0.0", 8930)
    assert cfg.server.ws_address == ("0.0.0.0", 8931)
    assert cfg.server.cors_origins == ("*",)
    assert cfg.limits.max_body_bytes == 1024 * 1024
    assert cfg.limits.ws_max_message_bytes == 256 * 1024
    assert cfg.limits.default_wait_ms == 15000
    assert cfg.limits.max_wait_ms == 60000
    assert cfg.users.auth_cache_seconds == 60
    assert cfg.users.throttle_after == 5
    pbx = cfg.pbx[0]
    assert (pbx.port, pbx.auth, pbx.tls, pbx.simulator) == (5038, "md5", False, False)
    assert cfg.dial.channel == "SIP/{from}"
    assert cfg.dial.context == "DLPN_DialPlan{from}"
    assert cfg.dial.callerid == "{to}"
    assert cfg.redirect.context == "default"
    assert (cfg.sms.backend, cfg.sms.span) == ("yeastar", "auto")
    assert cfg.phone.rewrite == (("+7", "8"),)
    assert not cfg.is_demo


@pytest.mark.parametrize(
    ("snippet", "field", "fragment"),
    [
        ('port = "x"', "pbx[0].port", "valid integer"),
        ("port = 70000", "pbx[0].port", "less than or equal to 65535"),
        ('auth = "sha"', "pbx[0].auth", "'md5' or 'plain'"),
        ("prot = 5038", "pbx[0].prot", "Extra inputs are not permitted"),
        ('name = "bad name!"', "pbx[0].name", "letters, digits"),
    ],
)
def test_pbx_errors_name_the_field_and_the_file(
    tmp_path: Path, snippet: str, field: str, fragment: str
) -> None:
    text = MINIMAL.replace('host = "192.168.1.10"', f'host = "192.168.1.10"\n{snippet}')
    if snippet.startswith("name"):
        text = text.replace('name = "office"\n', "")
    err = error_for(tmp_path, text)
    assert err.field == field
    assert f"app-config.toml: {field}: " in str(err)
    assert fragment in str(err)


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ('[server]\nhttp = "8930"\n', "server.http", "HOST:PORT"),
        ('[server]\nhttp = "::1:80"\n', "server.http", "brackets"),
        ('[server]\ncors_origins = ["crm.example.com"]\n', "server.cors_origins", "origin"),
        ('[server]\nlog_level = "loud"\n', "server.log_level", "'debug'"),
        ('[server]\ntls_cert = "missing.pem"\n', "server.tls_cert", "file not found"),
        ("[limits]\nmax_inflight = 0\n", "limits.max_inflight", "greater than 0"),
        ("[limits]\ndefault_wait_ms = 90000\n", "limits", "must not exceed max_wait_ms"),
        ("[users]\nthrotle_after = 3\n", "users.throtle_after", "Extra inputs"),
        ('[dial]\nchannel = "SIP/{ext}"\n', "dial.channel", "only {from} and {to}"),
        ('[dial]\ncontext = "X{from!r}"\n', "dial.context", "only {from} and {to}"),
        ('[dial]\nvariables = { A = "{who}" }\n', "dial.variables", "only {from} and {to}"),
        ('[redirect]\ncontext = "a\\nb"\n', "redirect.context", "CR, LF"),
        ('[sms]\nbackend = "dongle"\n', "sms.span", "device name"),
        ('[sms]\nspan = "first"\n', "sms.span", "span number"),
        ('[sms]\nbackend = "sms77"\n', "sms.backend", "'yeastar'"),
        ('[phone]\nrewrite = [["7x", "8"]]\n', "phone.rewrite", "prefix"),
        ('[calls]\ntrunks = ["YSGSM/*", " "]\n', "calls.trunks", "trunks[1] must be a non-empty"),
        ("[calls]\nextensions = [269]\n", "calls.extensions[0]", "valid string"),
        ("[calls]\nretention_days = -1\n", "calls.retention_days", "greater than or equal to 0"),
        ("[calls]\nmax_calls = 0\n", "calls.max_calls", "greater than 0"),
        ("[calls]\nhistory_batch_size = 20000\n", "calls.history_batch_size", "less than"),
        ("[calls]\nhistory_flush_seconds = -1\n", "calls.history_flush_seconds", "greater"),
        ("[calls]\nhistory_flush_seconds = 61\n", "calls.history_flush_seconds", "60"),
        ("[calls]\nhistory_flush_seconds = nan\n", "calls.history_flush_seconds", "60"),
        ("[calls]\nenable = false\n", "calls.enable", "Extra inputs"),
        ("[roles.sales]\nmethods = ['send']\nactoins = ['Ping']\n", "roles.sales.actoins", "Extra"),
        ("[unknown]\n", "unknown", "Extra inputs"),
    ],
)
def test_section_errors_name_the_field(
    tmp_path: Path, text: str, field: str, fragment: str
) -> None:
    err = error_for(tmp_path, MINIMAL + text)
    assert err.field == field, str(err)
    assert fragment in str(err)


def test_calls_settings_become_the_trackers_rules_and_bounds(tmp_path: Path) -> None:
    path = tmp_path / "app-config.toml"
    path.write_text(
        MINIMAL + '[calls]\ntrunks = ["DAHDI/*"]\nmax_calls = 5\nretention_days = 0\n',
        encoding="utf-8",
    )
    calls = load_config(path, env={}).calls
    rules = calls.rules(PhoneRules())
    assert rules.classify("DAHDI/1-1").trunk == "DAHDI/1"
    assert rules.classify("YSGSM/11-1").trunk is None  # the defaults were replaced
    assert calls.limits().max_calls == 5
    assert calls.retention_ms is None  # 0 = keep forever
    assert CallsConfig().retention_ms == 90 * 86_400_000


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL + '[server]\nhttp = "x"\n[limits]\nburst = -1\n')
    fields = [field for field, _ in err.problems]
    assert fields == ["server.http", "limits.burst"]
    assert len(str(err).splitlines()) == 2


def test_pbx_list_rules(tmp_path: Path) -> None:
    assert error_for(tmp_path, "[server]\n").field == "pbx"
    assert "at least one" in str(error_for(tmp_path, "pbx = []\n"))
    twice = MINIMAL + MINIMAL.replace('"office"', '"Office"')
    err = error_for(tmp_path, twice)
    assert err.field == "pbx"
    assert "unique" in str(err)


def test_pbx_secret_is_required_and_names_its_variable(tmp_path: Path) -> None:
    err = error_for(tmp_path, MINIMAL.replace('secret = "s3cr3t-ami"\n', ""))
    assert err.field == "pbx[0]"
    assert "VWELL_PBX_PBX_OFFICE_SECRET" in str(err)


def test_simulator_true_needs_nothing_else(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[[pbx]]\nname = "lab"\nsimulator = true\n')
    pbx = cfg.pbx[0]
    assert (pbx.host, pbx.username, pbx.port, pbx.secret) == ("127.0.0.1", "vwell", 0, None)
    assert cfg.is_demo
    # What is written is kept (an explicit port is then used as given, or start-up fails).
    kept = load_text(
        tmp_path,
        '[[pbx]]\nname = "lab"\nsimulator = true\nhost = "192.168.1.10"\nport = 5038\n'
        'username = "admin"\nsecret = "lab-secret"\n',
    ).pbx[0]
    assert (kept.host, kept.port, kept.username) == ("192.168.1.10", 5038, "admin")
    assert kept.secret is not None and kept.secret.get_secret_value() == "lab-secret"


@pytest.mark.parametrize("missing", ["host", "username"])
def test_a_real_pbx_still_needs_host_and_username(tmp_path: Path, missing: str) -> None:
    text = "\n".join(line for line in MINIMAL.splitlines() if not line.startswith(missing))
    assert error_for(tmp_path, text).field == f"pbx[0].{missing}"
    simulated = text.replace("[[pbx]]", "[[pbx]]\nsimulator = false")
    assert error_for(tmp_path, simulated).field == f"pbx[0].{missing}"


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    err = error_for(tmp_path, "[server\nhttp = 1")
    assert "invalid TOML" in str(err)
    assert "app-config.toml" in str(err)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_env_overrides_secrets(tmp_path: Path) -> None:
    text = MINIMAL.replace('secret = "s3cr3t-ami"\n', "") + (
        '[[pbx]]\nname = "branch-2"\nhost = "10.0.0.2"\nusername = "u"\nsecret = "in-file"\n'
    )
    assert pbx_secret_env_name("branch-2") == "VWELL_PBX_PBX_BRANCH_2_SECRET"
    env = {
        "VWELL_PBX_PBX_SECRET": "first-from-env",
        "VWELL_PBX_PBX_BRANCH_2_SECRET": "branch-from-env",
        "VWELL_PBX_SERVER_SECRET": "server-from-env",
    }
    cfg = load_text(tmp_path, text, env)
    assert cfg.pbx[0].secret is not None
    assert cfg.pbx[0].secret.get_secret_value() == "first-from-env"
    assert cfg.pbx[1].secret is not None
    assert cfg.pbx[1].secret.get_secret_value() == "branch-from-env"
    assert cfg.server.secret is not None
    assert cfg.server.secret.get_secret_value() == "server-from-env"


def test_per_name_variable_beats_the_first_pbx_variable(tmp_path: Path) -> None:
    env = {"VWELL_PBX_PBX_SECRET": "generic", "VWELL_PBX_PBX_OFFICE_SECRET": "specific"}
    cfg = load_text(tmp_path, MINIMAL, env)
    assert cfg.pbx[0].secret is not None
    assert cfg.pbx[0].secret.get_secret_value() == "specific"


def test_secrets_never_appear_in_repr_str_or_errors(tmp_path: Path) -> None:
    text = MINIMAL + '[server]\nsecret = "server-secret-xyz"\nhttp = "bad"\n'
    err = error_for(tmp_path, text)
    assert "server-secret-xyz" not in str(err)
    assert "s3cr3t-ami" not in str(err)
    cfg = load_text(tmp_path, MINIMAL + '[server]\nsecret = "server-secret-xyz"\n')
    for shown in (repr(cfg), str(cfg), repr(cfg.pbx[0]), str(cfg.server)):
        assert "s3cr3t-ami" not in shown
        assert "server-secret-xyz" not in shown
    # A bad secret's error does not echo it either.
    err = error_for(tmp_path, MINIMAL.replace('"s3cr3t-ami"', '"s3cr3t\\nami"'))
    assert "s3cr3t" not in str(err)


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc" / "vwell"
    folder.mkdir(parents=True)
    (folder / "tls").mkdir()
    (folder / "tls" / "c.pem").write_text("x")
    (folder / "tls" / "k.pem").write_text("x")
    text = MINIMAL + (
        '[users]\ndatabase = "db/users.sqlite3"\n'
        '[server]\ntls_cert = "tls/c.pem"\ntls_key = "tls/k.pem"\n'
    )
    cfg = load_config(write(folder, text), env={})
    assert cfg.users.database == folder.resolve() / "db" / "users.sqlite3"
    assert cfg.server.tls_cert == folder.resolve() / "tls" / "c.pem"
    absolute = tmp_path / "abs.sqlite3"
    cfg = load_config(write(folder, MINIMAL + f'[users]\ndatabase = "{absolute}"\n'), env={})
    assert cfg.users.database == absolute


def test_tls_needs_both_files(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    err = error_for(tmp_path, MINIMAL + '[server]\ntls_cert = "c.pem"\n')
    assert err.field == "server"
    assert "together" in str(err)


def test_ws_listener_can_be_disabled(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL + '[server]\nws = ""\nhttp = "[::1]:0"\n')
    assert cfg.server.ws_address is None
    assert cfg.server.http_address == ("::1", 0)


def test_template_and_span_coercions(tmp_path: Path) -> None:
    text = MINIMAL + "[dial]\npriority = 2\nchannel = 'Local/{from}@x{{y}}'\n[sms]\nspan = 3\n"
    cfg = load_text(tmp_path, text)
    assert cfg.dial.priority == "2"
    assert cfg.sms.span == 3
    assert render_template(cfg.dial.channel, from_="269", to="8100") == "Local/269@x{y}"
    assert render_template(cfg.dial.context, from_="269", to="8100") == "DLPN_DialPlan269"
    cfg = load_text(tmp_path, MINIMAL + '[sms]\nbackend = "dongle"\nspan = "dongle0"\n')
    assert cfg.sms.span == "dongle0"


def test_parse_listen_address() -> None:
    assert parse_listen_address("127.0.0.1:8930") == ("127.0.0.1", 8930)
    assert parse_listen_address("[::]:1") == ("::", 1)
    for bad in ("", ":80", "host", "h:99999", "[zz]:80"):
        with pytest.raises(ValueError):
            parse_listen_address(bad)


def test_demo_config(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path / "data", env={})
    assert cfg.is_demo
    assert cfg.server.http_address == ("127.0.0.1", 8930)
    assert cfg.server.ws_address == ("127.0.0.1", 8931)
    assert cfg.storage.resolved_url.path == tmp_path / "data" / "vwell.sqlite3"
    assert cfg.pbx[0].port == 0
    assert cfg.demo.login == "Agent"
    assert cfg.demo.login2 == "Иванов И.И."
    assert cfg.demo.password.get_secret_value() == "demo"


def test_find_config_path_precedence(tmp_path: Path) -> None:
    assert find_config_path(None, env={}, cwd=tmp_path) is None
    default = tmp_path / "config" / "app-config.toml"
    default.parent.mkdir()
    default.write_text(MINIMAL)
    assert find_config_path(None, env={}, cwd=tmp_path) == default
    other = write(tmp_path, MINIMAL, "other.toml")
    env = {"VWELL_PBX_CONFIG": str(other)}
    assert find_config_path(None, env=env, cwd=tmp_path) == other
    cli = write(tmp_path, MINIMAL, "cli.toml")
    assert find_config_path("cli.toml", env=env, cwd=tmp_path) == cli
    # A named file that is missing is an error, never a fall-back to demo mode.
    with pytest.raises(ConfigError, match="--config"):
        find_config_path("typo.toml", env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="VWELL_PBX_CONFIG"):
        find_config_path(None, env={"VWELL_PBX_CONFIG": "gone.toml"}, cwd=tmp_path)


def _field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for candidate in _models_in(info.annotation):
            names |= _field_names(candidate)
    return names


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def test_example_config_validates_and_documents_every_field() -> None:
    cfg = load_config(EXAMPLE, env={})
    assert cfg.pbx[0].name == "office"
    assert "sales" in cfg.roles
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = set(re.findall(r"^#? ?([a-z_0-9]+) = ", text, flags=re.MULTILINE))
    sections = set(re.findall(r"^\[+([a-z_]+)", text, flags=re.MULTILINE))
    missing = _field_names(AppConfig) - keys - sections
    # EventRuleConfig's keys appear inline in the sample role's events.
    missing -= {n for n in ("name", "fields") if f"{n} = " in text}
    assert not missing, f"fields not documented in the example: {sorted(missing)}"


def test_example_defaults_match_the_models() -> None:
    """The example shows each default: an uncommented key equals the model's default."""
    cfg = load_config(EXAMPLE, env={})
    for section in ("limits", "users", "dial", "redirect", "sms", "phone", "calls"):
        model = getattr(cfg, section)
        default = type(model)()
        for name in type(model).model_fields:
            if section == "users" and name == "database":
                continue  # resolved against the file's folder
            assert getattr(model, name) == getattr(default, name), f"{section}.{name}"
