"""σ schedules and EDM samplers (Karras et al. 2022, Alg. 2), as pure functions.

A sampler knows only `model(x, sigma, **extra_args) -> denoised`, where `x` is any tensor whose
first dimension is the batch (for GMSDI: a stack of sources [B, K, T]) and `sigma` is [B].
Guidance, the γ-coupling of Eq. (2), locked stems and the Dirac constraint are wrappers around
the model (`gmsdi.inference`), never code inside a sampler.

Callback contract (one for progress bars, previews and cancellation): after each network
evaluation that starts a step, `callback(info)` is called with a dict

    step        0-based index of the step being taken (0 .. total-1)
    total       number of steps (len(sigmas) - 1)
    resample    0-based pass of this step (always 0 unless `resamples` > 1)
    progress    fraction of the sampler's work done once this step finishes, in (0, 1]
    sigma       σ_i (float), the step's nominal noise level
    sigma_hat   σ̂ ≥ σ_i after stochastic churn (float)
    sigma_next  σ_{i+1} (float)
    x           the state at σ̂ (same shape as the sampler's `x`)
    denoised    the model's denoised estimate at σ̂ (same shape)
    i           alias of `step` (k-diffusion's name)

The callback may stop sampling by raising `Cancelled` (or any exception) or by returning True,
in which case the sampler raises `Cancelled`. Tensors in `info` are the sampler's own: copy them
if you keep them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import trange

Denoiser = Callable[..., torch.Tensor]
Callback = Callable[[dict], "bool | None"]


class Cancelled(Exception):  # noqa: N818 - a signal, not an error condition
    """Raised when a sampling callback asks to stop (returns True or raises it itself)."""


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


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _churn(x: torch.Tensor, sigma: float, s_churn: float, n: int, s_tmin: float, s_tmax: float,
           s_noise: float, generator: torch.Generator | None) -> tuple[torch.Tensor, float]:
    """Stochastic churn (Karras Alg. 2 lines 5-7): raise σ to σ̂ = σ(1 + γ) by adding noise."""
    gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        x = x + _randn_like(x, generator) * s_noise * math.sqrt(sigma_hat ** 2 - sigma ** 2)
    return x, sigma_hat


# One step from σ̂ to σ_next given D(x; σ̂): (model, x, sigma_hat, sigma_next, denoised, extra_args) -> x.
StepFn = Callable[[Denoiser, torch.Tensor, float, float, torch.Tensor, dict], torch.Tensor]


def _euler_step(model: Denoiser, x: torch.Tensor, sigma_hat: float, sigma_next: float,
                denoised: torch.Tensor, extra_args: dict) -> torch.Tensor:
    return x + (x - denoised) / sigma_hat * (sigma_next - sigma_hat)


def _heun_step(model: Denoiser, x: torch.Tensor, sigma_hat: float, sigma_next: float,
               denoised: torch.Tensor, extra_args: dict) -> torch.Tensor:
    d = (x - denoised) / sigma_hat
    dt = sigma_next - sigma_hat
    if sigma_next == 0:  # the last step to σ = 0 is Euler (Karras Alg. 2 line 9)
        return x + d * dt
    x_2 = x + d * dt
    s_2 = x.new_full((x.shape[0],), sigma_next)
    d_2 = to_d(x_2, s_2, model(x_2, s_2, **extra_args))
    return x + (d + d_2) / 2 * dt


def _sample(step: StepFn, model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None,
            callback: Callback | None, disable: bool, s_churn: float, s_tmin: float, s_tmax: float,
            s_noise: float, resamples: int, generator: torch.Generator | None) -> torch.Tensor:
    """The loop every sampler shares: churn, denoise, report, step, and MSDM's correction re-sampling."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1 (1 = no correction), got {resamples}")
    extra_args = extra_args or {}
    n = len(sigmas) - 1
    for i in trange(n, disable=disable):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        for r in range(resamples):
            x, sigma_hat = _churn(x, sigma, s_churn, n, s_tmin, s_tmax, s_noise, generator)
            denoised = model(x, x.new_full((x.shape[0],), sigma_hat), **extra_args)
            if callback is not None:
                progress = (i * resamples + r + 1) / (n * resamples)
                info = {"step": i, "i": i, "total": n, "resample": r, "progress": progress, "sigma": sigma,
                        "sigma_hat": sigma_hat, "sigma_next": sigma_next, "x": x, "denoised": denoised}
                if callback(info) is True:
                    raise Cancelled(f"sampling cancelled by the callback at step {i + 1} of {n}")
            x = step(model, x, sigma_hat, sigma_next, denoised, extra_args)
            if r < resamples - 1:
                # MSDM's correction: noise back up from σ_{i+1} to σ_i and take the step again.
                x = x + _randn_like(x, generator) * math.sqrt(sigma ** 2 - sigma_next ** 2)
    return x


@torch.no_grad()
def sample_euler(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: Callback | None = None, disable: bool = True, s_churn: float = 0.0,
                 s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
                 resamples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler steps of the probability-flow ODE with optional churn. `x` starts at σ = sigmas[0].

    Args:
        model: `model(x, sigma [B], **extra_args) -> denoised`, same shape as `x`.
        x: the initial state at σ = sigmas[0], any shape [B, ...] (e.g. a source stack [B, K, T]).
        sigmas: [n + 1] decreasing noise levels ending at 0 (`get_sigmas_karras`).
        callback: see the module docstring; return True to cancel.
        disable: hide the tqdm bar.
        s_churn, s_tmin, s_tmax, s_noise: stochastic churn (Karras Alg. 2); 0 = deterministic.
        resamples: passes per step (MSDM's correction re-sampling; 1 = none). Between passes the
            state is noised back from σ_{i+1} to σ_i with std √(σ_i² − σ_{i+1}²).
        generator: draws the churn and re-sampling noise.

    Returns:
        The sample at σ = 0, shaped as `x`.
    """
    return _sample(_euler_step, model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax,
                   s_noise, resamples, generator)


@torch.no_grad()
def sample_heun(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                callback: Callback | None = None, disable: bool = True, s_churn: float = 0.0,
                s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
                resamples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Heun's second-order steps (Karras Alg. 2); the last step to σ = 0 is Euler.

    Two network evaluations per step except the last (2n − 1 in all, times `resamples`). Arguments
    as `sample_euler`.
    """
    return _sample(_heun_step, model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax,
                   s_noise, resamples, generator)


Sampler = Callable[..., torch.Tensor]

# name -> sampler; every entry takes the arguments of `sample_euler`.
SAMPLERS: dict[str, Sampler] = {"euler": sample_euler, "heun": sample_heun}


def get_sampler(name: str) -> Sampler:
    """The sampler registered as `name` ("euler", "heun")."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid names are {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def network_evaluations(name: str, steps: int, resamples: int = 1) -> int:
    """Denoiser calls a sampler makes for `steps` steps (Heun: 2 per step, 1 for the last)."""
    get_sampler(name)
    per_pass = 2 * steps - 1 if name == "heun" else steps
    return per_pass * resamples
