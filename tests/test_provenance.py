"""Provenance never names a machine's absolute paths: not in what the code writes, not in what is committed."""

import json
from pathlib import Path

import pytest

from prunelib.model.provenance import absolute_paths, git_commit, model_record, versions

ROOT = Path(__file__).resolve().parent.parent


def test_absolute_paths_are_found_and_relative_ones_are_not():
    text = ("{'path': '/work/shared/data/c4/x.json.gz'} 12 tokens/s, 1/2, https://example.org/a/b, "
            "./rel/p, c4/c4-sample.json.gz, saved to /home/me/model and C:\\Users\\me")
    assert absolute_paths(text) == ["/work/shared/data/c4/x.json.gz", "/home/me/model", "C:\\Users\\me"]


def test_a_local_model_is_named_by_its_folder(tmp_path):
    from tests.tiny_models import tiny_model

    model = tiny_model("llama", 0)
    model.save_pretrained(tmp_path / "my-pruned-model")
    record = model_record(str(tmp_path / "my-pruned-model"), model)
    assert record["source"] == "local: my-pruned-model" and record["name"] == "my-pruned-model"
    assert not absolute_paths(json.dumps(record))


def test_versions_name_the_commit_when_run_from_git():
    commit = git_commit()
    if not (ROOT / ".git").exists():
        assert commit is None
        return
    assert len(commit.removesuffix("+dirty")) == 40 and versions()["commit"] == commit


def _committed_texts():
    for path in sorted((ROOT / "results").rglob("*")):
        if path.is_file() and path.suffix in (".json", ".md", ".txt", ".csv"):
            yield path, path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        outputs = [output for cell in notebook["cells"] for output in cell.get("outputs", [])]
        yield path, json.dumps(outputs)


@pytest.mark.parametrize("path,text", list(_committed_texts()), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_committed_results_and_outputs_hold_no_absolute_path(path, text):
    assert absolute_paths(text) == [], f"{path.relative_to(ROOT)}: run scripts/clean_paths.py"
