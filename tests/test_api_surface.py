"""Every public name of Meta's `segment_anything` 1.0 resolves in samkit at the same dotted path.

tests/goldens/official_api.json lists the official package's public names with their
signatures (made by tools/make_api_golden.py in the peer venv). A user's code must run with the
word `segment_anything` replaced by `samkit`: each official parameter must exist in samkit at
the same position with the same name, kind and default. samkit may add parameters only where
no official call can reach them: keyword-only, with a default.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
from pathlib import Path
from typing import Any

import pytest

GOLDEN = json.loads((Path(__file__).parent / "goldens" / "official_api.json").read_text())
ENTRIES = [
    (module, name, entry)
    for module, names in GOLDEN["modules"].items()
    for name, entry in names.items()
]


def samkit_path(module: str) -> str:
    return "samkit" + module.removeprefix("segment_anything")


def same_default(official: Any, ours: Any) -> bool:
    """Whether samkit's default `ours` equals the golden's encoded `official`."""
    if isinstance(official, dict):
        if "empty" in official:
            return ours is inspect.Parameter.empty
        if "class" in official:
            return inspect.isclass(ours) and ours.__name__ == official["class"]
        if "seq" in official:
            return (
                isinstance(ours, tuple | list)
                and len(ours) == len(official["seq"])
                and all(same_default(o, v) for o, v in zip(official["seq"], ours, strict=True))
            )
        return repr(ours) == official["repr"]
    if isinstance(official, float) and isinstance(ours, int | float):
        return math.isclose(official, ours, rel_tol=1e-12)
    return type(official) is type(ours) and official == ours


def signature_problems(official: list[dict[str, Any]], fn: Any) -> list[str]:
    ours = list(inspect.signature(fn).parameters.values())
    problems = []
    for i, want in enumerate(official):
        got = ours[i] if i < len(ours) else None
        if got is None or got.name != want["name"] or got.kind.name != want["kind"]:
            problems.append(f"parameter {i} should be {want['name']} ({want['kind']}); got {got}")
        elif not same_default(want["default"], got.default):
            problems.append(
                f"{want['name']} default should be {want['default']}; got {got.default!r}"
            )
    for extra in ours[len(official) :]:
        reachable = extra.kind is not inspect.Parameter.VAR_KEYWORD and (
            extra.kind is not inspect.Parameter.KEYWORD_ONLY
            or extra.default is inspect.Parameter.empty
        )
        if reachable:
            problems.append(f"extra parameter {extra} must be keyword-only with a default")
    return problems


def entry_problems(value: Any, entry: dict[str, Any]) -> list[str]:
    if entry["type"] == "function":
        return signature_problems(entry["signature"], value)
    if entry["type"] == "value":
        if entry["value_type"] == "dict":
            missing = set(entry["keys"]) - set(value)
            return [f"missing keys {sorted(missing)}"] if missing else []
        return [] if type(value).__name__ == entry["value_type"] else [f"type {type(value)}"]
    if not inspect.isclass(value):
        return [f"should be a class; got {value!r}"]
    problems = []
    for method, spec in entry["methods"].items():
        attr = inspect.getattr_static(value, method, None)
        if attr is None:
            problems.append(f"no method {method}")
        elif spec.get("property"):
            if not isinstance(attr, property):
                problems.append(f"{method} should be a property")
        else:
            problems += [
                f"{method}: {p}"
                for p in signature_problems(spec["signature"], getattr(value, method))
            ]
    for attribute, default in entry["attributes"].items():
        if not same_default(default, getattr(value, attribute, inspect.Parameter.empty)):
            problems.append(f"class attribute {attribute} should be {default}")
    return problems


@pytest.mark.parametrize(
    ("module", "name", "entry"), ENTRIES, ids=[f"{m}.{n}" for m, n, _ in ENTRIES]
)
def test_official_name_resolves_in_samkit_with_the_same_signature(
    module: str, name: str, entry: dict[str, Any]
) -> None:
    ours = importlib.import_module(samkit_path(module))
    assert hasattr(ours, name), f"{samkit_path(module)} has no {name}"
    problems = entry_problems(getattr(ours, name), entry)
    assert not problems, f"{samkit_path(module)}.{name}: " + "; ".join(problems)


def test_golden_covers_the_official_package() -> None:
    """The golden lists every module and the names users import most."""
    modules = GOLDEN["modules"]
    assert len(modules) == 15
    assert "SamOnnxModel" in modules["segment_anything.utils.onnx"]
    assert "MaskData" in modules["segment_anything.utils.amg"]
    assert "add_decomposed_rel_pos" in modules["segment_anything.modeling.image_encoder"]


def test_signature_check_rejects_a_changed_default_and_a_reachable_extra() -> None:
    """The comparison itself can fail."""
    official = [{"name": "x", "kind": "POSITIONAL_OR_KEYWORD", "default": 0.5}]

    def changed(x: float = 0.25) -> None: ...

    def extra(x: float = 0.5, y: int = 1) -> None: ...

    def fine(x: float = 0.5, *, y: int = 1) -> None: ...

    assert signature_problems(official, changed)
    assert signature_problems(official, extra)
    assert not signature_problems(official, fine)
