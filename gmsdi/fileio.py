"""Atomic file writes: what every checkpoint, export and result file in gmsdi is written through."""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Runs `write(tmp)` on a unique temporary file beside `path`, syncs it, then renames it to `path`.

    An exception at any point (KeyboardInterrupt included) leaves the previous `path` (if any) whole
    and no temporary file behind; a process killed by a signal leaves `path` whole too, but may leave
    its temporary file (`<name>.<random>.tmp`; `remove_stale_temps` clears them). The file gets an
    ordinary file's permissions (0o666 less the umask), not the private ones of `tempfile.mkstemp`.
    Parent folders are created.

    Args:
        path: the destination.
        write: writes the whole file to the path it is given (e.g. `lambda p: torch.save(state, p)`).

    Returns:
        `path`, as a `Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Removes the temporary files a killed `atomic_write(path, ...)` left beside `path`; returns them.

    Only for a path that one process writes (e.g. a training run's checkpoint): another writer's
    temporary file would be removed under it.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f"{glob.escape(path.name)}.*.tmp")) if path.parent.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale




def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["atomic_write", "file_sha256", "remove_stale_temps"]
