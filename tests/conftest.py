"""Shared test fixtures."""

import pytest
import torch

from gmsdi.pipeline import settings as pipeline_settings


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run faster on one intra-op thread, and stay fast when other jobs share the CPU.

    Use per module with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def short_clips(monkeypatch):
    """The tests' tiny models take clips of a fraction of a second; `test_short_clip_is_refused`
    restores the real minimum."""
    monkeypatch.setattr(pipeline_settings, "MIN_INPUT_SECONDS", 0.0)
