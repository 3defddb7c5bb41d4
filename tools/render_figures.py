"""Execute the notebooks and write their key figures to docs/img/ (`make figures`).

A code cell whose metadata has {"samkit": {"figure": "NAME.png"}} names a figure: its last PNG
output is written to docs/img/NAME.png. The notebooks in the repository stay without outputs.

python tools/render_figures.py [notebooks/predictor.ipynb ...] [--out docs/img]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from samkit.testing.notebooks import execute, figures

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


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
