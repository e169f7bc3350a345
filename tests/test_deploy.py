"""The deployment examples stay usable: deploy/compose.yaml is valid YAML with its two
instances on PostgreSQL behind nginx, the configuration it embeds is one the server
accepts, and both nginx configurations keep WebSockets sticky and event streams
unbuffered. (No Docker engine runs here: the compose file is checked as data.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from vwell_pbx.config import load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _compose() -> dict[str, object]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_runs_two_instances_on_postgresql_behind_nginx() -> None:
    compose = _compose()
    services = compose["services"]
    assert isinstance(services, dict)
    assert set(services) == {"postgres", "vwell-a", "vwell-b", "nginx"}
    a, b = services["vwell-a"], services["vwell-b"]
    assert a["hostname"] != b["hostname"]  # the instances' names
    for instance in (a, b):
        assert instance["build"]["dockerfile"] == "deploy/Dockerfile"
        assert instance["depends_on"]["postgres"]["condition"] == "service_healthy"
        env = instance["environment"]
        assert set(env) == {"VWELL_PBX_STORAGE_PASSWORD", "VWELL_PBX_PBX_SECRET"}
        assert all(value.startswith("${") for value in env.values())  # never in the file
        assert instance["configs"][0]["target"] == "/etc/vwell-pbx/app-config.toml"
    assert "VWELL_DB_PASSWORD" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_the_configuration_compose_embeds_is_valid(tmp_path: Path) -> None:
    configs = _compose()["configs"]
    assert isinstance(configs, dict)
    path = tmp_path / "app-config.toml"
    path.write_text(configs["vwell_config"]["content"], encoding="utf-8")
    assert "password" not in tomllib.loads(path.read_text(encoding="utf-8"))["storage"]
    # The secrets come from the environment compose sets.
    env = {"VWELL_PBX_STORAGE_PASSWORD": "db-pw", "VWELL_PBX_PBX_SECRET": "ami-secret"}
    config = load_config(path, env=env)
    assert config.storage.resolved_url.backend == "postgresql"
    assert config.storage.resolved_url.password is not None
    assert config.pbx[0].secret is not None
    assert config.instances.relay_events
    assert config.server.trusted_proxies


@pytest.mark.parametrize("source", ["nginx-two-instances.conf", "compose.yaml"])
def test_nginx_keeps_websockets_sticky_and_streams_unbuffered(source: str) -> None:
    if source == "compose.yaml":
        configs = _compose()["configs"]
        assert isinstance(configs, dict)
        text = configs["nginx_config"]["content"].replace("$$", "$")
    else:
        text = (DEPLOY / source).read_text(encoding="utf-8")
    assert re.search(r"upstream vwell_pbx \{\s*ip_hash;", text)
    assert len(re.findall(r"^\s*server \S+:8930", text, flags=re.MULTILINE)) == 2
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $vwell_connection;" in text
    events = text[text.index("location = /api/events") :]
    assert "proxy_buffering off;" in events[: events.index("}")]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_example(tmp_path: Path) -> None:
    conf = (DEPLOY / "nginx-two-instances.conf").read_text(encoding="utf-8")
    # nginx -t resolves the upstreams and opens the certificates: stand-ins for both.
    conf = re.sub(r"10\.0\.0\.1[12]", "127.0.0.1", conf)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    conf = conf.replace("/etc/ssl/certs/pbx-api.example.com.pem", str(cert))
    conf = conf.replace("/etc/ssl/private/pbx-api.example.com.key", str(key))
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        f"events {{}}\nhttp {{\naccess_log off;\n{conf}\n}}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        ["nginx", "-t", "-c", str(main), "-p", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
