"""Committed notebooks are what the book renders: they must be complete and clean."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
NOTEBOOK_METADATA = {"kernelspec", "language_info", "prunebook"}
CELL_METADATA = {"tags"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_executed_and_clean(path):
    notebook = json.loads(path.read_text())
    assert set(notebook["metadata"]) <= NOTEBOOK_METADATA, f"stray notebook metadata: {set(notebook['metadata']) - NOTEBOOK_METADATA}"
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and any(cell["outputs"] for cell in code), "no outputs committed: the book would show none"
    assert [cell["execution_count"] for cell in code] == list(range(1, len(code) + 1)), "execution counts not in order"
    for cell in notebook["cells"]:
        assert set(cell.get("metadata", {})) <= CELL_METADATA, f"stray cell metadata: {cell['metadata']}"
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", "a committed cell shows an error"
            assert "Traceback" not in "".join(output.get("text", "")), "a committed cell prints a traceback"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_conventions(path):
    notebook = json.loads(path.read_text())
    cells = notebook["cells"]
    assert cells[0]["cell_type"] == "markdown" and "colab.research.google.com" in "".join(cells[0]["source"])
    parameters = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(parameters) == 1 and "PRUNEBOOK_PROFILE" in "".join(parameters[0]["source"])
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "## Summary" in text and "## Exercises" in text
