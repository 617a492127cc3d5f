"""Atomic file writes: what every checkpoint, export and result file in gmsdi is written through."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Writes `obj` as indented JSON to `path` through `atomic_write` (values JSON cannot hold, such as
    paths, as their `str`). Returns `path`, as a `Path`."""
    text = json.dumps(obj, indent=1, default=str)
    return atomic_write(path, lambda p: p.write_text(text))


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


REPO_ROOT = Path(__file__).resolve().parents[1]
# top-level folders of the repository: an absolute path through one of them is written from it on
REPO_FOLDERS = ("assets", "benchmarks", "data", "docs", "manifests", "notebooks", "runs", "scripts", "tests", "train")
_REPO_PREFIX = re.compile(r"(?<![\w.~])/(?:[^\s\"'=,:;/]+/)+?(?=(?:" + "|".join(REPO_FOLDERS) + r")/)")
_TEMP_PREFIX = re.compile(r"(?<![\w.~])/tmp/[^\s\"'=,:;/]+/")


def relative_paths(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, strings) with machine-specific paths made relative, in every string.

    A path into one of the repository's top-level folders (`REPO_FOLDERS`) becomes repo-relative
    ("/home/me/gmsdi/assets/x.safetensors" -> "assets/x.safetensors"), and a temporary folder is
    dropped ("/tmp/tmp.ab12/generation-0/stems/bass.wav" -> "generation-0/stems/bass.wav"), also
    inside longer strings such as a recorded command line. Other text is unchanged.
    """
    if isinstance(value, str):
        return _TEMP_PREFIX.sub("", _REPO_PREFIX.sub("", value))
    if isinstance(value, dict):
        return {k: relative_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_paths(v) for v in value]
    return value


def relativize_json_files(paths: list[Path]) -> list[Path]:
    """Rewrites each JSON file whose strings hold machine-specific paths (`relative_paths`); keeps its
    indentation (guessed from the file) and key order. Returns the files changed."""
    changed = []
    for path in paths:
        text = path.read_text()
        data = json.loads(text)
        new = relative_paths(data)
        if new == data:
            continue
        match = re.search(r"^( +)\S", text, re.M)
        indent = len(match.group(1)) if match else None
        out = json.dumps(new, indent=indent, ensure_ascii="\\u" in text, allow_nan=True)
        path.write_text(out + ("\n" if text.endswith("\n") else ""))
        changed.append(path)
    return changed


__all__ = ["REPO_ROOT", "atomic_write", "file_sha256", "relative_paths", "relativize_json_files", "remove_stale_temps",
           "write_json"]
