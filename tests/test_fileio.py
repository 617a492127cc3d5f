"""gmsdi.fileio.atomic_write, and the writers that go through it (training checkpoints, eval results)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from gmsdi.fileio import atomic_write, write_json


def _ordinary_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_atomic_write_writes_the_file_with_ordinary_permissions(tmp_path: Path) -> None:
    path = atomic_write(tmp_path / "a" / "b.txt", lambda p: p.write_text("hello"))
    assert path == tmp_path / "a" / "b.txt"
    assert path.read_text() == "hello"
    assert path.stat().st_mode & 0o777 == _ordinary_mode()  # not mkstemp's private 0o600
    assert [p.name for p in path.parent.iterdir()] == ["b.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("old")

    def half_then_fail(p: Path) -> None:
        p.write_text("torn")
        raise KeyboardInterrupt  # a kill mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


class _Unpicklable:
    def __reduce__(self) -> tuple:
        raise RuntimeError("cannot pickle this")


def test_training_checkpoints_and_eval_results_are_written_atomically(tmp_path: Path) -> None:
    from gmsdi.eval.records import write_result as _write
    from gmsdi.training import save_checkpoint

    save_checkpoint(tmp_path / "ckpt.pt", {"step": 3, "w": torch.ones(2)})
    assert torch.load(tmp_path / "ckpt.pt")["step"] == 3
    _write(tmp_path, "result", {"x": 1.5})
    assert json.loads((tmp_path / "result.json").read_text()) == {"x": 1.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "result.json"]
    assert (tmp_path / "ckpt.pt").stat().st_mode & 0o777 == _ordinary_mode()

    with pytest.raises(TypeError, match="not JSON-serialisable"):  # fails before anything is written
        _write(tmp_path, "result", {"x": object()})
    assert json.loads((tmp_path / "result.json").read_text()) == {"x": 1.5}
    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(tmp_path / "ckpt.pt", {"step": 4, "x": _Unpicklable()})  # fails mid-write
    assert torch.load(tmp_path / "ckpt.pt")["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "result.json"]


def test_the_next_checkpoint_save_removes_a_killed_saves_temp(tmp_path: Path) -> None:
    from gmsdi.fileio import remove_stale_temps
    from gmsdi.training import save_checkpoint

    (tmp_path / "ckpt.pt.k3j2h1.tmp").write_bytes(b"half a checkpoint")  # as a SIGKILL mid-save leaves it
    (tmp_path / "other.pt.x.tmp").write_bytes(b"not ours")
    save_checkpoint(tmp_path / "ckpt.pt", {"step": 5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "other.pt.x.tmp"]
    assert remove_stale_temps(tmp_path / "missing" / "x.pt") == []


def test_relative_paths_drop_machine_paths(tmp_path) -> None:
    import json

    from gmsdi.fileio import relative_paths, relativize_json_files

    data = {"checkpoint": "/home/me/gmsdi/assets/x.safetensors", "root": "/data/synthslakh",
            "command": "python -m gmsdi.eval x --files /tmp/tmp.ab12/gen-0/stems/bass.wav=bass",
            "rows": [{"file": "/srv/checkout/benchmarks/results/a.json"}], "n": 3, "note": "assets/ensemble.json"}
    out = relative_paths(data)
    assert out == {"checkpoint": "assets/x.safetensors", "root": "/data/synthslakh",  # outside any repo folder: kept
                   "command": "python -m gmsdi.eval x --files gen-0/stems/bass.wav=bass",
                   "rows": [{"file": "benchmarks/results/a.json"}], "n": 3, "note": "assets/ensemble.json"}
    f = tmp_path / "r.json"
    f.write_text(json.dumps(data, indent=1) + "\n")
    assert relativize_json_files([f]) == [f] and f.read_text() == json.dumps(out, indent=1) + "\n"
    assert relativize_json_files([f]) == []  # already clean: untouched


def test_write_json_makes_folders_and_writes_paths_as_text(tmp_path) -> None:
    target = write_json(tmp_path / "a" / "b.json", {"path": tmp_path / "x.wav", "n": [1, 2.5]})
    assert json.loads(target.read_text()) == {"path": str(tmp_path / "x.wav"), "n": [1, 2.5]}
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]  # no temporary file left
