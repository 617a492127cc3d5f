"""The frequency-local denoiser (`gmsdi.models.bandunet`): band layout in and out, zero start,
any window length, learning under bf16 autocast, checkpoints."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import N_FFT, WIDTH, tiny_bands_config

from gmsdi.models import ModelConfig, build_model, load_model, model_config, save_model
from gmsdi.models.bandunet import (
    FEATURES_PER_BIN,
    PHASE_FEATURES,
    BandUNet2d,
    band_edges,
    bin_features,
    harmonic_stack,
    load_grown,
)
from gmsdi.models.edm import EDMDenoiser
from gmsdi.models.spectral import Stft
from gmsdi.text import HashTextEncoder, TextEmbedding

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 16000


def _net() -> BandUNet2d:
    return build_model(tiny_bands_config(), seed=0).net


def test_network_starts_at_c_skip_and_runs_any_window() -> None:
    model = build_model(tiny_bands_config(), seed=0)
    x = 0.1 * torch.randn(2, 1, 1024, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.05, 0.5])
    out = model(x, sigma, HashTextEncoder(384).encode(["bass", "drums, piano"]))
    c_skip = model.scalings(sigma).c_skip[:, None, None]
    assert torch.allclose(out, c_skip * x, atol=1e-6)  # the output maps are zero-initialised
    assert model(torch.zeros(1, 1, 4096), 0.3, None).shape == (1, 1, 4096)
    with pytest.raises(ValueError, match="multiple of 64"):
        model(torch.zeros(1, 1, 1000), 0.3, None)


def test_unit_gain_passes_the_input_through_without_its_nyquist_bin() -> None:
    net = _net()
    with torch.no_grad():
        net.unembed.bias.view(-1, 4, WIDTH)[:, 0] = 1.0  # gain 1 + 0i on every band's bins
    x = torch.randn(2, 1024, generator=torch.Generator().manual_seed(2))
    spec = net.stft.analyze(x)
    h = torch.zeros(2, 16, 8, spec.shape[-1])
    expected = net.stft.synthesize(torch.cat([spec[:, :-1], torch.zeros_like(spec[:, -1:])], dim=1))
    assert torch.allclose(net.unembed(h, spec), expected, atol=1e-5)


@pytest.mark.parametrize(("band", "bin_in_band"), [(0, 4), (5, 0), (7, 4)])
def test_a_band_bin_writes_a_tone_at_its_own_frequency(band: int, bin_in_band: int) -> None:
    # The same coefficient in every frame is a steady tone where the bin turns a whole number of
    # cycles per hop: bins that are multiples of n_fft / hop = 4.
    net = _net()
    with torch.no_grad():
        net.unembed.bias.view(-1, 4, WIDTH)[band, 2, bin_in_band] = 1.0  # residual, real part
    spec = net.stft.analyze(torch.zeros(1, 2048))
    y = net.unembed(torch.zeros(1, 16, 8, spec.shape[-1]), spec)[0].detach().numpy()
    peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * SR / len(y)
    assert peak_hz == pytest.approx((band * WIDTH + bin_in_band) * SR / N_FFT, abs=SR / len(y))


def test_each_band_reads_its_own_bins() -> None:
    net = _net()
    with torch.no_grad():
        net.embed.weight.zero_()
        net.embed.weight[:, FEATURES_PER_BIN - 1 :: FEATURES_PER_BIN, 0] = 1.0  # channel 0: Σ log power
    t = torch.arange(2048) / SR
    for hz in (300.0, 2600.0, 7300.0):
        h = net.embed(bin_features(net.stft.analyze(torch.sin(2 * math.pi * hz * t)[None]), net.embed.bands * WIDTH))
        assert h[0, 0].mean(-1).argmax().item() == int(hz * N_FFT / SR) // WIDTH


def _learns_a_tone(model: EDMDenoiser, cond: TextEmbedding | None) -> bool:
    """40 Adam steps under bf16 autocast on a 440 Hz tone at σ = 0.3: whether the loss halves."""
    t = torch.arange(1024) / SR
    tone = (0.1 * torch.sin(2 * math.pi * 440 * t))[None, None].repeat(8, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.loss(tone, torch.full((8,), 0.3), cond, generator=g).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_network_learns_a_tone_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_bands_config(), seed=0)
    assert _learns_a_tone(model, HashTextEncoder(384).encode(["piano"] * 8))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_model(tiny_bands_config(), seed=3)
    again = load_model(save_model(tmp_path / "m.safetensors", model))
    assert again.model_config.network == "bandunet2d" and again.model_config.unet.band_width == WIDTH
    x = torch.randn(1, 1, 1024)
    assert torch.equal(again(x, 0.2, None), model(x, 0.2, None))


def test_bad_band_layouts_are_refused() -> None:
    cfg = tiny_bands_config()
    with pytest.raises(ValueError, match="band_width=7"):
        build_model(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, band_width=7)))
    with pytest.raises(ValueError, match="twice the widest band"):
        build_model(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, channels=(8, 16))))


def test_log_band_edges_are_single_bins_low_then_a_fixed_fraction_of_an_octave() -> None:
    assert band_edges(512, 16) == tuple(range(0, 513, 16))
    edges = band_edges(512, bands_per_octave=12, multiple=4)
    widths = np.diff(edges)
    assert edges[0] == 0 and edges[-1] == 512 and len(widths) % 4 == 0
    assert (widths[:20] == 1).all()  # below ~300 Hz a semitone is under one 15.6 Hz bin
    wide = [k for k in range(len(widths) - 1) if widths[k] >= 8]
    ratios = [edges[k + 1] / edges[k] for k in wide]
    assert all(abs(math.log2(r) * 12 - 1) < 0.25 for r in ratios)  # then a semitone each, up to rounding
    assert widths[-1] >= widths[-2] / 2  # no sliver at the top
    assert len(band_edges(512, bands_per_octave=6, multiple=8)) % 8 == 1
    with pytest.raises(ValueError, match="band_width=7"):
        band_edges(512, 7)
    with pytest.raises(ValueError, match="bands_per_octave"):
        band_edges(512, bands_per_octave=-1)


def _log_config() -> ModelConfig:
    cfg = tiny_bands_config()
    return dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, bands_per_octave=6, channels=(24, 32)))


def _log_net() -> BandUNet2d:
    return build_model(_log_config(), seed=0).net


def test_log_bands_read_their_own_bins_and_write_every_bin_once() -> None:
    net = _log_net()
    edges = net.embed.edges
    assert edges == band_edges(N_FFT // 2, bands_per_octave=6, multiple=2) and len(net.embed.runs) > 1  # not uniform
    # the runs of equal-width bands tile the bands and the bins in order, none twice
    firsts = [k for k, _, _ in net.embed.runs]
    assert firsts == list(itertools.accumulate([0] + [count for _, count, _ in net.embed.runs]))[:-1]
    assert sum(count for _, count, _ in net.embed.runs) == len(edges) - 1
    assert all(edges[k + count] - edges[k] == count * w for k, count, w in net.embed.runs)
    with torch.no_grad():
        net.embed.weight.zero_()
        net.embed.weight[:, FEATURES_PER_BIN - 1 :: FEATURES_PER_BIN, 0] = 1.0  # channel 0: Σ log power + 2.3·pad
    t = torch.arange(2048) / SR
    silent = net.embed(bin_features(net.stft.analyze(torch.zeros(1, 2048)), net.embed.bins))[0, 0].mean(-1)
    for hz in (300.0, 2600.0, 7300.0):
        h = net.embed(bin_features(net.stft.analyze(torch.sin(2 * math.pi * hz * t)[None]), net.embed.bins))
        k = int(np.searchsorted(edges, round(hz * N_FFT / SR), side="right")) - 1
        assert (h[0, 0].mean(-1) - silent).argmax().item() == k
    # a residual on one bin of a band writes a tone at that bin's frequency (bins that turn whole cycles per hop:
    # multiples of n_fft / hop = 4); here the bins of a single-bin band, and the third of the last band's ten
    for band, slot in ((8, 0), (len(edges) - 2, 2)):
        assert (edges[band] + slot) % 4 == 0
        with torch.no_grad():
            net.unembed.bias.zero_()
            net.unembed.bias.view(-1, 4, net.unembed.width)[band, 2, slot] = 1.0
        spec = net.stft.analyze(torch.zeros(1, 2048))
        y = net.unembed(torch.zeros(1, 24, len(edges) - 1, spec.shape[-1]), spec)[0].detach().numpy()
        peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * SR / len(y)
        assert peak_hz == pytest.approx((edges[band] + slot) * SR / N_FFT, abs=SR / len(y))


def test_log_band_maps_equal_one_linear_map_per_band() -> None:
    """`BandEmbed` and `BandUnembed.head` batch runs of equal-width bands; the result is each band's own map of
    its own bins, computed here band by band (a band of w bins: the first w slots of its weights)."""
    net = _log_net()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (net.embed.weight, net.embed.bias, net.unembed.weight, net.unembed.bias):
            p.copy_(torch.randn(p.shape, generator=g))
    edges, f, n = net.embed.edges, FEATURES_PER_BIN, 6
    feats = torch.randn(2, net.embed.bins, n, f, generator=g)
    h = torch.randn(2, net.unembed.weight.shape[1], len(edges) - 1, n, generator=g)
    embedded, head = net.embed(feats), net.unembed.head(h)
    groups, width = net.unembed.groups, net.unembed.width
    for k, (lo, hi) in enumerate(itertools.pairwise(edges)):
        w = hi - lo
        x = feats[:, lo:hi].permute(0, 2, 1, 3).reshape(2, n, w * f)  # [B, N, slot·f + feature]
        torch.testing.assert_close(embedded[:, :, k], (x @ net.embed.weight[k, : w * f] + net.embed.bias[k]).mT)
        wk = net.unembed.weight[k].view(-1, groups, width)[..., :w]  # [C, groups, w]
        ref = torch.einsum("bcn,cgs->bgsn", h[:, :, k], wk) + net.unembed.bias[k].view(groups, width)[:, :w, None]
        torch.testing.assert_close(head[:, :, lo:hi], ref, rtol=1e-4, atol=1e-4)


def test_a_log_band_network_starts_at_c_skip_learns_and_round_trips(tmp_path: Path) -> None:
    cfg = _log_config()
    model = build_model(cfg, seed=0)
    x = 0.1 * torch.randn(2, 1, 1024, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.05, 0.5])
    assert torch.allclose(model(x, sigma, None), model.scalings(sigma).c_skip[:, None, None] * x, atol=1e-6)
    assert _learns_a_tone(model, None)
    again = load_model(save_model(tmp_path / "m.safetensors", model.eval()))
    assert again.model_config.unet.bands_per_octave == 6
    assert torch.equal(again(x, 0.2, None), model(x, 0.2, None))
    with pytest.raises(ValueError, match="uniform bands"):
        build_model(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, refine_channels=8)))


def _masked(band_gain: str):
    cfg = tiny_bands_config()
    return dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, band_gain=band_gain))


@pytest.mark.parametrize("sigma", [1e-3, 0.03, 0.1, 1.0])
def test_mask_gain_of_minus_one_removes_the_noisy_input_at_any_sigma(sigma: float) -> None:
    # band_gain="mask": D = c_skip·x + a(σ)·synth(M·STFT(x)) + c_out·synth(R), a = σd(σ+σd)/(σ²+σd²).
    model = build_model(_masked("mask"), seed=0)
    with torch.no_grad():
        model.net.unembed.bias.view(-1, 4, WIDTH)[:, 0] = -1.0  # M = −1 on every non-Nyquist bin
    x = 0.1 * torch.randn(1, 1, 1024, generator=torch.Generator().manual_seed(4))
    sd = model.sigma_data
    a = sd * (sigma + sd) / (sigma**2 + sd**2)
    spec = model.net.stft.analyze(x[:, 0])
    no_nyquist = model.net.stft.synthesize(torch.cat([spec[:, :-1], torch.zeros_like(spec[:, -1:])], dim=1))
    expected = model.scalings(torch.tensor([sigma])).c_skip * x[:, 0] - a * no_nyquist
    out = model(x, sigma, None)[:, 0]
    assert torch.allclose(out, expected, atol=1e-5)
    if sigma == 1e-3:  # a ≈ c_skip ≈ 1: the mask removes x but its Nyquist bin (~1/128 of white noise)
        assert out.pow(2).mean() < 1e-2 * x.pow(2).mean()


def test_input_gain_cannot_remove_the_input_at_small_sigma() -> None:
    # The same head with band_gain="input" multiplies c_in·x and is scaled by c_out: at σ = 1e-3 a
    # gain of −1 removes only c_in·c_out ≈ 1 % of x. This is the floor "mask" answers.
    model = build_model(_masked("input"), seed=0)
    with torch.no_grad():
        model.net.unembed.bias.view(-1, 4, WIDTH)[:, 0] = -1.0
    x = 0.1 * torch.randn(1, 1, 1024, generator=torch.Generator().manual_seed(4))
    out = model(x, 1e-3, None)
    assert out.pow(2).mean() > 0.9 * x.pow(2).mean()


def test_reset_gain_zeroes_the_gain_and_keeps_the_residual() -> None:
    net = _net()
    with torch.no_grad():
        net.unembed.weight.normal_()
        net.unembed.bias.normal_()
    residual = net.unembed.weight.view(net.unembed.weight.shape[0], -1, 4, WIDTH)[:, :, 2:].clone()
    net.unembed.reset_gain()
    w = net.unembed.weight.view(net.unembed.weight.shape[0], -1, 4, WIDTH)
    assert not w[:, :, :2].any() and not net.unembed.bias.view(-1, 4, WIDTH)[:, :2].any()
    assert torch.equal(w[:, :, 2:], residual)


def test_unknown_band_gain_is_refused() -> None:
    with pytest.raises(ValueError, match="band_gain"):
        _masked("wiener")


def test_training_and_inference_layouts_give_the_same_output(monkeypatch) -> None:
    """Autocast training runs the activations contiguous, fp32 training and inference channels-last; the
    output is the same in either layout."""
    model = build_model(tiny_bands_config(), seed=0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = 0.1 * torch.randn(2, 1, 2048, generator=torch.Generator().manual_seed(1))
    cond = HashTextEncoder(384).encode(["bass", "drums, piano"])
    cpu = torch.device("cpu")
    with torch.no_grad():
        assert model.eval().net._layout(cpu) == torch.channels_last
        inference = model(x, torch.tensor([0.05, 0.5]), cond)
    net = model.train().net
    assert net._layout(cpu) == torch.channels_last  # fp32 training
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net._layout(cpu) == torch.contiguous_format
    monkeypatch.setattr(type(net), "_layout", lambda self, device: torch.contiguous_format)
    training = model(x, torch.tensor([0.05, 0.5]), cond).detach()
    assert inference.abs().mean() > 1e-3  # the network's output is not the skip alone
    torch.testing.assert_close(training, inference, rtol=1e-4, atol=1e-5)


def test_training_keeps_the_residual_stream_in_bf16_with_the_same_gradients(monkeypatch) -> None:
    """Under autocast, training keeps the stream in bf16 (no casts around each block); the loss and
    the gradients match the fp32 stream to bf16 rounding, and inference keeps the fp32 stream."""
    model = build_model(tiny_bands_config(), seed=0).train()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = 0.1 * torch.randn(4, 1, 2048, generator=torch.Generator().manual_seed(1))
    cond = HashTextEncoder(384).encode(["bass", "drums", "piano", "bass, piano"])
    seen = []
    model.net.down[0].blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))

    def grads() -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.loss(x, torch.tensor([0.01, 0.1, 0.5, 2.0]), cond,
                              generator=torch.Generator().manual_seed(2)).mean()
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    loss_bf16, g_bf16 = grads()
    assert seen[-1] == torch.bfloat16
    monkeypatch.setattr(BandUNet2d, "_stream_dtype", lambda self, device: None)
    loss_fp32, g_fp32 = grads()
    assert seen[-1] == torch.float32
    torch.testing.assert_close(loss_bf16, loss_fp32, rtol=2e-2, atol=0)
    assert (g_bf16 - g_fp32).norm() < 0.05 * g_fp32.norm()
    monkeypatch.undo()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.eval()(x, torch.full((4,), 0.1), cond)
    assert seen[-1] == torch.float32


def _refined(channels: int = 8, blocks: int = 1) -> ModelConfig:
    cfg = tiny_bands_config()
    return dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, refine_channels=channels, refine_blocks=blocks))


def _probe_input() -> tuple[torch.Tensor, TextEmbedding]:
    """Two noisy windows [2, 1, 1024] and their prompts, to compare a grown model's output with its source's."""
    return (0.1 * torch.randn(2, 1, 1024, generator=torch.Generator().manual_seed(3)),
            HashTextEncoder(384).encode(["bass", "piano"]))


def _trained_source(config: ModelConfig | None = None, embed: bool = False) -> EDMDenoiser:
    """A source model to grow from, its head (and with `embed` its band embedding) randomised like trained
    weights, so that a grown model that dropped or misplaced them would compute something else."""
    source = build_model(config or tiny_bands_config(), seed=0)
    with torch.no_grad():
        for p in [*source.net.unembed.parameters(), *(source.net.embed.parameters() if embed else [])]:
            p.normal_(std=0.1)
    return source


def test_a_grown_refiner_starts_as_the_model_it_grew_from_and_then_acts_per_bin() -> None:
    source = _trained_source()
    grown = build_model(_refined(), seed=1)
    assert load_grown(grown, source.state_dict()) == ["net.refiner"]
    x, cond = _probe_input()
    with torch.no_grad():
        assert torch.equal(grown(x, 0.2, cond), source(x, 0.2, cond))  # its output layer is zero
        grown.net.refiner.out.weight.normal_(generator=torch.Generator().manual_seed(0))
        delta = grown(x, 0.2, cond) - source(x, 0.2, cond)
    assert delta.abs().max() > 1e-4
    # The correction is bin by bin: with M and R from the refiner only, a tone in one bin of a band changes
    # them near its bin (3×3 convolutions reach a bin's neighbours; only GroupNorm's statistics reach further).
    net = grown.net
    with torch.no_grad():
        for p in [*net.unembed.parameters(), net.refiner.context, net.refiner.context_bias]:
            p.zero_()
    t = torch.arange(2048) / SR
    tone = torch.sin(2 * math.pi * (2 * WIDTH + 1) * SR / N_FFT * t)[None]  # bin 17: band 2, its second bin
    spec = net.stft.analyze(tone)
    g = torch.zeros(1, 16, 8, spec.shape[-1])
    emb = torch.zeros(1, net.config.emb_dim)
    with torch.no_grad():
        bins = net.embed.bands * WIDTH
        out = net.refiner(g, bin_features(spec, bins), net.unembed.head(g), emb)  # [1, 4, bins, N]
        silence = bin_features(torch.zeros_like(spec), bins)
        out = out - net.refiner(g, silence, net.unembed.head(g), emb)  # what the tone changed
    energy = out.pow(2).sum((0, 1, 3))
    assert energy.argmax().item() in (16, 17, 18) and energy[21:].sum() < 0.01 * energy.sum()


def test_refiner_trains_under_bf16_autocast_and_round_trips(tmp_path: Path) -> None:
    model = build_model(_refined(8, 2), seed=0).train()
    x = 0.1 * torch.randn(4, 1, 1024, generator=torch.Generator().manual_seed(4))
    cond = HashTextEncoder(384).encode(["bass"] * 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.loss(x, torch.full((4,), 0.1), cond, generator=torch.Generator().manual_seed(5)).mean()
        loss.backward()
        assert model.net.refiner.out.weight.grad.abs().sum() > 0
        opt.step()
    assert model.net.refiner.out.weight.abs().sum() > 0  # it learned away from its zero start
    path = save_model(tmp_path / "refined.safetensors", model.eval())
    loaded = load_model(path)
    assert loaded.model_config.unet.refine_channels == 8 and loaded.model_config.unet.refine_blocks == 2
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.1, cond), model(x, 0.1, cond))


def test_refiner_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        _refined(-1)
    cfg = model_config("default")
    with pytest.raises(ValueError, match="refine_channels is a setting of the 'bandunet2d' network"):
        build_model(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, refine_channels=8)))


def test_deeper_levels_and_bottleneck_attention_grow_as_no_ops_and_misfits_are_refused() -> None:
    source = _trained_source()
    cfg = tiny_bands_config()
    deeper = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, num_blocks=(2, 3),
                                                               self_attn_bottleneck=True))
    grown = build_model(deeper, seed=1)
    names = load_grown(grown, source.state_dict())
    assert names == ["net.down.0.blocks.1", "net.down.1.blocks.1", "net.down.1.blocks.2", "net.mid_self",
                     "net.up.0.blocks.1", "net.up.1.blocks.1", "net.up.1.blocks.2"]
    x, cond = _probe_input()
    with torch.no_grad():
        assert torch.allclose(grown(x, 0.2, cond), source(x, 0.2, cond), atol=1e-6)
        grown.net.mid_self.out.weight.normal_()  # the attention now acts
        assert not torch.allclose(grown(x, 0.2, cond), source(x, 0.2, cond), atol=1e-4)
    wider = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, channels=(16, 64)))
    with pytest.raises(ValueError, match="do not fit"):
        load_grown(build_model(wider, seed=0), source.state_dict())
    with pytest.raises(ValueError, match="unexpected"):  # shrinking is not growing
        load_grown(source, grown.state_dict())


def test_more_refiner_blocks_grow_as_no_ops_and_other_networks_must_match_exactly() -> None:
    source = build_model(_refined(8, 1), seed=0)
    with torch.no_grad():
        source.net.refiner.out.weight.normal_()  # a trained refiner: its new block must not change the output
    grown = build_model(_refined(8, 2), seed=1)
    before = {k: v.clone() for k, v in grown.state_dict().items()}
    with pytest.raises(ValueError, match="do not fit"):  # a refused load leaves the model as it was
        load_grown(grown, {**source.state_dict(), "net.embed.weight": torch.zeros(3)})
    assert all(torch.equal(v, grown.state_dict()[k]) for k, v in before.items())
    assert load_grown(grown, source.state_dict()) == ["net.refiner.blocks.1"]
    x, cond = _probe_input()
    with torch.no_grad():
        assert torch.allclose(grown(x, 0.2, cond), source(x, 0.2, cond), atol=1e-6)
    tiny = model_config("tiny")  # UNet1d: no growing, only an exact match
    deeper = dataclasses.replace(tiny, unet=dataclasses.replace(tiny.unet, num_blocks=(2,) * len(tiny.unet.channels)))
    with pytest.raises(ValueError, match="missing"):
        load_grown(build_model(deeper, seed=0), build_model(tiny, seed=0).state_dict())
    assert load_grown(build_model(tiny, seed=1), build_model(tiny, seed=0).state_dict()) == []


def _filtered(taps: int = 3, phase: bool = True) -> ModelConfig:
    cfg = tiny_bands_config()
    return dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, filter_taps=taps, phase_features=phase))


def test_a_deep_filter_tap_reads_the_neighbouring_frame() -> None:
    net = build_model(_filtered(5), seed=0).net
    groups = net.unembed.groups  # M_0, R, then M_j for j = -2, -1, 1, 2
    assert groups == 12
    x = torch.randn(1, 2048, generator=torch.Generator().manual_seed(2))
    spec = net.stft.analyze(x)
    h = torch.zeros(1, 16, 8, spec.shape[-1])
    for group, shift in ((8, 1), (4, -2)):  # the real part of M_1, of M_-2
        with torch.no_grad():
            net.unembed.bias.zero_()
            net.unembed.bias.view(-1, groups, WIDTH)[:, group] = 1.0
        shifted = torch.zeros_like(spec)
        if shift > 0:
            shifted[..., :-shift] = spec[..., shift:]
        else:
            shifted[..., -shift:] = spec[..., :shift]
        shifted[:, -1] = 0  # the Nyquist bin
        assert torch.allclose(net.unembed(h, spec), net.stft.synthesize(shifted), atol=1e-5)


def test_phase_features_are_steady_for_a_held_partial_and_not_for_noise() -> None:
    t = torch.arange(4096) / SR
    tone = torch.sin(2 * math.pi * 17 * SR / N_FFT * t)[None]  # bin 17
    spec = Stft(N_FFT, 64).analyze(tone)
    feats = bin_features(spec, 32, phase=True)  # [1, bins, N, 7]
    assert feats.shape[-1] == FEATURES_PER_BIN + PHASE_FEATURES
    assert torch.equal(feats[..., :FEATURES_PER_BIN], bin_features(spec, 32))
    adv = torch.complex(feats[0, 17, 4:-4, 5], feats[0, 17, 4:-4, 6])  # away from the edges
    assert (adv / adv.abs()).std() < 1e-3  # the same advance every frame
    p = spec[0, 17, 5] * spec[0, 17, 4].conj()  # frame 5's advance from frame 4, to the fourth root
    assert torch.allclose(torch.complex(feats[0, 17, 5, 5], feats[0, 17, 5, 6]), p / p.abs() * p.abs() ** 0.25,
                          rtol=1e-4)
    assert not feats[0, :, 0, 5:].any()  # the first frame has no previous one
    noise = Stft(N_FFT, 64).analyze(torch.randn(1, 4096, generator=torch.Generator().manual_seed(0)))
    adv = torch.view_as_complex(bin_features(noise, 32, phase=True)[0, 17, 4:-4, 5:].contiguous())
    assert (adv / adv.abs()).mean().abs() < 0.5


def test_a_deep_filter_and_phase_features_grow_as_no_ops_and_train() -> None:
    source = _trained_source(embed=True)
    grown = build_model(_filtered(5), seed=1)
    assert load_grown(grown, source.state_dict()) == ["net.embed (input features)", "net.unembed (filter taps)"]
    x, cond = _probe_input()
    with torch.no_grad():
        assert torch.equal(grown(x, 0.2, cond), source(x, 0.2, cond))
    grown.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = grown.loss(x, torch.full((2,), 0.1), cond, generator=torch.Generator().manual_seed(5)).mean()
    loss.backward()
    w = grown.net.unembed.weight.grad.view(*grown.net.unembed.weight.shape[:2], -1, WIDTH)
    assert w[:, :, 4:].abs().sum() > 0  # the new taps learn
    e = grown.net.embed.weight.grad.view(grown.net.embed.bands, WIDTH, -1, grown.net.embed.weight.shape[-1])
    assert e[:, :, FEATURES_PER_BIN:].abs().sum() > 0  # so do the phase features' weights
    grown.net.unembed.reset_gain()
    v = grown.net.unembed.weight.view(*grown.net.unembed.weight.shape[:2], -1, WIDTH)
    assert not v[:, :, :2].any() and not v[:, :, 4:].any() and v[:, :, 2:4].any()


def test_harmonic_features_line_up_a_notes_partials_at_its_fundamental() -> None:
    t = torch.arange(8192) / SR
    f0 = 20.3 * SR / 1024  # between bins: the n-th partial drifts n·0.3 bins from n times bin 20
    note = sum(torch.sin(2 * math.pi * n * f0 * t) / n for n in (1, 2, 3, 4))[None]
    spec = Stft(1024, 256).analyze(note)
    logp = (spec.abs().pow(2) + 1e-4).log() / 4
    ratios = (0.25, 0.5, 2.0, 3.0, 4.0)
    feats = bin_features(spec, 512, phase=True, harmonics=ratios)  # [1, 512, N, 5 + 2 + 5]
    assert feats.shape[-1] == FEATURES_PER_BIN + PHASE_FEATURES + len(ratios)
    assert torch.equal(feats[..., :FEATURES_PER_BIN + PHASE_FEATURES], bin_features(spec, 512, phase=True))
    frame = feats[0, :, 10, FEATURES_PER_BIN + PHASE_FEATURES:]  # [512, 5]
    peak = logp[0, :, 10]
    for col, n in ((2, 2), (3, 3), (4, 4)):  # at the fundamental's bin, h = n reads the n-th partial
        assert frame[20, col] >= peak[round(n * 20.3)] - 1e-6
        assert frame[20, col] > peak[n * 20 + 10] + 1.0  # far above the gap between partials
    assert frame[41, 1] >= peak[20] - 1e-6  # at the 2nd partial, h = 1/2 reads the fundamental
    assert frame[81, 0] >= peak[20] - 1e-6  # at the 4th, h = 1/4 does
    assert (frame[300:, 2:] == math.log(1e-4) / 4).all()  # h·k past the last bin reads silence
    stack = harmonic_stack(logp, (2.0,))  # the largest log power within a bin of 2k
    assert torch.equal(stack[0, 7, :, 0], logp[0, 13:16].amax(0))


def test_harmonic_features_grow_as_no_ops_and_their_settings_are_checked() -> None:
    source = _trained_source(_filtered(3), embed=True)
    cfg = _filtered(3)
    grown = build_model(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, harmonic_features=(0.5, 2))),
                        seed=1)
    assert load_grown(grown, source.state_dict()) == ["net.embed (input features)"]
    x, cond = _probe_input()
    with torch.no_grad():
        assert torch.equal(grown(x, 0.2, cond), source(x, 0.2, cond))
    grown.train()
    grown.loss(x, torch.full((2,), 0.5), cond, generator=torch.Generator().manual_seed(5)).mean().backward()
    e = grown.net.embed.weight.grad.view(grown.net.embed.bands, WIDTH, -1, grown.net.embed.weight.shape[-1])
    assert e[:, :, FEATURES_PER_BIN + PHASE_FEATURES:].abs().sum() > 0  # the new features' weights learn
    for bad in ((1.0,), (0.0,), (2.0, 2.0), (math.inf,), (math.nan,)):
        with pytest.raises(ValueError, match="harmonic_features must be distinct finite ratios"):
            dataclasses.replace(cfg.unet, harmonic_features=bad)
    default = model_config("default")
    with pytest.raises(ValueError, match="settings of the 'bandunet2d' network"):
        build_model(dataclasses.replace(default, unet=dataclasses.replace(default.unet, harmonic_features=(2,))))


def _harmonic(ratios: tuple[float, ...], phase: bool = True) -> ModelConfig:
    cfg = _filtered(3, phase)
    return dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, harmonic_features=ratios))


def test_growing_refuses_features_that_would_land_on_other_inputs() -> None:
    source = _trained_source(_harmonic((2.0,), phase=False), embed=True)
    more = build_model(_harmonic((2.0, 3.0), phase=False), seed=1)  # appended: fine
    assert load_grown(more, source.state_dict(), source.model_config.unet) == ["net.embed (input features)"]
    x, cond = _probe_input()
    with torch.no_grad():
        assert torch.equal(more(x, 0.2, cond), source(x, 0.2, cond))
    for target, why in ((_harmonic((2.0,)), "phase_features cannot change"),  # phase would sit before h = 2
                        (_harmonic((3.0,), phase=False), "do not start with"),  # same shapes, other meaning
                        (_harmonic((3.0, 2.0), phase=False), "do not start with")):
        with pytest.raises(ValueError, match=why):
            load_grown(build_model(target, seed=1), source.state_dict(), source.model_config.unet)
    with pytest.raises(ValueError, match="dropping inputs"):
        load_grown(build_model(_filtered(3, phase=False), seed=1), build_model(_filtered(3), seed=0).state_dict(),
                   _filtered(3).unet)


def test_the_mask_scale_multiplies_every_tap_and_not_the_residual() -> None:
    net = build_model(_filtered(3), seed=0).net
    spec = net.stft.analyze(torch.randn(1, 2048, generator=torch.Generator().manual_seed(2)))
    h = torch.zeros(1, 16, 8, spec.shape[-1])
    with torch.no_grad():
        net.unembed.bias.normal_(generator=torch.Generator().manual_seed(3))
        out = net.unembed.head(h)
        residual_only = out.clone()
        residual_only[:, [0, 1, 4, 5, 6, 7]] = 0
        gains = net.unembed.synthesize(out, spec) - net.unembed.synthesize(residual_only, spec)
        scale = torch.tensor([2.5])
        scaled = net.unembed.synthesize(out, spec, scale) - net.unembed.synthesize(residual_only, spec, scale)
    assert gains.abs().max() > 1e-3 and torch.allclose(scaled, 2.5 * gains, atol=1e-5)


def test_a_deep_filter_grows_more_taps_each_in_its_own_frame() -> None:
    source = _trained_source(_filtered(3))
    grown = build_model(_filtered(5), seed=1)
    assert load_grown(grown, source.state_dict()) == ["net.unembed (filter taps)"]
    x, cond = _probe_input()
    with torch.no_grad():
        assert torch.allclose(grown(x, 0.2, cond), source(x, 0.2, cond), atol=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):  # fewer taps is not growing
        load_grown(build_model(_filtered(3), seed=0), grown.state_dict())
    with pytest.raises(ValueError, match="shapes differ"):  # nor is dropping the phase features
        load_grown(build_model(_filtered(5, phase=False), seed=0), grown.state_dict())


def test_filter_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="filter_taps must be odd"):
        _filtered(4)
    cfg = model_config("default")
    with pytest.raises(ValueError, match="settings of the 'bandunet2d' network"):
        build_model(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, filter_taps=3)))


def test_band_attention_grows_as_a_no_op_and_mixes_bands_within_a_frame_only() -> None:
    source = _trained_source()
    cfg = tiny_bands_config()
    grown = build_model(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, band_attn_levels=(0, 1))), seed=1)
    assert load_grown(grown, source.state_dict()) == ["net.down.0.band_attn", "net.down.1.band_attn",
                                                      "net.up.0.band_attn", "net.up.1.band_attn"]
    x, cond = _probe_input()
    with torch.no_grad():
        assert torch.equal(grown(x, 0.2, cond), source(x, 0.2, cond))
    attn = grown.net.down[0].band_attn
    with torch.no_grad():
        attn.out.weight.normal_()
        h = torch.randn(1, 16, 8, 6, generator=torch.Generator().manual_seed(4))
        base = attn(h)
        h2 = h.clone()
        h2[:, :, 0, 2] += 1.0  # one band of frame 2
        delta = (attn(h2) - base).abs().sum((0, 1))  # [bands, frames]
        assert delta[1:, 2].min() > 0  # every other band of that frame reads it
        assert delta[:, [0, 1, 3, 4, 5]].max() == 0  # no other frame does
        last = attn(h.contiguous(memory_format=torch.channels_last))
        assert last.is_contiguous(memory_format=torch.channels_last) and torch.allclose(last, base, atol=1e-6)
    with pytest.raises(ValueError, match="band_attn_levels"):
        dataclasses.replace(cfg.unet, band_attn_levels=(2,))
