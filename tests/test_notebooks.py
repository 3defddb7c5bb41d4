"""The notebooks run top to bottom offline with the bundled model, and are committed clean.

Each notebook runs in a fresh kernel (nbclient) in notebooks/, as a user opening it would;
SAMKIT_HOME points at an empty folder so no cached official weights change what runs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from samkit.testing.notebooks import execute, figures

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPECTED = {"predictor", "automatic_masks", "finetune", "applications"}


def test_the_guide_notebooks_exist() -> None:
    assert {p.stem for p in PATHS} >= EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_and_draws_its_figures(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path))
    nb = execute(path)  # raises CellExecutionError naming the failing cell
    named = [c for c in nb.cells if c.get("metadata", {}).get("samkit", {}).get("figure")]
    pngs = figures(nb)
    assert len(pngs) == len(named) and all(png.startswith(b"\x89PNG") for png in pngs.values())


def test_a_figure_cell_without_a_picture_is_an_error() -> None:
    cell = nbformat.v4.new_code_cell("print(1)", metadata={"samkit": {"figure": "x.png"}})
    cell.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    with pytest.raises(RuntimeError, match=r"'x\.png' produced no PNG"):
        figures(nbformat.v4.new_notebook(cells=[cell]))
