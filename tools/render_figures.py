"""Execute the notebooks and write their key figures to docs/img/ (`make figures`).

A code cell whose metadata has {"samkit": {"figure": "NAME.png"}} names a figure: its last PNG
output is written to docs/img/NAME.png. The notebooks in the repository stay without outputs.

python tools/render_figures.py [notebooks/predictor.ipynb ...] [--out docs/img]
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def execute(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell of the notebook at `path` in its own folder; raise on the first error.

    The kernel is the current Python's (`python3` as installed by ipykernel), with one torch
    thread unless OMP_NUM_THREADS says otherwise.
    """
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


def figures(nb: nbformat.NotebookNode) -> dict[str, bytes]:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        start = time.perf_counter()
        for name, png in figures(execute(path.resolve())).items():
            (args.out / name).write_bytes(png)
            print(f"  {args.out / name}")
        print(f"{path.name}: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
