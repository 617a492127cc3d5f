"""benchmarks/fad_degrade.py: each degradation does what its row says, measured on a tone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def script():
    return load_script("fad_degrade", ROOT / "benchmarks/fad_degrade.py")


def _tone(seconds: float = 1.0, freq: float = 437.5) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    env = (t % 0.25 < 0.125).astype(np.float32)  # notes of 125 ms with gaps between them
    return (0.1 * env * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _db(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(np.mean(a.astype(np.float64) ** 2) / np.mean(b.astype(np.float64) ** 2))


@pytest.mark.parametrize("kind", ["white", "coloured"])
@pytest.mark.parametrize("db", [-30.0, -10.0])
def test_added_noise_sits_at_its_level(script, kind: str, db: float) -> None:
    x = _tone()
    y = getattr(script, kind)(x, db, np.random.default_rng(0))
    assert abs(_db(y - x, x) - db) < 0.5


def test_random_phase_keeps_the_spectrum_and_smearing_fills_the_gaps(script) -> None:
    x = _tone()
    rng = np.random.default_rng(0)
    same, phase, smear = script.smeared(x, 1, rng), script.smeared(x, 1, rng), script.smeared(x, 9, rng)
    spec = np.abs(np.fft.rfft(x)) ** 2
    for y in (same, phase):  # the power stays near the tone: most of it within ±40 Hz (2.5 STFT bins)
        p = np.abs(np.fft.rfft(y)) ** 2
        assert p[397:478].sum() / p.sum() > 0.5 and spec[397:478].sum() / spec.sum() > 0.9
        assert not np.allclose(y, x, atol=1e-3)  # but the waveform is another one
    gaps = (np.arange(len(x)) / 16000 % 0.25) > 0.15  # well inside the silences between notes
    assert np.sqrt(np.mean(phase[gaps] ** 2)) < 0.6 * np.sqrt(np.mean(smear[gaps] ** 2))
