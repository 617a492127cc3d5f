"""σ schedules and EDM samplers (Karras et al. 2022, Alg. 2), as pure functions.

A sampler knows only `model(x, sigma, **extra_args) -> denoised`, where `x` is any tensor whose
first dimension is the batch (for GMSDI: a stack of sources [B, K, T]) and `sigma` is [B].
Guidance, the γ-coupling of Eq. (2), locked stems and the Dirac constraint are wrappers around
the model, never code inside a sampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import trange

Denoiser = Callable[..., torch.Tensor]
Callback = Callable[[dict], None]


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Karras et al. (2022) noise levels: `n` decreasing σ then a final 0, shape [n + 1]."""
    if n < 1:
        raise ValueError(f"need at least one step, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float().to(device)


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE derivative dx/dσ = (x − D(x; σ)) / σ."""
    return (x - denoised) / _expand(sigma, x)


def _expand(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


def _churn(x: torch.Tensor, sigma: float, s_churn: float, n: int, s_tmin: float, s_tmax: float,
           s_noise: float, generator: torch.Generator | None) -> tuple[torch.Tensor, float]:
    """Stochastic churn (Karras Alg. 2 lines 5-7): raise σ to σ̂ = σ(1 + γ) by adding noise."""
    gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + eps * s_noise * math.sqrt(sigma_hat ** 2 - sigma ** 2)
    return x, sigma_hat


@torch.no_grad()
def sample_euler(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: Callback | None = None, disable: bool = True, s_churn: float = 0.0,
                 s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler steps of the probability-flow ODE with optional churn. `x` starts at σ = sigmas[0]."""
    extra_args = extra_args or {}
    n = len(sigmas) - 1
    for i in trange(n, disable=disable):
        x, sigma_hat = _churn(x, float(sigmas[i]), s_churn, n, s_tmin, s_tmax, s_noise, generator)
        s = x.new_full((x.shape[0],), sigma_hat)
        denoised = model(x, s, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        x = x + to_d(x, s, denoised) * (float(sigmas[i + 1]) - sigma_hat)
    return x


@torch.no_grad()
def sample_heun(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                callback: Callback | None = None, disable: bool = True, s_churn: float = 0.0,
                s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Heun's second-order steps (Karras Alg. 2); the last step to σ = 0 is Euler."""
    extra_args = extra_args or {}
    n = len(sigmas) - 1
    for i in trange(n, disable=disable):
        x, sigma_hat = _churn(x, float(sigmas[i]), s_churn, n, s_tmin, s_tmax, s_noise, generator)
        s = x.new_full((x.shape[0],), sigma_hat)
        denoised = model(x, s, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        d = to_d(x, s, denoised)
        dt = float(sigmas[i + 1]) - sigma_hat
        if float(sigmas[i + 1]) == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            s_2 = x.new_full((x.shape[0],), float(sigmas[i + 1]))
            d_2 = to_d(x_2, s_2, model(x_2, s_2, **extra_args))
            x = x + (d + d_2) / 2 * dt
    return x
