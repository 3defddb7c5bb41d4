"""The package's boundaries: a private module or name (one leading underscore) is used only
inside the package that holds it, so other packages go through public names."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import samkit

SRC = Path(samkit.__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, importer: str, is_package: bool) -> Iterator[str]:
    """Every dotted name `source` imports: modules, and module.name for `from` imports."""
    package = importer if is_package else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def private_owner(dotted: str) -> str | None:
    """The package that holds the first private part of `dotted`, or None if all are public."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            owner = parts[:i]
            if not (SRC.joinpath(*owner) / "__init__.py").exists():
                owner = owner[:-1]  # a private name of a module belongs to the module's package
            return ".".join(owner)
    return None


def private_imports_from_outside(root: Path) -> list[tuple[str, str]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path)
        for dotted in imports(path.read_text(), importer, path.name == "__init__.py"):
            owner = private_owner(dotted)
            if owner is not None and not (importer + ".").startswith(owner + "."):
                found.append((importer, dotted))
    return found


def test_the_scan_resolves_relative_and_private_imports() -> None:
    source = "from ..io._records import read_json\nfrom .cache import _x\nimport samkit._lazy\n"
    got = list(imports(source, "samkit.serve.project", is_package=False))
    assert got[:2] == ["samkit.io._records", "samkit.io._records.read_json"]
    assert got[2:] == ["samkit.serve.cache", "samkit.serve.cache._x", "samkit._lazy"]
    assert private_owner("samkit.io._records.read_json") == "samkit.io"
    assert private_owner("samkit.runner._remove_stale_temporaries") == "samkit"
    assert private_owner("samkit.io.load_image") is None


def test_no_private_module_or_name_is_imported_from_outside_its_package() -> None:
    assert private_imports_from_outside(SRC / "samkit") == []


def test_command_modules_import_no_cycle() -> None:
    """`samkit.cli` is one module a command group; none imports the package that assembles
    them (`samkit.cli` itself), so no command module can form a cycle through it."""
    cli = SRC / "samkit" / "cli"
    commands = [p for p in sorted(cli.glob("*.py")) if not p.name.startswith("__")]
    assert len(commands) >= 8
    for path in commands:
        importer = module_name(path)
        back = [d for d in imports(path.read_text(), importer, False) if d == "samkit.cli"]
        assert back == [], f"{importer} imports samkit.cli"
