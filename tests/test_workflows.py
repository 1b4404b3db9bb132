"""The published workflows (.github/workflows): they parse, and every command they run exists here.

A machine without a GPU cannot run the gpu workflow; it can check that its YAML is valid, that
its make targets resolve (``make -n``), and that the profile and the nbval flag it names exist.
"""

import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def steps(path: Path) -> list[dict]:
    workflow = yaml.safe_load(path.read_text())
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_both_workflows_exist():
    assert {path.stem for path in WORKFLOWS} >= {"book", "gpu"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_a_workflow_parses_and_its_make_targets_resolve(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow["name"] and workflow["jobs"]
    commands = [step["run"] for step in steps(path) if "run" in step]
    assert commands, f"{path.name} runs nothing"
    for command in commands:
        words = shlex.split(command.split("=", 1)[1] if command.startswith("PRUNEBOOK_PROFILE=") else command)
        if words[0] == "make":
            result = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
            assert result.returncode == 0, f"{command}: {result.stderr}"


def test_the_book_is_deployed_from_the_directory_make_book_writes():
    upload = [step for step in steps(ROOT / ".github/workflows/book.yml") if "upload-pages-artifact" in step.get("uses", "")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    assert "jupyter-book build" in (ROOT / "Makefile").read_text()


def test_the_gpu_workflow_names_a_profile_and_a_flag_that_exist(pytestconfig):
    from prunelib.experiments.profiles import PROFILES

    commands = [step["run"] for step in steps(ROOT / ".github/workflows/gpu.yml") if "run" in step]
    nbval = [command for command in commands if "--nbval-lax" in command]
    assert nbval and "PRUNEBOOK_PROFILE=gpu" in nbval[0] and "gpu" in PROFILES
    assert pytestconfig.pluginmanager.hasplugin("nbval")
