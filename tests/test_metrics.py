"""Evaluation metrics: SI-SDR closed forms, the MSDM window protocol, mixture consistency, FAD, and the
torch musicnn against outputs of the original TensorFlow model (stored, so no TensorFlow is needed)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gmsdi.eval import (
    EMBEDDING_LAYERS,
    SILENCE_THRESHOLD,
    FrechetAudioDistance,
    GaussianStats,
    SeparationScores,
    eval_windows,
    frechet_distance,
    is_silent,
    load_musicnn,
    mixture_consistency_error,
    score_separation,
    si_sdr,
    si_sdr_improvement,
)
from gmsdi.eval.musicnn import DEFAULT_WEIGHTS, MTT_LABELS, PATCH_FRAMES

SR = 16_000
REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"


def _tone(freq: float, seconds: float, amp: float = 0.3, sr: int = SR) -> torch.Tensor:
    t = torch.arange(round(seconds * sr), dtype=torch.float64) / sr
    return amp * torch.sin(2 * math.pi * freq * t)


# --- SI-SDR -------------------------------------------------------------------------------------

def test_si_sdr_of_a_scaled_reference_is_very_high():
    ref = _tone(440, 1.0)
    assert si_sdr(0.5 * ref, ref) > 80
    assert si_sdr(-2.0 * ref, ref) > 80  # a sign flip is a scale too


def test_si_sdr_with_orthogonal_noise_gives_the_snr():
    g = torch.Generator().manual_seed(0)
    ref = _tone(440, 1.0)
    noise = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    noise -= (noise @ ref) / (ref @ ref) * ref  # ⟂ ref, so the projection keeps α = 1
    for target_db in (-5.0, 0.0, 10.0, 30.0):
        scaled = noise * (ref.norm() / noise.norm()) * 10 ** (-target_db / 20)
        assert si_sdr(ref + scaled, ref).item() == pytest.approx(target_db, abs=1e-6)
        assert si_sdr(3.0 * (ref + scaled), ref).item() == pytest.approx(target_db, abs=1e-6)  # scale-invariant


def test_si_sdr_batches_over_leading_axes():
    refs = torch.stack([_tone(f, 0.5) for f in (110, 220, 330)])
    est = refs + 0.1 * refs.roll(1, dims=0)
    batched = si_sdr(est, refs)
    assert batched.shape == (3,)
    for k in range(3):
        assert batched[k].item() == pytest.approx(si_sdr(est[k], refs[k]).item())
    with pytest.raises(ValueError, match="same shape"):
        si_sdr(est[:, :10], refs)


def test_si_sdri_of_the_mixture_itself_is_zero():
    refs = torch.stack([_tone(f, 1.0) for f in (110, 220, 330)])
    mix = refs.sum(0)
    np.testing.assert_allclose(si_sdr_improvement(mix.expand_as(refs), refs, mix).numpy(), 0.0, atol=1e-9)
    assert (si_sdr_improvement(refs, refs, mix) > 50).all()


# --- MSDM protocol ------------------------------------------------------------------------------

def test_eval_windows_follow_msdm():
    w, h = 4 * SR, 2 * SR
    assert eval_windows(10 * SR, w, h) == [(0, 4 * SR), (2 * SR, 6 * SR), (4 * SR, 8 * SR), (6 * SR, 10 * SR)]
    assert eval_windows(9 * SR, w, h)[-1] == (6 * SR, 9 * SR)  # the last window is cut short
    assert eval_windows(4 * SR, w, h) == [(0, 4 * SR)]
    assert eval_windows(SR, w, h) == []
    with pytest.raises(ValueError):
        eval_windows(10, 4, 5)


def test_silence_rule_is_norm_over_samples():
    n = 4 * SR
    edge = SILENCE_THRESHOLD * math.sqrt(n)  # ‖a·1‖₂ / n = a / √n
    assert is_silent(torch.full((n,), 0.99 * edge))
    assert not is_silent(torch.full((n,), 1.01 * edge))
    assert is_silent(torch.zeros(1, n))


def _three_stems(seconds: float = 12.0) -> torch.Tensor:
    """bass plays 0-12 s, guitar 0-6 s, piano 8-12 s: windows starting at 4 s and 6 s hold bass only."""
    refs = torch.stack([_tone(f, seconds) for f in (55.0, 196.0, 523.0)])
    refs[1, 6 * SR:] = 0
    refs[2, : 8 * SR] = 0
    return refs


def test_windows_with_at_most_one_active_stem_are_skipped():
    refs = _three_stems()
    scores = score_separation(refs, refs, ("bass", "guitar", "piano"), sample_rate=SR)
    # Windows [0,4) [2,6) [4,8) [6,10) [8,12) s each hold two stems ([4,8): guitar to 6 s; [6,10): piano from 8 s).
    assert scores.num_windows == 5 and scores.num_skipped == 0
    refs[1, 4 * SR:] = 0  # guitar now stops at 4 s: [4,8) holds bass only
    scores = score_separation(refs, refs, ("bass", "guitar", "piano"), sample_rate=SR)
    assert scores.starts.tolist() == [0, 2 * SR, 6 * SR, 8 * SR]
    assert scores.num_skipped == 1
    unfiltered = score_separation(refs, refs, ("bass", "guitar", "piano"), sample_rate=SR,
                                  filter_single_source=False)
    assert unfiltered.num_windows == 5


def test_score_separation_tables():
    refs = _three_stems()
    stems = ("bass", "guitar", "piano")
    mix = refs.sum(0)
    floor = score_separation(mix.expand_as(refs), refs, stems, sample_rate=SR)
    assert floor.per_stem() == pytest.approx({"bass": 0.0, "guitar": 0.0, "piano": 0.0, "All": 0.0}, abs=1e-9)

    g = torch.Generator().manual_seed(1)
    est = refs + 0.05 * torch.randn(refs.shape, generator=g, dtype=torch.float64)
    scores = score_separation(est, refs, stems, sample_rate=SR, track="t1")
    table = scores.per_stem()
    assert set(table) == {*stems, "All"}
    assert table["All"] == pytest.approx(np.mean([table[s] for s in stems]))
    assert table["bass"] > 10
    np.testing.assert_allclose(scores.sisdri, scores.sisdr - scores.sisdr_mixture)

    both = SeparationScores.concat([scores, floor])
    assert both.num_windows == scores.num_windows + floor.num_windows
    assert both.per_stem()["bass"] == pytest.approx((table["bass"] + 0.0) / 2)
    assert both.tracks[0] == "t1"


def test_score_separation_crops_references_and_checks_shapes():
    refs = _three_stems()
    stems = ("bass", "guitar", "piano")
    short = refs[:, : 9 * SR]
    scores = score_separation(short, refs, stems, sample_rate=SR)  # references cropped to the estimates
    assert scores.ends.max() == 9 * SR
    with pytest.raises(ValueError, match="at least as long"):
        score_separation(refs, short, stems, sample_rate=SR)
    with pytest.raises(ValueError, match="3 stems"):
        score_separation(refs[:2], refs[:2], stems, sample_rate=SR)


def test_mixture_consistency_error():
    refs = _three_stems(2.0)
    mix = refs.sum(0)
    assert mixture_consistency_error(mix, refs).item() == pytest.approx(0.0, abs=1e-12)
    assert mixture_consistency_error(mix, torch.zeros_like(refs), relative=True).item() == pytest.approx(1.0)
    off = refs.clone()
    off[0] += 0.01
    assert mixture_consistency_error(mix, off).item() == pytest.approx(0.01 * math.sqrt(mix.numel()))
    batched = mixture_consistency_error(torch.stack([mix, mix]), torch.stack([refs, off]))
    assert batched.shape == (2,) and batched[0] < 1e-12 < batched[1]
    with pytest.raises(ValueError):
        mixture_consistency_error(mix, refs[:, :100])


# --- FAD ----------------------------------------------------------------------------------------

def _gaussian(n: int = 4000, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3


def test_fad_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    emb = _gaussian()
    a = GaussianStats.from_embeddings(emb)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    previous = 0.0
    for delta in (0.1, 0.5, 1.0):
        shifted = GaussianStats.from_embeddings(emb + delta)  # same covariance: FAD = ‖Δμ‖² = D δ²
        value = frechet_distance(a, shifted)
        assert value == pytest.approx(emb.shape[1] * delta**2, rel=1e-6)
        assert value > previous
        previous = value
    # Σ_b = 4 Σ_a, same mean: tr(Σ + 4Σ − 2·2Σ) = tr(Σ)
    scaled = GaussianStats.from_embeddings(2 * (emb - emb.mean(0)) + emb.mean(0))
    assert frechet_distance(a, scaled) == pytest.approx(np.trace(a.sigma), rel=1e-6)


def test_fad_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        GaussianStats.from_embeddings(np.zeros((1, 4)))
    with pytest.warns(UserWarning, match="singular"):
        GaussianStats.from_embeddings(np.random.default_rng(0).standard_normal((3, 8)))
    with pytest.raises(ValueError, match="valid: penultimate"):
        FrechetAudioDistance(model=torch.nn.Identity(), layer="logits")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def musicnn():
    torch.set_num_threads(1)
    return load_musicnn()


def test_fad_on_musicnn_embeddings(musicnn):
    scorer = FrechetAudioDistance(model=musicnn)
    g = torch.Generator().manual_seed(0)
    clean = torch.stack([_tone(f, 3.0) for f in (220, 262, 330, 392)]).float()
    noisy = clean + 0.3 * torch.randn(clean.shape, generator=g)
    emb = scorer.embed(clean)
    assert emb.shape == (4, EMBEDDING_LAYERS["penultimate"])
    assert scorer.embed([clean[0, :SR]]).shape == (1, 200)  # shorter than 3 s: repeat-padded to one patch
    assert scorer.embed([torch.cat([clean[0], clean[0]])]).shape == (2, 200)  # 6 s: two patches
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 4 embeddings of dimension 200: singular, fine for these checks
        real = scorer.stats(clean)
        assert scorer.score(clean, real) == pytest.approx(0.0, abs=1e-3)
        assert scorer.score(noisy, real) > 1.0
        given, generated = clean[:, None] * 0.5, clean[:, None] * 0.5
        assert scorer.sub_fad(given, generated, real) == pytest.approx(0.0, abs=1e-3)
        assert scorer.single_source(noisy, clean) == pytest.approx(scorer.score(noisy, real), rel=1e-6)


# --- the musicnn port against the TensorFlow original ---------------------------------------------

# Measured by `scripts/convert_musicnn.py verify` (docs/musicnn_port.md), with ~3x headroom.
NET_TOL = {"penultimate": 1e-4, "mean_pool": 1e-4, "max_pool": 2e-3, "taggram": 1e-5}
E2E_TOL = {"penultimate": 1e-4, "mean_pool": 2e-4, "max_pool": 5e-3, "taggram": 2e-5, "logmel": 1e-3}


def test_musicnn_weights_load(musicnn):
    assert DEFAULT_WEIGHTS.is_file()
    n_params = sum(p.numel() for p in musicnn.net.parameters())
    assert n_params == 787_159
    with np.load(DEFAULT_WEIGHTS) as npz:
        assert tuple(npz["labels"]) == MTT_LABELS


def test_musicnn_matches_tensorflow_reference(musicnn):
    ref = np.load(REFERENCE)
    with torch.no_grad():
        net = musicnn.net(torch.from_numpy(ref["logmel"]))  # same log-mel input as TF: the network alone
        e2e = musicnn(torch.from_numpy(ref["wav"]))  # from the waveform: our front-end too
        logmel = musicnn.patches(torch.from_numpy(ref["wav"]))
    assert logmel.shape == ref["logmel"].shape == (1, PATCH_FRAMES, 96)
    assert np.abs(logmel.numpy() - ref["logmel"]).max() < E2E_TOL["logmel"]
    for key, tol in NET_TOL.items():
        assert np.abs(net[key].numpy() - ref[key]).max() < tol, key
    for key in NET_TOL:
        assert np.abs(e2e[key].numpy() - ref[key]).max() < E2E_TOL[key], key
    assert net["taggram"].argmax().item() == int(ref["taggram"].argmax())
