"""The layers, as a test: no part of the package imports a part it must not know.

The package is a stack, innermost first::

    protocol -> ami -> pbx (and calls) -> events -> api -> web

and an inner layer never imports an outer one. Beside the stack sit parts that the
layers share or that wire them together. ``ALLOWED`` below is the whole rule: for each
part (a subpackage, or a top-level module of ``vwell_pbx``), the other parts it may
import. Every import counts, wherever it is written: at the top of a module, under
``if TYPE_CHECKING:``, inside a function, relative (``from ..ami import x``), through the
root package (``from vwell_pbx import web``), or by name (``importlib.import_module``
with a literal string), since each of them ties the inner part to the outer one.

Why the edges are what they are (CONTRIBUTING.md has the same table):

- ``vwell_pbx`` (the package's ``__init__``: the version) and ``errors`` (the exception
  root) import nothing of ours, so every part may import them.
- ``futures`` (asyncio helpers no layer owns) imports nothing of ours; every layer with
  asyncio may import it, the sans-IO parts do not need it.
- ``protocol`` is the sans-IO AMI codec; ``calls`` is the sans-IO call tracker, beside
  ``pbx``: it may use ``protocol``'s messages and ``pbx``'s number rules, nothing outer.
  Neither imports asyncio, sockets, threads or the clock (``SANS_IO``).
- ``config`` reads the configuration file into validated models. It may use the stack
  up to ``events`` to validate values with the very code that will use them (a
  webhook's event filter is compiled by ``events.filters``, ``[storage] url`` is parsed
  by ``storage.url``); only ``web`` (which
  assembles the server) and ``cli`` read it: the layers below are given plain values.
- ``storage`` is the database layer (SQL, migrations); ``users`` is the user directory
  on top of it; the ``api`` layer checks credentials against ``users``. ``directory``
  is the other kind of user directory, another application's database read with one
  query; ``web`` (which assembles the server), ``cli`` and ``config`` (which checks the
  query) use it, and the ``api`` layer sees it only through its ``CredentialDirectory``
  protocol.
- ``simulator`` is a separate, real AMI server: it shares only the codec, so that client
  and simulator frame AMI the same way. ``web`` embeds it for demo mode.
- ``cli`` is the command line: it may import everything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vwell_pbx"
ROOT_NAME = "vwell_pbx"

_SHARED = frozenset({ROOT_NAME, "errors"})
_PROTOCOL = _SHARED | {"protocol"}
_AMI = _PROTOCOL | {"futures", "ami"}
_PBX = _AMI | {"pbx", "calls"}
_EVENTS = _PBX | {"events"}
_API = _EVENTS | {"api", "users", "storage"}

#: part -> the other parts it may import (a part may always import its own modules).
ALLOWED: dict[str, frozenset[str]] = {
    ROOT_NAME: frozenset(),
    "errors": frozenset(),
    "futures": frozenset({ROOT_NAME, "errors"}),
    "protocol": _SHARED,
    "ami": _PROTOCOL | {"futures"},
    "pbx": _AMI,
    "calls": _PROTOCOL | {"pbx"},
    "events": _PBX,
    "api": _EVENTS | {"futures", "users", "storage"},
    "web": _API | {"config", "simulator", "directory"},
    "storage": _SHARED | {"futures"},
    "users": _SHARED | {"futures", "storage"},
    "directory": _SHARED | {"storage"},
    "config": _EVENTS | {"storage", "directory"},
    "simulator": frozenset({"protocol"}),
    "cli": _API | {"web", "config", "simulator", "directory"},
}

#: Standard modules the sans-IO parts never import: no event loop, socket, thread or clock.
SANS_IO = {
    "protocol": frozenset({"asyncio", "socket", "selectors", "ssl", "threading", "time"}),
    "calls": frozenset({"asyncio", "socket", "selectors", "ssl", "threading", "time"}),
}


@dataclass(frozen=True)
class Import:
    """One import statement (or ``import_module`` call) found in a module."""

    module: str  # dotted name of the module that imports
    target: str  # dotted name of what it imports
    line: int


def module_name(path: Path, package_dir: Path = PACKAGE) -> str:
    """``vwell_pbx.api.errors`` for ``src/vwell_pbx/api/errors.py`` (packages by their
    ``__init__``)."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(dotted: str) -> str | None:
    """The part a dotted name belongs to (``api`` for ``vwell_pbx.api.errors``), or
    ``None`` for a name outside the package."""
    parts = dotted.split(".")
    if parts[0] != ROOT_NAME:
        return None
    return parts[1] if len(parts) > 1 else ROOT_NAME


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name a relative ``from`` import refers to."""
    base = module.split(".")
    if not is_package:
        base.pop()  # a module's relative imports start from its package
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def imports_in(source: str, module: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import in ``source`` (the text of ``module``), wherever it is written."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = (
                _absolute(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            yield Import(module, base, node.lineno)
            if base == ROOT_NAME:
                # ``from vwell_pbx import web`` imports the part ``web``; other names
                # (``__version__``) are attributes of the root and count as the root.
                for alias in node.names:
                    yield Import(module, f"{base}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Call) and _imports_by_name(node):
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                yield Import(module, argument.value, node.lineno)


def _imports_by_name(call: ast.Call) -> bool:
    """``importlib.import_module(...)``, ``import_module(...)`` or ``__import__(...)``."""
    function = call.func
    name = (
        function.attr
        if isinstance(function, ast.Attribute)
        else function.id
        if isinstance(function, ast.Name)
        else ""
    )
    return name in {"import_module", "__import__"} and bool(call.args)


def package_parts(package_dir: Path = PACKAGE) -> set[str]:
    """The parts that exist: each subpackage and each top-level module (and the root)."""
    parts = {ROOT_NAME}
    for child in package_dir.iterdir():
        if child.is_dir() and (child / "__init__.py").exists():
            parts.add(child.name)
        elif child.suffix == ".py" and child.name != "__init__.py":
            parts.add(child.stem)
    return parts


def violations(package_dir: Path = PACKAGE) -> list[str]:
    """Every import that breaks ``ALLOWED`` or ``SANS_IO``, as readable lines."""
    existing = package_parts(package_dir)
    found: list[str] = []
    for path in sorted(package_dir.rglob("*.py")):
        module = module_name(path, package_dir)
        part = part_of(module)
        assert part is not None
        where = f"{path.relative_to(package_dir.parent)}"
        allowed = ALLOWED.get(part)
        if allowed is None:
            found.append(f"{where}: {part!r} is a new part; give it a row in ALLOWED")
            continue
        source = path.read_text("utf-8")
        for item in imports_in(source, module, is_package=path.name == "__init__.py"):
            target = part_of(item.target)
            if target is None:
                top = item.target.split(".")[0]
                if top in SANS_IO.get(part, ()):
                    found.append(f"{where}:{item.line}: sans-IO {part!r} imports {top!r}")
                continue
            if target == part or target in allowed:
                continue
            if target not in existing and target not in ALLOWED:
                continue  # an attribute of the root, such as ``__version__``
            found.append(f"{where}:{item.line}: {part!r} imports {item.target!r}")
    return found


def test_no_part_of_the_package_imports_one_it_must_not_know() -> None:
    assert violations() == []


def test_every_part_of_the_package_has_a_row() -> None:
    # A new subpackage needs a decision about where it sits, written down here.
    assert package_parts() <= set(ALLOWED)
    # And the table names only parts that exist or are expected.
    every_named = set(ALLOWED).union(*ALLOWED.values())
    assert every_named <= package_parts() | {"calls", "storage"}


def test_the_table_is_a_stack_inner_layers_never_import_outer_ones() -> None:
    stack = ["protocol", "ami", "pbx", "events", "api", "web"]
    for depth, layer in enumerate(stack):
        assert set(stack[depth + 1 :]).isdisjoint(ALLOWED[layer]), layer
        assert set(stack[:depth]) <= ALLOWED[layer], layer
    # Only the assembly (web, cli) reads the configuration or embeds the simulator.
    assert {p for p, allowed in ALLOWED.items() if "config" in allowed} == {"web", "cli"}
    assert {p for p, allowed in ALLOWED.items() if "simulator" in allowed} == {"web", "cli"}


# The checker itself, on made-up packages: each way of importing is seen.


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    package_dir = tmp_path / ROOT_NAME
    for name, text in {"__init__.py": "", **files}.items():
        path = package_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != package_dir:
            (path.parent / "__init__.py").touch()
        path.write_text(text)
    return package_dir


INNER = "ami/client.py"

SNEAKY_IMPORTS = {
    "plain": "import vwell_pbx.web.app\n",
    "from": "from vwell_pbx.api.errors import ApiError\n",
    "type checking": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from vwell_pbx.events.bus import EventBus\n"
    ),
    "inside a function": "def later():\n    from vwell_pbx.web import server\n",
    "inside a method": (
        "class A:\n    def m(self):\n        import vwell_pbx.api.service as service\n"
    ),
    "relative": "from ..api import errors\n",
    "relative module": "from ..events.bus import EventBus\n",
    "through the root": "from vwell_pbx import web\n",
    "import_module": "import importlib\nimportlib.import_module('vwell_pbx.web.server')\n",
    "__import__": "__import__('vwell_pbx.api')\n",
    "config": "from vwell_pbx.config import AppConfig\n",
    "simulator": "from vwell_pbx.simulator import PbxSimulator\n",
}


@pytest.mark.parametrize("way", SNEAKY_IMPORTS)
def test_the_checker_sees_every_way_an_inner_part_imports_an_outer_one(
    tmp_path: Path, way: str
) -> None:
    package_dir = _package(tmp_path, {INNER: SNEAKY_IMPORTS[way]})
    found = violations(package_dir)
    assert len(found) == 1, found
    assert found[0].startswith(f"{ROOT_NAME}/{INNER}:")
    assert "'ami' imports" in found[0]


@pytest.mark.parametrize(
    "text",
    [
        "from vwell_pbx.protocol import Message\n",
        "from ..protocol.codec import AmiParser\n",
        "from . import stream\nfrom .stream import x\n",
        "from vwell_pbx import __version__\nfrom vwell_pbx.errors import VwellError\n",
        "import asyncio\nfrom vwell_pbx.futures import fail_quietly\n",
        "import importlib\nimportlib.import_module(name)\n",
    ],
)
def test_the_checker_lets_allowed_imports_pass(tmp_path: Path, text: str) -> None:
    assert violations(_package(tmp_path, {INNER: text})) == []


def test_the_checker_keeps_the_sans_io_parts_free_of_asyncio_and_the_clock(
    tmp_path: Path,
) -> None:
    package_dir = _package(
        tmp_path,
        {
            "protocol/codec.py": "import asyncio\n",
            "calls/tracker.py": "def now():\n    import time\n    return time.time()\n",
        },
    )
    assert violations(package_dir) == [
        "vwell_pbx/calls/tracker.py:2: sans-IO 'calls' imports 'time'",
        "vwell_pbx/protocol/codec.py:1: sans-IO 'protocol' imports 'asyncio'",
    ]


def test_the_checker_asks_for_a_row_for_a_new_part(tmp_path: Path) -> None:
    package_dir = _package(tmp_path, {"reports/__init__.py": "", "reports/daily.py": ""})
    assert violations(package_dir) == [
        "vwell_pbx/reports/__init__.py: 'reports' is a new part; give it a row in ALLOWED",
        "vwell_pbx/reports/daily.py: 'reports' is a new part; give it a row in ALLOWED",
    ]
