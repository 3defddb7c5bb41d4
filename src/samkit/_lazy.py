"""Lazy package attributes (PEP 562), so that importing a package runs none of its heavy imports.

`import samkit.export.runtime` must work where torch is not installed: the packages on its
path (`samkit`, `samkit.io`, `samkit.export`) name their public attributes here and import
the module holding one only when it is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose attribute NAME lives in the module
    `exports[NAME]` (relative to the package, e.g. ".predictor")."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
