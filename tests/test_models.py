"""EDM preconditioning, the waveform U-Net, the factory, checkpoints and the profiler."""

from __future__ import annotations

import dataclasses
import math
import os

import pytest
import torch

from gmsdi.models import (
    NETWORKS,
    EDMConfig,
    EDMDenoiser,
    ModelConfig,
    UNet1d,
    UNetConfig,
    build_model,
    load_config,
    load_metadata,
    load_model,
    model_config,
    sample_sigmas_lognormal,
    save_model,
)
from gmsdi.models.profile import main as profile_main
from gmsdi.models.profile import profile_model
from gmsdi.text import HashTextEncoder, TextEmbedding

pytestmark = pytest.mark.usefixtures("one_thread")


T = 512  # samples; the tiny preset needs multiples of 32


def _randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Perturbs every weight, so that zero-initialised layers (output, FiLM) do something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def _cond(batch: int, dim: int = 384, seed: int = 0, length: int = 5) -> TextEmbedding:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[:, length - 2 :] = False
    tokens = torch.randn(batch, length, dim, generator=g) * mask[..., None]
    pooled = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=-1)
    return TextEmbedding(tokens, mask, pooled)


@pytest.fixture
def tiny() -> EDMDenoiser:
    return _randomize(build_model("tiny", seed=0)).eval()


def _x(batch: int = 2, length: int = T, seed: int = 1) -> torch.Tensor:
    return 0.2 * torch.randn(batch, 1, length, generator=torch.Generator().manual_seed(seed))


# -- EDM preconditioning ------------------------------------------------------------------------


def test_scalings_closed_form(tiny: EDMDenoiser) -> None:
    sd = tiny.sigma_data
    sigma = torch.tensor([1e-3, 0.2, 3.0])
    s = tiny.scalings(sigma)
    torch.testing.assert_close(s.c_skip, sd**2 / (sigma**2 + sd**2))
    torch.testing.assert_close(s.c_out, sigma * sd / (sigma**2 + sd**2).sqrt())
    torch.testing.assert_close(s.c_in, 1 / (sigma**2 + sd**2).sqrt())
    torch.testing.assert_close(s.c_noise, sigma.log() / 4)
    torch.testing.assert_close(s.weight, (sigma**2 + sd**2) / (sigma * sd) ** 2)
    # The loss weight makes the effective target unit-variance: λ·c_out² = 1.
    torch.testing.assert_close(s.weight * s.c_out**2, torch.ones(3))


def test_small_sigma_limit_returns_input(tiny: EDMDenoiser) -> None:
    s = tiny.scalings(torch.tensor([1e-8, 0.0]))
    assert torch.allclose(s.c_skip, torch.ones(2)) and torch.all(s.c_out <= 1e-8)
    assert torch.isfinite(s.c_noise).all()
    x = _x()
    with torch.no_grad():
        assert torch.equal(tiny(x, 0.0, _cond(2)), x)
        torch.testing.assert_close(tiny(x, 1e-7, _cond(2)), x, atol=1e-6, rtol=0)


def test_large_sigma_limit(tiny: EDMDenoiser) -> None:
    sd = tiny.sigma_data
    sigma = torch.tensor([1e4])
    s = tiny.scalings(sigma)
    assert s.c_skip.item() < 1e-8  # the noisy input is ignored ...
    assert abs(s.c_out.item() - sd) < 1e-6  # ... the output is the network's, at data scale
    assert abs((s.c_in * sigma).item() - 1) < 1e-6  # ... and the network sees unit-variance input


def test_forward_preserves_shape_and_accepts_scalar_sigma(tiny: EDMDenoiser) -> None:
    x = _x(3)
    with torch.no_grad():
        a = tiny(x, 0.5, _cond(3))
        b = tiny(x, torch.full((3,), 0.5), _cond(3))
    assert a.shape == x.shape and torch.equal(a, b)
    with pytest.raises(ValueError, match="sigma"):
        tiny(x, torch.ones(2), _cond(3))


def test_loss_is_weighted_denoising_error(tiny: EDMDenoiser) -> None:
    x = _x(4)
    sigma = torch.tensor([0.01, 0.1, 0.5, 2.0])
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    cond = _cond(4)
    with torch.no_grad():
        loss = tiny.loss(x, sigma, cond, noise=noise)
        denoised = tiny(x + sigma[:, None, None] * noise, sigma, cond)
    expected = tiny.scalings(sigma).weight * (denoised - x).pow(2).mean(dim=(1, 2))
    assert loss.shape == (4,) and torch.isfinite(loss).all() and (loss > 0).all()
    torch.testing.assert_close(loss, expected, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("coef", [0.0, 0.9])
def test_loss_noises_the_pre_emphasised_waveform(coef: float) -> None:
    model = _randomize(build_model(model_config("tiny", edm=EDMConfig(emphasis=coef)), seed=0)).eval()
    x = _x(2)
    sigma = torch.tensor([0.05, 0.5])
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    cond = _cond(2)
    z = model.encode(x)
    with torch.no_grad():
        loss = model.loss(x, sigma, cond, noise=noise)
        denoised = model(z + sigma[:, None, None] * noise, sigma, cond)
    expected = model.scalings(sigma).weight * (denoised - z).pow(2).mean(dim=(1, 2))
    torch.testing.assert_close(loss, expected, rtol=1e-3, atol=1e-5)
    if coef:  # z[n] = x[n] − a·x[n−1]: not the waveform
        torch.testing.assert_close(z[..., 1:], x[..., 1:] - coef * x[..., :-1])
        assert not torch.equal(z, x)
    else:
        assert z is x


def test_emphasis_round_trip_and_limits() -> None:
    from gmsdi.models.edm import deemphasis, preemphasis

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 480_000, generator=g)  # 30 s at 16 kHz: the IIR inverse must not drift
    z = preemphasis(x, 0.9)
    torch.testing.assert_close(deemphasis(z, 0.9), x, rtol=0, atol=1e-5)
    a = x[0, 0].numpy()
    za = preemphasis(a, 0.9)
    assert isinstance(za, type(a)) and za.dtype == a.dtype
    assert abs(deemphasis(za, 0.9) - a).max() < 1e-5
    assert deemphasis(z, 0.0) is z and preemphasis(x, 0.0) is x
    # the tilt it is for: a 100 Hz tone loses 17 dB against a 4 kHz one
    t = torch.arange(16000) / 16000
    low, high = (preemphasis(torch.sin(2 * math.pi * f * t), 0.9)[100:].pow(2).mean() for f in (100.0, 4000.0))
    assert 10 * math.log10(high / low) > 15
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="emphasis must be in"):
            EDMConfig(emphasis=bad)


def test_loss_draws_noise_from_generator(tiny: EDMDenoiser) -> None:
    x, cond = _x(2), _cond(2)
    with torch.no_grad():
        a = tiny.loss(x, 0.1, cond, generator=torch.Generator().manual_seed(5))
        b = tiny.loss(x, 0.1, cond, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_lognormal_sigmas() -> None:
    a = sample_sigmas_lognormal(20000, -3.0, 1.0, generator=torch.Generator().manual_seed(0))
    b = sample_sigmas_lognormal(20000, -3.0, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and (a > 0).all()
    assert abs(a.log().mean().item() + 3.0) < 0.05 and abs(a.log().std().item() - 1.0) < 0.05
    model = build_model(model_config("tiny", edm=EDMConfig(p_mean=-1.0, p_std=0.5)))
    s = model.sample_training_sigmas(5000, generator=torch.Generator().manual_seed(1))
    assert abs(s.log().mean().item() + 1.0) < 0.05


def test_tiny_model_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = build_model("tiny", seed=0).train()
    g = torch.Generator().manual_seed(0)
    t = torch.arange(1024) / 16000
    x = 0.3 * torch.sin(2 * math.pi * torch.tensor([[220.0], [330.0], [440.0], [550.0]]) * t)[:, None, :]
    sigma = torch.tensor([0.02, 0.05, 0.1, 0.3])
    noise = torch.randn(x.shape, generator=g)
    cond = HashTextEncoder().encode(["bass", "piano", "drums", ""])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = model.loss(x, sigma, cond, noise=noise).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses


# -- the network ---------------------------------------------------------------------------------


def test_null_prompt_gives_finite_output(tiny: EDMDenoiser) -> None:
    x = _x(2)
    null = TextEmbedding.null(2, 384, length=4)
    with torch.no_grad():
        out_null = tiny(x, 0.3, null)
        out_none = tiny(x, 0.3, None)
        out_prompt = tiny(x, 0.3, _cond(2))
    assert torch.isfinite(out_null).all()
    torch.testing.assert_close(out_null, out_none)  # padding length does not matter
    assert not torch.allclose(out_null, out_prompt)


def test_conditioning_as_mapping_and_batch_check(tiny: EDMDenoiser) -> None:
    x, cond = _x(2), _cond(2)
    with torch.no_grad():
        a = tiny(x, 0.3, cond)
        b = tiny(x, 0.3, {"tokens": cond.tokens, "mask": cond.mask, "pooled": cond.pooled})
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="batch"):
        tiny(x, 0.3, _cond(3))


def test_masked_tokens_are_ignored(tiny: EDMDenoiser) -> None:
    x, cond = _x(2), _cond(2)
    junk = cond.tokens.clone()
    junk[~cond.mask] = 100.0
    with torch.no_grad():
        a = tiny(x, 0.3, cond)
        b = tiny(x, 0.3, TextEmbedding(junk, cond.mask, cond.pooled))
    torch.testing.assert_close(a, b)


def test_length_validation(tiny: EDMDenoiser) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny(_x(1, length=T + 8), 0.3, None)
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        tiny(torch.zeros(1, 2, T), 0.3, None)


def test_output_layer_is_zero_initialised() -> None:
    model = build_model("tiny", seed=0).eval()
    x = _x(2)
    with torch.no_grad():
        out = model(x, 0.5, _cond(2))
    torch.testing.assert_close(out, model.scalings(torch.tensor([0.5])).c_skip * x)


def test_default_preset_size_and_forward() -> None:
    config = model_config("default")
    model = build_model(config, seed=0).eval()
    params = sum(p.numel() for p in model.parameters())
    assert 4e6 <= params <= 15e6, params
    assert config.segment_samples % config.unet.length_multiple == 0
    length = 2 * config.unet.length_multiple
    with torch.no_grad():
        out = model(_x(1, length), 0.1, _cond(1, config.text_dim))
    assert out.shape == (1, 1, length) and torch.isfinite(out).all()


# -- configs and the factory ---------------------------------------------------------------------


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="patch_size"):
        UNetConfig(patch_size=64, channels=(32, 64), num_blocks=(1, 1))
    with pytest.raises(ValueError, match="num_blocks"):
        UNetConfig(channels=(64, 128), num_blocks=(1,))
    with pytest.raises(ValueError, match="segment_samples"):
        model_config("default", segment_samples=64001)
    with pytest.raises(ValueError, match="unet1d"):
        ModelConfig(network="transformer")
    with pytest.raises(ValueError, match="tiny"):
        model_config("huge")
    assert NETWORKS["unet1d"] is UNet1d


def test_config_dict_round_trip() -> None:
    config = model_config("tiny", sample_rate=22050)
    again = ModelConfig.from_dict(config.to_dict())
    assert again == config
    with pytest.raises(ValueError, match="unknown UNetConfig fields"):
        ModelConfig.from_dict({**config.to_dict(), "unet": {"widths": [1]}})


def test_build_model_seed_is_deterministic_and_local() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_model("tiny", seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_model("tiny", seed=7)
    assert all(
        torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


# -- checkpoints ---------------------------------------------------------------------------------


def test_save_load_round_trip_is_bit_identical(tiny: EDMDenoiser, tmp_path) -> None:
    config = model_config("tiny")
    path = save_model(tmp_path / "ckpt" / "model.safetensors", tiny, config, metadata={"step": "7"})
    assert load_config(path) == config
    assert load_metadata(path)["step"] == "7"
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # written atomically, no temp left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, readable by others as usual
    loaded = load_model(path)
    assert not loaded.training
    x, cond = _x(2), _cond(2)
    with torch.no_grad():
        assert torch.equal(tiny(x, 0.2, cond), loaded(x, 0.2, cond))


def test_a_failed_write_leaves_no_file(tmp_path) -> None:
    from gmsdi.checkpoint_io import write_safetensors

    with pytest.raises(AttributeError):
        write_safetensors(tmp_path / "x.safetensors", {"w": "not a tensor"}, {})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_save_uses_the_models_own_config(tmp_path) -> None:
    model = build_model(model_config("tiny", segment_samples=32000))
    path = save_model(tmp_path / "m.safetensors", model)
    assert load_config(path).segment_samples == 32000
    bare = EDMDenoiser(UNet1d(model_config("tiny").unet))
    with pytest.raises(ValueError, match="ModelConfig"):
        save_model(tmp_path / "bare.safetensors", bare)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_model(junk)
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="without a gmsdi model config"):
        load_model(plain)
    # Weights that do not fit the stored config.
    small = save_model(tmp_path / "small.safetensors", build_model("tiny"))
    from safetensors import safe_open

    with safe_open(str(small), framework="pt") as f:
        meta = f.metadata()
    wide = dataclasses.replace(model_config("tiny"), text_dim=16)
    meta["gmsdi_model_config"] = __import__("json").dumps(wide.to_dict())
    state = build_model("tiny").state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(small), metadata=meta)
    with pytest.raises(ValueError, match="do not match"):
        load_model(small)


# -- profiling -----------------------------------------------------------------------------------


def test_profile_reports_costs(capsys) -> None:
    model = build_model("tiny", seed=0)
    before = [p.clone() for p in model.parameters()]
    report = profile_model(model, samples=1024, batches=(1, 2), train_batch=2, repeats=1)
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.gflops_forward > 0 and set(report.ms_forward) == {1, 2}
    assert report.s_train_step > 0
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))
    profile_main(
        ["--preset", "tiny", "--seconds", "0.064", "--batches", "1", "--train-batch", "0", "--repeats", "1"]
    )
    out = capsys.readouterr().out
    assert "| parameters |" in out and "GFLOPs" in out


def test_cross_attention_matches_scaled_dot_product_attention() -> None:
    """The written-out attention is F.scaled_dot_product_attention over the null key and the kept tokens."""
    from gmsdi.models.unet import CrossAttention

    torch.manual_seed(0)
    attn = CrossAttention(32, 24, head_dim=8, max_groups=8)
    torch.nn.init.normal_(attn.out.weight)
    x, tokens = torch.randn(3, 32, 10), torch.randn(3, 5, 24)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    b, c, n, h = 3, 32, 10, attn.heads
    q = attn.q(attn.norm(x).transpose(1, 2)).reshape(b, n, h, c // h).transpose(1, 2)
    k, v = attn.kv(tokens).chunk(2, dim=-1)
    k = torch.cat([attn.null_kv[0].expand(b, 1, c), k], 1).reshape(b, -1, h, c // h).transpose(1, 2)
    v = torch.cat([attn.null_kv[1].expand(b, 1, c), v], 1).reshape(b, -1, h, c // h).transpose(1, 2)
    keep = torch.cat([torch.ones(b, 1, dtype=torch.bool), mask], 1)[:, None, None, :]
    a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    expected = x + attn.out(a.transpose(1, 2).reshape(b, n, c)).transpose(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, tokens, mask), expected.detach(), rtol=1e-5, atol=1e-5)
