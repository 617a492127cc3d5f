"""benchmarks/renoise.py: the per-bin error split reads 1 for the identity and 0 for a perfect denoiser; the gap
floor tells a clean tone from noise; the script runs end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from script_loader import load_script

from gmsdi.models import build_model
from gmsdi.models.spectral import Stft
from gmsdi.text import HashTextEncoder

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _tones(n: int = 2, samples: int = 8192) -> torch.Tensor:
    t = torch.arange(samples) / 16000
    return torch.stack([0.1 * torch.sin(2 * math.pi * 437.5 * (k + 1) * t) for k in range(n)])[:, None]


def test_error_split_reads_one_for_the_identity_and_zero_for_the_oracle() -> None:
    renoise = load_script("renoise", ROOT / "benchmarks/renoise.py")
    model = build_model("tiny", seed=0).eval()
    clean, cond, stft = _tones(), HashTextEncoder(model.model_config.text_dim).encode(["a", "b"]), Stft(1024, 256)

    class Identity(torch.nn.Module):
        def forward(self, x, sigma, cond):
            return x

    class Oracle(torch.nn.Module):
        def forward(self, x, sigma, cond):
            return clean.clone()

    same = renoise.denoise_errors(Identity(), clean, cond, stft, seed=0)
    assert all(v["gap"] == pytest.approx(1, abs=1e-3) and v["signal"] == pytest.approx(1, abs=1e-3)
               for v in same.values())
    assert all(v["gap_share"] > 0.9 for v in same.values())  # a pure tone: almost every bin is a gap
    perfect = renoise.denoise_errors(Oracle(), clean, cond, stft, seed=0)
    assert all(v["gap"] == 0 and v["signal"] == 0 for v in perfect.values())


def test_gap_floor_is_low_for_the_stem_itself_and_near_zero_db_for_white_noise() -> None:
    renoise = load_script("renoise", ROOT / "benchmarks/renoise.py")
    clean, stft = _tones()[:, 0], Stft(1024, 256)
    white = 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    assert max(renoise.gap_floor_db(clean, clean, stft)) < -45  # the window's leakage and the edges
    assert min(renoise.gap_floor_db(white, clean, stft)) > -1  # nearly all of a tone's bins are gaps


def test_quick_run_writes_its_record(tmp_path: Path) -> None:
    renoise = load_script("renoise", ROOT / "benchmarks/renoise.py")
    assert renoise.main(["--quick", "--tag", "pytest", "--clips", "1", "--steps", "2", "--starts", "0.1", "1"]) == 0
    record = json.loads((ROOT / "runs/renoise/pytest.json").read_text())
    assert set(record["gap_floor_db"]) == {"real", "white noise", "0.1", "1.0"}
    assert record["command"].startswith("python benchmarks/renoise.py --quick")
    assert (ROOT / "runs/renoise/pytest-onecall.png").is_file()


def test_autoguidance_extrapolates_from_the_bad_model_and_weight_one_is_the_model() -> None:
    renoise = load_script("renoise", ROOT / "benchmarks/renoise.py")
    model, bad = build_model("tiny", seed=0).eval(), build_model("tiny", seed=1).eval()
    with torch.no_grad():
        for p in [*model.parameters(), *bad.parameters()]:
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    x = 0.3 * torch.randn(1, 1, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d, b = model(x, 0.3, None), bad(x, 0.3, None)
        assert not torch.allclose(d, b)
        assert torch.equal(renoise.AutoGuided(model, bad, 1.0)(x, 0.3, None), d)
        assert torch.allclose(renoise.AutoGuided(model, bad, 2.0)(x, 0.3, None), 2 * d - b, atol=1e-6)
