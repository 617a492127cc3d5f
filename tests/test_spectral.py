"""The STFT front end of the denoiser, the part-wise prompt encoder, the structure measure and the
training schedule that the `spectral` model uses."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gmsdi.eval.structure import coloured_noise, tf_contrast
from gmsdi.models import build_model, load_model, model_config, save_model
from gmsdi.models.spectral import SpectralErrorWeight, Stft
from gmsdi.text import HashTextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


def _tiny_spectral():
    base = model_config("spectral")
    unet = dataclasses.replace(base.unet, patch_size=64, n_fft=256, channels=(160, 192), num_blocks=(1, 1),
                               emb_dim=32, cross_attn_levels=(1,), norm_groups=8)
    return dataclasses.replace(base, unet=unet, text_encoder="hash", segment_samples=1024,
                               inference_window_samples=2048)


@pytest.mark.parametrize(("n_fft", "hop"), [(1024, 256), (256, 64), (128, 64)])
def test_stft_inverts_exactly_and_keeps_white_noise_power(n_fft: int, hop: int) -> None:
    stft = Stft(n_fft, hop)
    x = torch.randn(3, 2, 40 * hop, generator=torch.Generator().manual_seed(0))
    spec = stft.analyze(x)
    assert spec.shape == (3, 2, n_fft // 2 + 1, 40) and spec.is_complex()
    assert torch.allclose(stft.synthesize(spec), x, atol=1e-5)
    # interior bins of white noise of variance 1 have mean power 1
    assert spec[..., 1:-1, 4:-4].abs().pow(2).mean().item() == pytest.approx(1.0, rel=0.05)


def test_stft_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="multiple of hop"):
        Stft(1000, 256)
    with pytest.raises(ValueError, match="multiple of the hop"):
        Stft(256, 64).analyze(torch.zeros(1, 100))


def test_spectral_error_weight_weighs_each_bin_and_keeps_white_error_at_its_mean_square() -> None:
    g = torch.Generator().manual_seed(0)
    white = torch.randn(4, 1, 8192, generator=g)
    flat = SpectralErrorWeight(torch.full((33,), 3.0), n_fft=64, hop=16)  # normalised to mean 1
    assert torch.allclose(flat(white), white.pow(2).mean((1, 2)), rtol=0.05)
    t = torch.arange(8192)
    tone = torch.sin(2 * math.pi * 10 * t / 64)[None, None]  # bin 10 of 33
    w = torch.ones(33)
    w[9:12] = 11.0  # the tone's Hann main lobe weighs 11× the other bins
    weighted = SpectralErrorWeight(w, n_fft=64, hop=16)
    assert torch.allclose(weighted(tone), flat(tone) * 11 / w.mean(), rtol=0.02)
    power = torch.linspace(1, 100, 33)
    assert torch.equal(SpectralErrorWeight.from_power(power, 0.0, n_fft=64, hop=16).weights, torch.ones(33))
    falling = SpectralErrorWeight.from_power(power, 0.5, n_fft=64, hop=16).weights
    assert (falling.diff() < 0).all() and math.isclose(float(falling.mean()), 1.0, rel_tol=1e-6)
    assert torch.allclose(falling[0] / falling[-1], ((100 + 1e-3 * power.mean()) / (1 + 1e-3 * power.mean())) ** 0.5)
    for bad in (torch.ones(32), torch.zeros(33), torch.full((33,), math.inf)):
        with pytest.raises(ValueError, match="positive finite"):
            SpectralErrorWeight(bad, n_fft=64, hop=16)
    with pytest.raises(ValueError, match="alpha must be"):
        SpectralErrorWeight.from_power(power, -1.0, n_fft=64, hop=16)


def test_the_edm_loss_hands_its_scaled_error_to_the_weighting() -> None:
    model = build_model(_tiny_spectral(), seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05, generator=torch.Generator().manual_seed(1))
    x = 0.1 * torch.randn(2, 1, 1024, generator=torch.Generator().manual_seed(2))
    cond = HashTextEncoder(384).encode(["bass", "piano"])
    sigma = torch.tensor([0.05, 1.0])
    seen = []

    def mean_square(error: torch.Tensor) -> torch.Tensor:
        seen.append(error.detach())
        return error.pow(2).flatten(1).mean(1)

    plain = model.loss(x, sigma, cond, generator=torch.Generator().manual_seed(3))
    assert torch.equal(model.loss(x, sigma, cond, generator=torch.Generator().manual_seed(3),
                                  error_weight=mean_square), plain)
    tilt = SpectralErrorWeight(torch.linspace(1, 100, 33), n_fft=64, hop=16)
    tilted = model.loss(x, sigma, cond, generator=torch.Generator().manual_seed(3), error_weight=tilt)
    assert torch.allclose(tilted, tilt(seen[0]))
    flat = SpectralErrorWeight(torch.ones(33), n_fft=64, hop=16)
    assert torch.allclose(flat(seen[0]), plain, rtol=0.1)


def test_spectral_network_starts_at_c_skip_and_runs_any_window() -> None:
    model = build_model(_tiny_spectral(), seed=0)
    enc = HashTextEncoder(384)
    x = 0.1 * torch.randn(2, 1, 2048, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.05, 0.5])
    out = model(x, sigma, enc.encode(["bass", "drums, piano"]))
    # the output layer is zero-initialised: D = c_skip·x
    c_skip = model.scalings(sigma).c_skip[:, None, None]
    assert torch.allclose(out, c_skip * x, atol=1e-6)
    # fully convolutional in time: a window four times the training crop, and the null prompt
    assert model(torch.zeros(1, 1, 4096), 0.3, None).shape == (1, 1, 4096)


def test_spectral_network_learns_a_tone_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = build_model(_tiny_spectral(), seed=0)
    enc = HashTextEncoder(384)
    t = torch.arange(1024) / 16000
    tone = (0.1 * torch.sin(2 * math.pi * 440 * t))[None, None].repeat(8, 1, 1)
    cond = enc.encode(["piano"] * 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.loss(tone, torch.full((8,), 0.3), cond, generator=g).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_spectral_checkpoint_round_trip_keeps_window(tmp_path: Path) -> None:
    config = _tiny_spectral()
    model = build_model(config, seed=3)
    path = save_model(tmp_path / "m.safetensors", model)
    again = load_model(path)
    assert again.model_config.window_samples == 2048 and again.model_config.segment_samples == 1024
    assert again.model_config.unet.frontend == "stft"
    x = torch.randn(1, 1, 1024)
    assert torch.equal(again(x, 0.2, None), model(x, 0.2, None))


def test_window_defaults_to_the_segment_and_must_fit_the_network() -> None:
    assert model_config("tiny").window_samples == model_config("tiny").segment_samples
    with pytest.raises(ValueError, match="inference_window_samples"):
        dataclasses.replace(model_config("spectral"), inference_window_samples=1000)
    with pytest.raises(ValueError, match="frontend"):
        dataclasses.replace(model_config("spectral").unet, frontend="wavelet")


def test_parts_encoder_is_a_set_of_parts() -> None:
    from gmsdi.text import build_text_encoder

    enc = build_text_encoder("minilm-parts")
    e = enc.encode(["bass, drums, guitar, piano", "piano, guitar, drums, bass", "bass, drums, guitar", "bass", ""])
    pooled = torch.nn.functional.normalize(e.pooled[:4], dim=-1)
    cos = pooled @ pooled.T
    assert cos[0, 1].item() == pytest.approx(1.0, abs=1e-5)  # the order of parts does not matter
    assert cos[0, 2].item() < 0.9  # one instrument more or less is a large move (joined text: 0.96)
    assert e.mask.sum(1).tolist() == [4, 4, 3, 1, 0]  # one token per part; "" is the null prompt
    assert torch.all(e.pooled[4] == 0)
    tokens = e.tokens[3, 0]
    assert tokens.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_tf_contrast_tells_tones_and_hits_from_coloured_noise() -> None:
    sr, rng = 16000, np.random.default_rng(0)
    t = np.arange(2 * sr) / sr
    notes = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6)) * (np.sin(2 * np.pi * 2 * t) > 0)
    hits = np.zeros_like(t)
    for start in range(0, len(t), sr // 4):
        hits[start:start + 800] = rng.standard_normal(800) * np.exp(-np.arange(800) / 150)
    for clip in (notes, hits):
        noise = coloured_noise(clip[None], 2, len(clip), rng)
        assert noise.shape == (2, len(clip))
        assert np.sqrt(np.mean(noise**2)) == pytest.approx(np.sqrt(np.mean(clip**2)), rel=1e-3)
        assert tf_contrast(clip) > tf_contrast(noise[0]) + 8
    assert math.isnan(tf_contrast(np.zeros(sr)))


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    sys.path.insert(0, str(ROOT / "train"))
    import train

    cfg = train.load_config(None, ["lr=1e-3", "warmup_steps=10", "lr_decay_steps=110", "lr_min_ratio=0.1"])
    lrs = [train.learning_rate(cfg, s) for s in range(200)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[60] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5), rel=1e-6)
    assert lrs[150] == pytest.approx(1e-4) and all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    flat = train.load_config(None, ["lr=1e-3", "warmup_steps=10"])
    assert train.learning_rate(flat, 5000) == pytest.approx(1e-3)


def test_a_late_decay_start_holds_the_rate_then_cools_down_on_resume() -> None:
    sys.path.insert(0, str(ROOT / "train"))
    import train

    cfg = train.load_config(None, ["lr=1e-3", "warmup_steps=10", "lr_decay_start=100", "lr_decay_steps=300",
                                   "lr_min_ratio=0.1"])
    lrs = [train.learning_rate(cfg, s) for s in range(400)]
    assert all(lr == pytest.approx(1e-3) for lr in lrs[9:101])
    assert lrs[200] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5), rel=1e-6)
    assert lrs[300] == pytest.approx(1e-4) and lrs[399] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:], strict=False))
    # a start before the end of warm-up is the plain cosine
    early = train.load_config(None, ["lr=1e-3", "warmup_steps=10", "lr_decay_start=3", "lr_decay_steps=110"])
    plain = train.load_config(None, ["lr=1e-3", "warmup_steps=10", "lr_decay_steps=110"])
    assert [train.learning_rate(early, s) for s in range(200)] == [train.learning_rate(plain, s) for s in range(200)]


def test_keep_silence_silences_every_source_where_the_mix_is_silent() -> None:
    from gmsdi.inference.constraints import keep_silence

    sr = 16000
    g = torch.Generator().manual_seed(0)
    mix = 0.1 * torch.randn(2 * sr, generator=g)
    mix[sr // 2: sr] = 0  # 0.5 s of digital silence
    noise = 0.05 * torch.randn(3, 2 * sr, generator=g)
    sources = torch.cat([noise[:2], (mix - noise[:2].sum(0))[None]])  # sums to the mix, noisy in the gap
    out = keep_silence(sources, mix, sr)
    assert torch.allclose(out.sum(0), mix, atol=1e-6)
    gap = out[:, sr // 2 + 300: sr - 300]  # the fades take 15 ms of the silence
    assert gap.abs().max() < 1e-6
    assert torch.allclose(out[:, : sr // 2 - 10], sources[:, : sr // 2 - 10], atol=1e-7)  # loud parts untouched


def test_separated_stems_are_silent_where_the_mix_is() -> None:
    from gmsdi.pipeline import GMSDIPipeline

    pipe = GMSDIPipeline(build_model("tiny", seed=0), HashTextEncoder(384), device="cpu")
    sr = pipe.sample_rate
    rng = np.random.default_rng(0)
    mix = (0.1 * rng.standard_normal(2 * sr)).astype(np.float32)
    mix[sr // 2: 3 * sr // 2] = 0
    for result in (pipe.separate(mix, ["bass", "drums"], steps=16, seed=0),
                   pipe.extract(mix, "bass", steps=16, seed=0)):
        stems = np.stack(list(result.stems.values()))
        assert np.abs(stems[:, sr // 2 + 300: 3 * sr // 2 - 300]).max() < 1e-6  # 15 ms fades
        np.testing.assert_allclose(stems.sum(0), result.mix, atol=1e-5)


def test_prompt_check_warns_about_words_that_name_no_instrument(capsys, tmp_path: Path) -> None:
    from gmsdi.pipeline import GMSDIPipeline
    from gmsdi.text import build_text_encoder
    from gmsdi.text.vocabulary import PromptCheck, training_vocabulary

    assert {"bass", "electric bass", "finger electric bass", "drums"} <= set(training_vocabulary())
    check = PromptCheck(build_text_encoder("minilm-parts"))
    assert check.warnings(["bass, drum kit", "upright bass", "snare", ""]) == []
    (warning,) = check.warnings(["asdfgh, piano"])
    assert warning.startswith("'asdfgh' is far from every instrument") and "nearest:" in warning
    # the pipeline records the warning with its result
    pipe = GMSDIPipeline(build_model("tiny", seed=0), HashTextEncoder(384), device="cpu")
    pipe._prompt_check = check
    result = pipe.generate(["bass", "asdfgh"], seconds=0.25, steps=2, seed=0)
    assert len(result.settings["warnings"]) == 1 and "'asdfgh'" in result.settings["warnings"][0]
    assert pipe.generate(["bass"], seconds=0.25, steps=2, seed=0).settings["warnings"] == []


def test_a_cosine_that_ends_before_it_starts_is_a_config_error() -> None:
    sys.path.insert(0, str(ROOT / "train"))
    import train

    for overrides in (["warmup_steps=500", "lr_decay_steps=300"],
                      ["warmup_steps=10", "lr_decay_start=1000", "lr_decay_steps=1000"]):
        with pytest.raises(ValueError, match="lr_decay_steps=.* ends the cosine before it starts"):
            train.check_schedule(train.load_config(None, overrides))
    for overrides in (["lr_decay_steps=0"], ["warmup_steps=10", "lr_decay_start=100", "lr_decay_steps=101"]):
        train.check_schedule(train.load_config(None, overrides))
