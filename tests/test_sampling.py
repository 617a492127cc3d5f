"""Samplers against the closed form of a Gaussian data model; the callback contract; resampling."""

from __future__ import annotations

import math

import pytest
import torch

from gmsdi.sampling import (
    SAMPLERS,
    Cancelled,
    get_sampler,
    get_sigmas_karras,
    network_evaluations,
    sample_euler,
    sample_heun,
)

pytestmark = pytest.mark.usefixtures("one_thread")


V = 0.04  # data variance (σ_d² of the model)
SIGMA_MAX = 1.0  # the model's range


class Gaussian:
    """D(x; σ) = v/(v + σ²)·x, the exact denoiser of N(0, v) data; counts its calls."""

    def __init__(self, v: float = V) -> None:
        self.v = v
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * (self.v / (self.v + sigma**2)).reshape(-1, *([1] * (x.ndim - 1)))


def _start(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Exact samples of the noisy marginal at σ_max: N(0, v + σ_max²)."""
    return math.sqrt(V + SIGMA_MAX**2) * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_karras_schedule() -> None:
    s = get_sigmas_karras(10, 1e-3, 80.0)
    assert s.shape == (11,) and s[-1] == 0
    assert torch.isclose(s[0], torch.tensor(80.0)) and torch.isclose(s[-2], torch.tensor(1e-3))
    assert torch.all(s[:-1] > s[1:])
    with pytest.raises(ValueError, match="at least one step"):
        get_sigmas_karras(0, 1e-3, 1.0)


@pytest.mark.parametrize("name,steps,churn,resamples", [("heun", 30, 0.0, 1), ("euler", 400, 0.0, 1),
                                                        ("euler", 1000, 30.0, 1), ("heun", 100, 10.0, 1),
                                                        ("euler", 200, 0.0, 2)])
def test_gaussian_variance(name: str, steps: int, churn: float, resamples: int) -> None:
    """Started from the noisy marginal N(0, v + σ_max²), every sampler ends at N(0, v).

    (Churn and first-order steps converge more slowly, hence their step counts.)
    """
    x = _start((8, 4096))
    out = get_sampler(name)(Gaussian(), x, get_sigmas_karras(steps, 1e-4, SIGMA_MAX), s_churn=churn,
                            resamples=resamples, generator=torch.Generator().manual_seed(1))
    assert out.var().item() == pytest.approx(V, rel=0.03)


def test_ode_is_deterministic_and_exact_per_sample() -> None:
    """Without churn the Gaussian ODE is linear: each sample is scaled by √(v/(v + σ_max²))."""
    x = _start((2, 256))
    out = sample_heun(Gaussian(), x, get_sigmas_karras(60, 1e-4, SIGMA_MAX))
    scale = math.sqrt(V / (V + SIGMA_MAX**2))
    torch.testing.assert_close(out, x * scale, rtol=5e-3, atol=1e-6)


def test_resamples_and_evaluation_count() -> None:
    """MSDM correction re-sampling repeats each step."""
    model = Gaussian()
    steps, resamples = 50, 2
    sample_euler(model, _start((1, 64)), get_sigmas_karras(steps, 1e-3, SIGMA_MAX), resamples=resamples,
                 s_churn=20.0, generator=torch.Generator().manual_seed(0))
    assert model.calls == network_evaluations("euler", steps, resamples) == steps * resamples
    heun = Gaussian()
    sample_heun(heun, _start((1, 64)), get_sigmas_karras(5, 1e-3, 1.0), resamples=3)
    assert heun.calls == network_evaluations("heun", 5, 3) == 3 * 9
    with pytest.raises(ValueError, match="resamples"):
        sample_euler(Gaussian(), _start((1, 8)), get_sigmas_karras(2, 1e-3, 1.0), resamples=0)


def test_same_generator_same_output() -> None:
    sigmas = get_sigmas_karras(8, 1e-3, 1.0)
    a, b, c = (sample_euler(Gaussian(), _start((2, 64)), sigmas, s_churn=40.0, resamples=2,
                            generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_callback_contract() -> None:
    seen: list[dict] = []
    steps, resamples = 4, 2
    x0 = _start((2, 3, 16))
    sample_heun(Gaussian(), x0, get_sigmas_karras(steps, 1e-3, 1.0), resamples=resamples,
                callback=lambda info: seen.append(info))
    assert len(seen) == steps * resamples
    for info in seen:
        keys = {"step", "total", "sigma", "sigma_hat", "sigma_next", "x", "denoised", "progress", "resample"}
        assert keys <= set(info)
        assert info["total"] == steps and info["x"].shape == info["denoised"].shape == x0.shape
    assert [i["step"] for i in seen] == [0, 0, 1, 1, 2, 2, 3, 3]
    progress = [i["progress"] for i in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert seen[-1]["sigma_next"] == 0.0


def test_callback_cancels() -> None:
    model = Gaussian()
    with pytest.raises(Cancelled, match="step 2 of 5"):
        sample_euler(model, _start((1, 8)), get_sigmas_karras(5, 1e-3, 1.0), callback=lambda i: i["step"] == 1)
    assert model.calls == 2

    def stop(info: dict) -> None:
        raise Cancelled("user pressed stop")

    with pytest.raises(Cancelled, match="user pressed stop"):
        sample_heun(Gaussian(), _start((1, 8)), get_sigmas_karras(5, 1e-3, 1.0), callback=stop)


def test_sampler_registry() -> None:
    assert set(SAMPLERS) == {"euler", "heun"}
    with pytest.raises(ValueError, match=r"unknown sampler 'rk4'; valid names are \['euler', 'heun'\]"):
        get_sampler("rk4")


def test_churn_stops_below_s_tmin() -> None:
    """Karras S_tmin: no churn at σ < s_tmin; above it the churn raises σ as before."""
    sigmas = get_sigmas_karras(20, 1e-3, SIGMA_MAX)
    seen: list[tuple[float, float]] = []
    sample_euler(Gaussian(), _start((1, 64)), sigmas, s_churn=10.0, s_tmin=0.05,
                 callback=lambda info: seen.append((info["sigma"], info["sigma_hat"])),
                 generator=torch.Generator().manual_seed(0))
    assert all((hat == s) == (s < 0.05) for s, hat in seen) and any(s < 0.05 for s, _ in seen)
    x = _start((2, 64))
    plain = sample_euler(Gaussian(), x, sigmas)
    torch.testing.assert_close(sample_euler(Gaussian(), x, sigmas, s_churn=10.0, s_tmin=2 * SIGMA_MAX), plain)
