"""One version, written once (``vwell_pbx.__version__``), reported everywhere: the
installed package's metadata, ``vwell-pbx --version``, ``/health`` and ``/openapi.json``
(CHANGELOG.md's section for it: tests/test_project_files.py)."""

from __future__ import annotations

import asyncio
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import aiohttp
import pytest

from vwell_pbx import __version__
from vwell_pbx.web.server import RunningServer

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc|\.dev)\d+)?", __version__)


def test_pyproject_reads_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert "version" not in project["project"], "the version is written in one place only"
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "vwell_pbx.__version__"}
    # The installed metadata was built from it (test.sh reinstalls when pyproject changes).
    assert metadata.version("vwell-pbx-srv") == __version__


@pytest.mark.slow  # a process of its own
async def test_the_command_line_reports_it() -> None:
    script = Path(sys.executable).with_name("vwell-pbx")
    process = await asyncio.create_subprocess_exec(
        script, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr
    assert stdout.decode().strip() == f"vwell-pbx {__version__}"


async def test_health_and_openapi_report_it(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.http_url + "/health") as response:
            assert (await response.json())["version"] == __version__
        async with session.get(server.http_url + "/openapi.json") as response:
            assert (await response.json())["info"]["version"] == __version__
