"""The project's own files: the changelog has the current version, the license matches
pyproject, the pre-commit hooks run what CI runs, links between the documents resolve,
and no document or console file cites a document that is not in the repository."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from vwell_pbx import __version__

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL_DOCS = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md"]


def read(name: str) -> str:
    """A file of the repository, by its path from the root."""
    return (ROOT / name).read_text("utf-8")


def test_the_changelog_has_an_unreleased_section_and_one_for_this_version() -> None:
    changelog = read("CHANGELOG.md")
    headings = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert __version__ in headings
    dated = rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$"
    assert re.search(dated, changelog, flags=re.MULTILINE)
    # Keep a Changelog's kinds of change, nothing else.
    kinds = set(re.findall(r"^### (.+)$", changelog, flags=re.MULTILINE))
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_license_file_matches_pyproject() -> None:
    project = tomllib.loads(read("pyproject.toml"))["project"]
    assert project["license"] == "MIT"
    license_text = read("LICENSE")
    assert license_text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} vwell-pbx-srv contributors$", license_text, re.M)
    assert "WITHOUT WARRANTY OF ANY KIND" in license_text


def test_pre_commit_runs_the_checks_ci_runs_with_local_tools() -> None:
    config = read(".pre-commit-config.yaml")
    # Local hooks only: the machines have no network to fetch hook repositories.
    assert re.findall(r"^\s*-\s*repo:\s*(\S+)", config, flags=re.MULTILINE) == ["local"]
    entries = re.findall(r"^\s*entry:\s*(.+)$", config, flags=re.MULTILINE)
    languages = set(re.findall(r"^\s*language:\s*(\S+)", config, flags=re.MULTILINE))
    assert languages == {"system"}
    commands = [entry.split() for entry in entries]
    assert [c[:2] for c in commands] == [
        [".venv/bin/ruff", "check"],
        [".venv/bin/ruff", "format"],
        [".venv/bin/mypy", "src/vwell_pbx"],
    ]
    # The same tools CI runs (.ci/run), installed next to this interpreter.
    ci = read(".ci/run")
    for tool in ("ruff check", "ruff format --check", "mypy src/vwell_pbx"):
        assert f".venv/bin/{tool}" in ci
    for command in commands:
        assert Path(sys.executable).with_name(Path(command[0]).name).exists(), command[0]


def test_ci_lists_the_slowest_tests_and_the_fast_subset_is_marked() -> None:
    # The 15 slowest tests are in every CI log, so a test that grows slow is seen.
    assert "bash test.sh --durations=15" in read(".ci/run")
    pytest_options = tomllib.loads(read("pyproject.toml"))["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in pytest_options["addopts"].split()
    markers = [line.split(":")[0] for line in pytest_options["markers"]]
    assert "slow" in markers
    # The fast subset is documented where a contributor looks for it.
    for name in ("CONTRIBUTING.md", "README.md"):
        assert '-m "not slow"' in read(name), name


@pytest.mark.parametrize("name", TOP_LEVEL_DOCS)
def test_relative_links_point_to_files_that_exist(name: str) -> None:
    text = read(name)
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == [], f"{name} links to missing files: {missing}"


# Documents that are not in the repository: the product's own working papers, cited by
# name ("SPEC section 5", "STYLE.md", "rule 6 of STYLE"), by path ("shared/ami"), or as
# "the seed" (say "the original product's documentation" and point to tests/data/seed/).
OUTSIDE_CITATION = re.compile(
    r"SPEC(?: section|\.md| \d)|STYLE(?:\.md| rule|\b)|shared/|/work/"
    r"|[Tt]he seed(?:'s|\b(?! (?:of|for)\b))|\bSeed layout"
)
# Where a maintainer reads: the code, its tests, docs, configuration and benchmarks.
# Under tests/data only the READMEs are prose; the rest is recorded or copied data.
CITATION_ROOTS = [*TOP_LEVEL_DOCS, "src", "tests", "docs", "config", "bench", "deploy"]
TEXT_SUFFIXES = {".py", ".md", ".toml", ".js", ".ts", ".html", ".css", ".json", ".sh", ".txt"}
SKIPPED_PARTS = {"__pycache__", "test-artifacts"}


def readable_files(root: str) -> list[Path]:
    """The text files a maintainer reads under ``root`` (a file or a folder)."""
    start = ROOT / root
    if start.is_file():
        return [start]
    found = []
    for path in sorted(start.rglob("*")):
        relative = path.relative_to(ROOT)
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        if SKIPPED_PARTS.intersection(relative.parts) or relative.parts[0].endswith(".egg-info"):
            continue
        if relative.parts[:2] == ("tests", "data") and path.suffix != ".md":
            continue
        if path == Path(__file__).resolve():
            continue  # the pattern above names what it looks for
        found.append(path)
    return found


@pytest.mark.parametrize("root", CITATION_ROOTS)
def test_no_document_outside_the_repository_is_cited(root: str) -> None:
    files = readable_files(root)
    assert files, root
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if OUTSIDE_CITATION.search(line)
    ]
    assert found == [], f"{root} cites documents outside the repository:\n" + "\n".join(found)


def test_the_citation_check_sees_each_way_of_citing() -> None:
    cited = [
        "see SPEC section 5",
        "(SPEC 3, onEvent)",
        "as SPEC.md says",
        "rule 6 of STYLE",
        "STYLE.md",
        "from shared/ami",
        "/work/shared/ami/calls",
        "the seed's methods",
        "as in the seed.",
        '"""Seed layout."""',
    ]
    assert [line for line in cited if not OUTSIDE_CITATION.search(line)] == []
    fine = [
        "rule 6 of the codec",
        "the original product's documentation (tests/data/seed/)",
        "the seed of the simulated traffic",
        "rng = random.Random(seed)",
        "openapi-spec-validator",
        "list-style: none",
    ]
    assert [line for line in fine if OUTSIDE_CITATION.search(line)] == []


def test_the_readme_opens_with_a_russian_quick_start_beside_the_english_one() -> None:
    readme = read("README.md")
    sections = re.findall(r"^## (.+)$", readme, flags=re.MULTILINE)
    assert sections[:2] == ["Быстрый старт", "Quick start"]
    russian = readme.split("## Быстрый старт", 1)[1].split("## Quick start", 1)[0]
    # Start it, the first request, where the documentation is.
    assert "bash server.sh" in russian and "start server.bat" in russian
    assert "curl" in russian and '"action":"Ping"' in russian
    assert "docs/api.md" in russian and "/console" in russian
