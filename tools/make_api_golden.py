"""The public surface of Meta's `segment_anything` 1.0, as a golden file for samkit's drop-in test.

Runs in the throwaway peer venv that has the official package (never a samkit dependency):

    make api-golden     # .venv-peer/bin/python tools/make_api_golden.py --out tests/goldens

For every module of the package it lists the public names the module itself defines (top-level
`def`, `class` and assignments, read from the source with `ast`, so imported helpers such as
`torch` or `Optional` are not counted) and, in `__init__.py` files, the names re-exported from
the package's own modules. Each callable gets its `inspect.signature`: parameter names, kinds
and defaults; each class also its public methods (`forward` included) and public class
attributes. tests/test_api_surface.py checks that every entry resolves in samkit at the same
dotted path (the word `segment_anything` replaced by `samkit`) with the same parameters.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

import segment_anything


def encode_default(value: Any) -> Any:
    """A parameter default as JSON: plain values as they are, sequences as lists, classes by
    name, anything else by repr."""
    if value is inspect.Parameter.empty:
        return {"empty": True}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        return {"seq": [encode_default(v) for v in value]}
    if inspect.isclass(value):
        return {"class": value.__name__}
    return {"repr": repr(value)}


def describe_signature(obj: Any) -> list[dict[str, Any]]:
    """[{name, kind, default}] of a callable's parameters."""
    return [
        {"name": p.name, "kind": p.kind.name, "default": encode_default(p.default)}
        for p in inspect.signature(obj).parameters.values()
    ]


def describe_class(cls: type) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for name, raw in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(raw, property):
            methods[name] = {"property": True}
        elif isinstance(raw, staticmethod | classmethod) or inspect.isfunction(raw):
            value = getattr(cls, name)
            methods[name] = {
                "kind": type(raw).__name__,
                "signature": describe_signature(value),
            }
        elif not callable(raw):
            attributes[name] = encode_default(raw)
    return {"type": "class", "methods": methods, "attributes": attributes}


def module_names(path: Path, is_package: bool) -> list[str]:
    """Public names a module's source defines, and for a package the names it re-exports
    from its own modules (relative imports)."""
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif is_package and isinstance(node, ast.ImportFrom) and node.level > 0:
            names += [a.asname or a.name for a in node.names]
    return sorted({n for n in names if not n.startswith("_")})


def describe_module(module_name: str) -> dict[str, Any]:
    module = importlib.import_module(module_name)
    assert module.__file__ is not None
    path = Path(module.__file__)
    entries: dict[str, Any] = {}
    for name in module_names(path, path.name == "__init__.py"):
        value = getattr(module, name)
        if inspect.isclass(value):
            entries[name] = describe_class(value)
        elif callable(value):
            entries[name] = {"type": "function", "signature": describe_signature(value)}
        elif isinstance(value, dict):
            entries[name] = {"type": "value", "value_type": "dict", "keys": sorted(value)}
        else:
            entries[name] = {"type": "value", "value_type": type(value).__name__}
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of official_api.json")
    args = parser.parse_args()
    modules = ["segment_anything"] + [
        m.name for m in pkgutil.walk_packages(segment_anything.__path__, "segment_anything.")
    ]
    surface = {
        "package": "segment_anything",
        "version": "1.0",
        "modules": {m: describe_module(m) for m in sorted(modules)},
    }
    out = args.out / "official_api.json"
    out.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n")
    count = sum(len(v) for v in surface["modules"].values())
    print(f"{len(modules)} modules, {count} public names -> {out}")


if __name__ == "__main__":
    main()
