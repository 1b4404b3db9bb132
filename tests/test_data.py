import random

import pytest
import torch

from prunelib import data
from prunelib.errors import DataNotFoundError

# sha256 published in shared/data/README.md for the canonical wiki.test.raw
WIKI_TEST_SHA256 = "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08"


class CharTokenizer:
    """One token per character: lengths are easy to reason about."""

    def __call__(self, text, return_tensors=None, verbose=True):
        class Out:
            input_ids = torch.tensor([[ord(c) % 1000 for c in text]])

        return Out()


def test_wikitext_rows_follow_hf_rules():
    raw = " \n = Title = \n \n Some text . \n"
    assert data.wikitext2_rows(raw) == ["", " = Title = \n", "", " Some text . \n"]


def test_local_wikitext_is_the_canonical_file():
    text, source = data.wikitext2("test")
    assert source["sha256"] == WIKI_TEST_SHA256
    assert source["path"] == "wikitext-2-raw/wiki.test.raw"  # relative to the data root: no machine path
    rows = data.wikitext2_rows(open(data.local_file(source["path"]), encoding="utf-8").read())
    assert len(rows) == 4358 and sum(map(bool, rows)) == 2891  # the HF dataset's row counts
    assert text.startswith("\n\n = Robert Boulter = \n")  # row 0 is the file's blank first line


def reference_sampler(documents, tokenizer, nsamples, seqlen, seed):
    """The SparseGPT/Wanda repositories' loop, on the global ``random`` module."""
    random.seed(seed)
    out = []
    for _ in range(nsamples):
        while True:
            i = random.randint(0, len(documents) - 1)
            ids = tokenizer(documents[i], return_tensors="pt").input_ids
            if ids.shape[1] > seqlen:
                break
        start = random.randint(0, ids.shape[1] - seqlen - 1)
        out.append(ids[:, start : start + seqlen])
    return torch.cat(out)


def test_sampler_matches_reference_loop_and_is_seeded():
    documents = ["short"] * 5 + ["x" * 50 + "".join(chr(97 + i % 26) for i in range(200)) for _ in range(3)] + ["abc" * 40]
    tok = CharTokenizer()
    ours = data.sample_windows(documents, tok, nsamples=6, seqlen=64, seed=7)
    assert ours.shape == (6, 64)
    assert torch.equal(ours, reference_sampler(documents, tok, 6, 64, 7))
    assert torch.equal(ours, data.sample_windows(documents, tok, nsamples=6, seqlen=64, seed=7))
    assert not torch.equal(ours, data.sample_windows(documents, tok, nsamples=6, seqlen=64, seed=8))


def test_sampler_refuses_when_no_document_is_long_enough():
    with pytest.raises(data.PrunelibError, match="longer than"):
        data.sample_windows(["ab", "cd"], CharTokenizer(), nsamples=1, seqlen=10)


def test_c4_local_sample():
    documents, source = data.c4_documents()
    assert len(documents) == 1000 and source["path"].endswith("c4-sample.00000-of-00001.json.gz")


def test_data_dir_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    assert data.data_dir() == tmp_path
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(DataNotFoundError, match=data.ENV_VAR):
        data.data_dir()


def test_offline_without_local_copy_gives_one_clear_error(monkeypatch, tmp_path):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))  # empty directory: nothing local
    monkeypatch.setattr(datasets, "load_dataset", offline)
    for load in (lambda: data.wikitext2("test"), data.c4_documents):
        with pytest.raises(DataNotFoundError, match=f"{data.ENV_VAR}.*shared/data/README.md"):
            load()


def test_the_default_data_directory_is_found_from_any_working_directory(tmp_path, monkeypatch):
    from prunelib.data import REPO_ROOT, data_dir

    shared = REPO_ROOT.parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("this checkout has no ../shared/data")
    monkeypatch.delenv("PRUNELIB_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert (REPO_ROOT / "pyproject.toml").is_file() and data_dir() == shared
