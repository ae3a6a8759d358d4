"""Writing files so that a reader never sees half of one, and hashing them.

The one place for both (standard library only, so every layer may import it): a file is
written to a temporary name in its target folder and renamed into place, so it appears
complete or not at all, and an error leaves what was there before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 minus the umask):
    ``mkstemp`` creates 0o600 files, which the rest of a lab could not read."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def stage_file(destination: Path, write: Callable[[str], object]) -> str:
    """A temporary file beside ``destination``, filled by ``write(temporary_path)``.

    The temporary name keeps the destination's extensions (``.nii.gz`` stays last), so
    writers that choose a format by extension (nibabel, matplotlib, torch) work. It is
    removed on error. Rename it into place with ``os.replace``, or use `atomic_write`.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    name = destination.name
    stem, dot, extensions = name.partition(".")
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{stem}.",
                               suffix=f".tmp{dot}{extensions}")
    os.close(fd)
    try:
        os.chmod(tmp, _file_mode())
        write(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(destination: Path, write: Callable[[str], object]) -> Path:
    """Write ``destination`` through ``write(temporary_path)`` and a rename."""
    destination = Path(destination)
    os.replace(stage_file(destination, write), destination)
    return destination


def atomic_write_bytes(destination: Path, data: bytes) -> Path:
    return atomic_write(destination, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(destination: Path, text: str) -> Path:
    return atomic_write(destination, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_copy(source: Path, destination: Path) -> Path:
    return atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp))


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
