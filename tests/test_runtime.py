import subprocess
import sys

import pytest
import torch

from gmsdi import runtime


def test_parse_threads():
    assert runtime.parse_threads(None) is None and runtime.parse_threads(" Auto ") is None
    assert runtime.parse_threads("3") == 3 and runtime.parse_threads(1) == 1
    for bad in (0, -1, "x", "1.5", 1.5):
        with pytest.raises(ValueError, match="whole number"):
            runtime.parse_threads(bad)


def test_auto_threads_leaves_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(runtime, "available_cores", lambda: 4)
    monkeypatch.setattr(runtime, "busy_cores", lambda: 0.0)
    assert runtime.auto_threads() == 4
    monkeypatch.setattr(runtime, "busy_cores", lambda: 3.0)
    assert runtime.auto_threads() == 1
    monkeypatch.setattr(runtime, "busy_cores", lambda: 9.0)
    assert runtime.auto_threads() == 1


def test_busy_cores_sees_a_busy_process():
    """A process spinning on a core shows up in the count (Linux run queue)."""
    if sys.platform != "linux":
        pytest.skip("reads /proc/loadavg")
    before = runtime.busy_cores(samples=9, interval=0.01)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        during = runtime.busy_cores(samples=9, interval=0.01)
    finally:
        hog.kill()
        hog.wait()
    assert during >= before + 1 or during >= 1


def test_set_threads():
    old = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
        n = runtime.set_threads("auto")
        assert 1 <= n <= runtime.available_cores() and torch.get_num_threads() == n
    finally:
        torch.set_num_threads(old)


def test_cli_and_app_take_threads(capsys):
    from gmsdi.app import AppConfig
    from gmsdi.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["generate", "bass", "--out", "/nonexistent/x", "--threads", "0"])
    assert exit_.value.code == 2
    assert "threads must be a whole number >= 1 or 'auto'" in capsys.readouterr().err
    assert AppConfig(threads="auto").threads is None and AppConfig(threads=2).threads == 2
    with pytest.raises(ValueError, match="whole number"):
        AppConfig(threads="many")
    import app

    assert app.get_parser().parse_args(["--threads", "1"]).threads == 1
    assert app.get_parser().parse_args([]).threads is None
