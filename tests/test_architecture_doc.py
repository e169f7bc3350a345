"""docs/architecture.md's folder tree matches the package: every name it shows exists,
and every module of the package is in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vwell_pbx"
DOC = ROOT / "docs" / "architecture.md"

# One entry of a tree drawn like `tree` does: four columns per level, then the name.
ENTRY = re.compile(r"^((?:[│ ] {3})*)[├└]── (\S+)")


def tree_block(text: str) -> list[str]:
    """The lines of the fenced block that draws ``src/vwell_pbx/``."""
    blocks = re.findall(r"^```\n(src/vwell_pbx/\n.*?)^```$", text, flags=re.M | re.S)
    assert len(blocks) == 1, "docs/architecture.md needs one tree of src/vwell_pbx/"
    lines: list[str] = blocks[0].splitlines()
    return lines


def tree_paths(lines: list[str]) -> list[str]:
    """The paths the tree shows, relative to the package (``api/errors.py``, ``web/``)."""
    folders: list[str] = []
    paths: list[str] = []
    for line in lines[1:]:
        match = ENTRY.match(line)
        assert match is not None, f"not a tree entry: {line!r}"
        depth = len(match.group(1)) // 4
        name = match.group(2)
        assert depth <= len(folders), f"an entry deeper than its folder: {line!r}"
        del folders[depth:]
        paths.append("".join(folders) + name)
        if name.endswith("/"):
            folders.append(name)
    return paths


def test_the_tree_reader_reads_nested_folders() -> None:
    lines = [
        "src/vwell_pbx/",
        "├── a.py        what a is",
        "├── pkg/        a package",
        "│   ├── x.py    x",
        "│   └── sub/",
        "│       └── y.py",
        "└── b.py",
    ]
    assert tree_paths(lines) == ["a.py", "pkg/", "pkg/x.py", "pkg/sub/", "pkg/sub/y.py", "b.py"]


def test_every_name_in_the_tree_exists() -> None:
    shown = tree_paths(tree_block(DOC.read_text("utf-8")))
    missing = [path for path in shown if not (PACKAGE / path).exists()]
    assert missing == [], f"docs/architecture.md shows what does not exist: {missing}"


def test_every_module_of_the_package_is_in_the_tree() -> None:
    shown = set(tree_paths(tree_block(DOC.read_text("utf-8"))))
    modules = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" or path.parent == PACKAGE
    ]
    absent = [module for module in modules if module not in shown]
    assert absent == [], f"docs/architecture.md's tree lacks: {absent}"
