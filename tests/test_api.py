"""The public API: ``import prunelib as pl`` gives the names a user needs, and the README's
example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import prunelib as pl

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_public_name_resolves_to_its_layer():
    from prunelib.core.methods import METHODS
    from prunelib.model.prune import prune_model
    from prunelib.model.structured import prune_structured
    from prunelib.storage.compact import load_compact, save_compact

    assert (pl.prune_model, pl.shrink, pl.save, pl.load, pl.METHODS) == (
        prune_model, prune_structured, save_compact, load_compact, METHODS)
    for name in pl.__all__:
        assert getattr(pl, name) is not None and name in dir(pl)
    with pytest.raises(AttributeError):
        pl.no_such_name


def test_importing_prunelib_loads_no_heavy_library():
    loaded = subprocess.run([sys.executable, "-c", "import sys, prunelib; "
                             "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def _readme_example() -> str:
    section = README.read_text().split("## The library", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_uses_only_public_names():
    used = set(re.findall(r"\bpl\.(\w+)", _readme_example()))
    assert used and used <= set(pl.__all__)


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_example(), "README.md", "exec"), namespace)
    sparsity, ppl = map(float, capsys.readouterr().out.split()[-2:])
    assert sparsity == pytest.approx(0.5, abs=1e-3) and 1 < ppl < 1e4
    reloaded = namespace["model"]
    assert pl.measure_sparsity(reloaded)["sparsity"] >= sparsity  # the zeros survive the file
    again = pl.perplexity(reloaded, namespace["tokens"], seqlen=256, max_windows=4, quiet=True)["ppl"]
    assert again == pytest.approx(ppl, rel=1e-2)  # float16 values in the file, float32 in memory
