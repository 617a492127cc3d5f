"""benchmarks/silence_floor.py: the low-σ floor measure reads 1 for the identity and 0 for a perfect denoiser."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from script_loader import load_script

from gmsdi.models import build_model
from gmsdi.text import HashTextEncoder

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_untrained_model_leaves_the_noise_and_a_zero_denoiser_removes_it() -> None:
    floor = load_script("silence_floor", ROOT / "benchmarks/silence_floor.py")
    model = build_model("tiny", seed=0).eval()  # zero-initialised output: D = c_skip·x ≈ x at small σ
    out = floor.silence_floor(model, HashTextEncoder(model.model_config.text_dim), seconds=0.5, steps=4)
    assert out["denoise_rms_over_sigma"]["0.003"] == pytest.approx(1.0, abs=0.02)
    assert all(-25 < v < -15 for v in out["sampled_dbfs"])  # σ = 0.1 noise kept: −20 dBFS

    class Zero(torch.nn.Module):
        model_config, config = model.model_config, model.config

        def forward(self, x, sigma, cond):
            return torch.zeros_like(x)

    out = floor.silence_floor(Zero(), HashTextEncoder(model.model_config.text_dim), seconds=0.5, steps=4)
    assert set(out["denoise_rms_over_sigma"].values()) == {0.0} and max(out["sampled_dbfs"]) < -200
