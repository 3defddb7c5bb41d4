"""Run a notebook top to bottom and take out its named figures (`tests/test_notebooks.py`,
`make figures` through `tools/render_figures.py`).

A code cell whose metadata has {"samkit": {"figure": "NAME.png"}} names a figure: its last PNG
output. Needs nbformat, nbclient and ipykernel (the dev extra).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any


def execute(path: Path, timeout: int = 600) -> Any:
    """Run every cell of the notebook at `path` in its own folder; raise on the first error
    (nbclient's CellExecutionError names the cell). Returns the executed NotebookNode.

    The kernel is the current Python's (`python3` as installed by ipykernel), with one torch
    thread unless OMP_NUM_THREADS says otherwise.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return nb


def figures(nb: Any) -> dict[str, bytes]:
    """The PNG bytes of every named figure cell of an executed notebook."""
    found: dict[str, bytes] = {}
    for cell in nb.cells:
        name = cell.get("metadata", {}).get("samkit", {}).get("figure")
        if not name:
            continue
        pngs = [
            o["data"]["image/png"]
            for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})
        ]
        if not pngs:
            raise RuntimeError(f"figure cell {name!r} produced no PNG output")
        found[name] = base64.b64decode(pngs[-1])
    return found
