"""Execute notebooks in place under a profile, and leave them clean for git.

    PRUNEBOOK_PROFILE=cpu python scripts/execute_notebooks.py notebooks/*.ipynb

Every code cell runs top to bottom in a fresh kernel (cwd = the notebook's folder); the saved
notebook keeps outputs and execution counts but no per-run metadata (timings, widget state),
so diffs show only what changed. Prints how long each notebook took.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info", "prunebook")
KEEP_CELL_METADATA = ("tags",)


# tqdm.auto, imported by transformers, warns on import when ipywidgets is absent; it says nothing
# about the computation, so the saved notebook drops that one message.
NOISE = "TqdmWarning: IProgress not found"


def _is_noise(output) -> bool:
    return output.get("output_type") == "stream" and output.get("name") == "stderr" and NOISE in "".join(output["text"])


def clean(notebook: nbformat.NotebookNode) -> None:
    notebook.metadata = {k: v for k, v in notebook.metadata.items() if k in KEEP_NOTEBOOK_METADATA}
    for cell in notebook.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA}
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if not _is_noise(output)]


def execute(path: Path) -> float:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    clean(notebook)
    nbformat.write(notebook, path)
    return seconds


def main(paths: list[str]) -> None:
    if paths and paths[0] == "--clean-only":  # re-apply the cleaning rules without executing
        for name in paths[1:]:
            notebook = nbformat.read(name, as_version=4)
            clean(notebook)
            nbformat.write(notebook, name)
        return
    profile = os.environ.get("PRUNEBOOK_PROFILE", "cpu")
    for name in paths:
        seconds = execute(Path(name))
        print(f"{name}: {seconds:.0f} s in profile {profile}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
