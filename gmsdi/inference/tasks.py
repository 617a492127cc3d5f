"""The tasks of METHOD.md §3 on tensors: build the constraint wrappers and call a sampler.

These functions know nothing about audio files, levels or prompts; `gmsdi.pipeline` prepares
their inputs (one window at a time) and `gmsdi.inference.chunking` strings windows together.

Stack layouts:
- generation / accompaniment: [B, K+1, T], the K sources then the mixture chain y;
- separation / extraction: [B, K, T], the K sources (they sum to the mixture).

`sample_stack` is the sampling core that generation shares with MSDM's joint generation
(`gmsdi.inference.msdm`), whose stack is the K channels of one network.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from gmsdi.inference.constraints import (
    DIRAC_MODES,
    DiracConstraint,
    KnownValues,
    MixtureCoupling,
    ProjectedDirac,
    StackDenoiser,
    step_factors,
)
from gmsdi.sampling.samplers import Callback, get_sampler, get_sigmas_karras


def _noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=device)


@torch.no_grad()
def generate_sources(
    denoiser: StackDenoiser,
    n_sources: int,
    length: int,
    sigmas: torch.Tensor,
    *,
    gamma_x: float,
    gamma_y: float,
    gamma_mode: str = "relative",
    coupling_sigma_min: float = 0.0,
    **stack: Any,
) -> torch.Tensor:
    """K stems and their mixture, sampled in parallel with Eq. (2) (METHOD.md §3.1-3.2).

    Args:
        denoiser: per-chain (guided) denoiser over [B, K+1, T] (`GuidedDenoiser`).
        n_sources: K.
        length: T in samples (a valid network length).
        sigmas: [n + 1] noise levels ending at 0.
        gamma_x, gamma_y, gamma_mode: the likelihood widths of Eq. (2) (`MixtureCoupling`).
        coupling_sigma_min: below this σ the chains run uncoupled (`MixtureCoupling.sigma_min`).
        stack: the keywords of `sample_stack` (known, mask, locked_noise, sampler, s_churn, s_tmin,
            resamples, batch, callback, generator, device); `known`/`mask` are [B or 1, K+1, T].

    Returns:
        [B, K+1, T]: the stems, then the mixture chain; known entries equal `known` exactly.
    """
    inner, known_mask = denoiser, None
    if gamma_mode in ("denoised", "wiener") and stack.get("mask") is not None:
        # The estimates' residual counts known entries at their clean values (§3.2: D(x_i) = x_i).
        device = stack.get("device", "cpu")
        known_mask = stack["mask"].to(device)
        inner = KnownValues(denoiser, stack["known"].to(device), known_mask)
    coupling = MixtureCoupling(inner, gamma_x, gamma_y, gamma_mode, known_mask=known_mask,
                               sigma_min=coupling_sigma_min)
    return sample_stack(coupling, n_sources + 1, length, sigmas, **stack)


@torch.no_grad()
def sample_stack(
    denoiser: StackDenoiser,
    n_chains: int,
    length: int,
    sigmas: torch.Tensor,
    *,
    known: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    locked_noise: str = "fixed",
    sampler: str = "heun",
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    resamples: int = 1,
    batch: int = 1,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Samples a stack [B, N, T] from pure noise with any stack denoiser, optionally inpainting.

    The shared core of `generate_sources` (whose denoiser is the Eq. (2) coupling over K + 1
    chains) and of MSDM's joint generation (`JointDenoiser`, whose chains are the channels of one
    network).

    Args:
        denoiser: a stack denoiser [B, N, T] -> [B, N, T].
        n_chains: N.
        length: T in samples (a valid network length).
        sigmas: [n + 1] noise levels ending at 0.
        known, mask: [B or 1, N, T] clean values and where they are known: locked stems (whole
            chains, §3.2) or the context of a previous window. None = nothing known.
        locked_noise: "fixed" or "fresh" ε for known entries (`KnownValues`).
        sampler: a name in `gmsdi.sampling.SAMPLERS`.
        s_churn, s_tmin, resamples: passed to the sampler (churn at σ ≥ s_tmin only, Karras S_tmin).
        batch: B.
        callback: the sampler callback (see `gmsdi.sampling.samplers`); may cancel.
        generator: all randomness (initial noise, churn, fresh locked noise).

    Returns:
        [B, N, T]; known entries equal `known` exactly.
    """
    eps = _noise((batch, n_chains, length), generator, device)
    sigma_max = float(sigmas[0])
    inpaint = None
    model = denoiser
    if mask is not None:
        if known is None:
            raise ValueError("a mask needs the known values")
        inpaint = KnownValues(denoiser, known.to(device), mask.to(device), locked_noise, generator)
        model = inpaint
        x = inpaint.initial_state(eps, sigma_max)
    else:
        x = sigma_max * eps
    x = get_sampler(sampler)(model, x, sigmas, callback=callback, s_churn=s_churn, s_tmin=s_tmin,
                             resamples=resamples, generator=generator)
    return inpaint.apply(x) if inpaint is not None else x


@torch.no_grad()
def separate_sources(
    denoiser: StackDenoiser,
    mixture: torch.Tensor,
    n_sources: int,
    sigmas: torch.Tensor,
    *,
    constrained: int,
    dirac: str = "constrained",
    sampler: str = "euler",
    s_churn: float = 20.0,
    s_tmin: float = 0.0,
    resamples: int = 1,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The Dirac separator (METHOD.md §3.3): K sources that sum exactly to the mixture.

    Args:
        denoiser: per-chain (guided) denoiser over all K sources [B, K, T].
        mixture: [B, T] the mixture y.
        n_sources: K (2 for the extractor: target and rest).
        sigmas: [n + 1] noise levels ending at 0.
        constrained: index of the source set to y − Σ others (`dirac="constrained"`).
        dirac: "constrained" (MSDM: `DiracConstraint`, the K−1 other sources are sampled) or
            "projected" (`ProjectedDirac`: all K sampled on the plane Σ x = y; `constrained` unused).
        sampler, s_churn, s_tmin, resamples, callback, generator: as `generate_sources`.

    Returns:
        [B, K, T]; summing over K gives `mixture` up to float rounding.
    """
    if dirac not in DIRAC_MODES:
        raise ValueError(f"unknown Dirac form {dirac!r}; valid names are {list(DIRAC_MODES)}")
    b, t = mixture.shape
    run = get_sampler(sampler)
    if dirac == "projected":
        plane = ProjectedDirac(denoiser, mixture, n_sources)
        x = plane.initial_state(_noise((b, n_sources, t), generator, mixture.device), float(sigmas[0]))
        x = run(plane, x, sigmas, callback=callback, s_churn=s_churn, s_tmin=s_tmin, resamples=resamples,
                generator=generator)
        return plane.project(x)  # the last step returns a projected estimate; this removes the rounding
    constraint = DiracConstraint(denoiser, mixture, constrained, n_sources)
    x = float(sigmas[0]) * _noise((b, n_sources - 1, t), generator, mixture.device)
    free = run(constraint, x, sigmas, callback=callback, s_churn=s_churn, s_tmin=s_tmin, resamples=resamples,
               generator=generator)
    return constraint.complete(free)


MAX_DIRAC_ERROR = 10.0


class DiracStepsError(ValueError):
    """Too few steps for MSDM's Dirac form with this many stems (`check_dirac_steps`)."""


def dirac_error(sigmas: torch.Tensor, n_sources: int, sigma_data: float, *, dirac: str = "constrained",
                sampler: str = "euler", s_churn: float = 20.0, resamples: int = 1, length: int = 2048,
                s_tmin: float = 0.0) -> float:
    """How far a separator schedule lands from the answer when the answer is known: K Gaussian
    sources of variance σ_d²/K (so the mix has the training data's σ_d), their exact denoiser, a
    seeded mix, and the mean squared distance of the separated stems to the posterior mean y/K,
    in units of the posterior variance σ_d²/K·(1 − 1/K). A sampler that draws from the posterior
    scores about 1 (a deterministic one a little less); one whose steps overshoot the stiff sum
    direction of MSDM's form keeps the starting noise and scores hundreds to 1e5.

    This is a dry run of the real sampler code on [1, K, length] with a closed-form denoiser:
    milliseconds, and exact for the linear part of the dynamics that causes the failure.
    """
    v = sigma_data**2 / n_sources

    def gaussian(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return v / (v + sigma.view(-1, 1, 1) ** 2) * x

    g = torch.Generator().manual_seed(0)
    mixture = (torch.randn(1, n_sources, length, generator=g, dtype=torch.float64) * math.sqrt(v)).sum(dim=1)
    out = separate_sources(gaussian, mixture, n_sources, sigmas.double().cpu(), constrained=n_sources - 1,
                           dirac=dirac, sampler=sampler, s_churn=s_churn, s_tmin=s_tmin, resamples=resamples,
                           generator=g)
    err = float(((out - mixture[:, None] / n_sources) ** 2).mean()) / (v * (1 - 1 / n_sources))
    return err if math.isfinite(err) else math.inf


def _overshoots(sigmas: torch.Tensor, n_sources: int, sigma_data: float, sampler: str, s_churn: float,
                s_tmin: float = 0.0) -> bool:
    """Whether any step of MSDM's form overshoots along the sum of the free stems, for the Gaussian
    sources of `dirac_error`: there the sum direction moves as dr/dσ = c(σ)·r/σ with
    c = K·σ²/(σ² + σ_d²/K), and an Euler step multiplies r by 1 − c·h (Heun: as `coupling_growth`)."""
    v = sigma_data**2 / n_sources

    def c(sigma: float) -> float:
        return n_sources * sigma**2 / (sigma**2 + v)

    return any(abs(f) > 1 for f in step_factors(sigmas, c, sampler, s_churn, s_tmin))


@functools.lru_cache(maxsize=256)
def min_dirac_steps(n_sources: int, sigma_data: float, sigma_min: float, sigma_max: float, rho: float = 7.0, *,
                    sampler: str = "euler", s_churn: float = 20.0, resamples: int = 1,
                    max_steps: int = 1000, window: int = 8, s_tmin: float = 0.0) -> int | None:
    """The fewest Karras steps from which MSDM's Dirac form converges at every larger count
    (`dirac_error` ≤ `MAX_DIRAC_ERROR`), or None if none up to `max_steps` does.

    Near the edge of stability the error oscillates with the step count (a step can land on the
    far side of the answer and the next one back), so a lone count that happens to pass is not
    offered: from the first count with no overshooting step (larger counts take smaller steps)
    the search checks that it and the next `window` counts pass, then walks down while the dry
    run passes. Cached: a second call costs nothing.
    """

    def schedule(n: int) -> torch.Tensor:
        return get_sigmas_karras(n, sigma_min, sigma_max, rho)

    def fails(n: int) -> bool:
        return dirac_error(schedule(n), n_sources, sigma_data, sampler=sampler, s_churn=s_churn, s_tmin=s_tmin,
                           resamples=resamples, length=1024) > MAX_DIRAC_ERROR

    # below 4 steps there are too few steps to overshoot in, not steps that are safe: search from 4 up
    lo, hi = 4, min(4, max_steps)
    while hi < max_steps and _overshoots(schedule(hi), n_sources, sigma_data, sampler, s_churn, s_tmin):
        lo, hi = hi + 1, min(max_steps, 2 * hi)
    while lo < hi:  # the first count with no overshooting step
        mid = (lo + hi) // 2
        if _overshoots(schedule(mid), n_sources, sigma_data, sampler, s_churn, s_tmin):
            lo = mid + 1
        else:
            hi = mid
    n = hi
    while n <= max_steps:  # the next `window` counts must pass too (churn noise settles more slowly)
        bad = next((m for m in range(n, min(n + window, max_steps) + 1) if fails(m)), None)
        if bad is None:
            break
        n = bad + 1
    if n > max_steps:
        return None
    while n > 1 and not fails(n - 1):
        n -= 1
    return n


def check_dirac_steps(steps: int, n_sources: int, sigma_data: float, sigma_min: float, sigma_max: float,
                      rho: float = 7.0, *, sampler: str = "euler", s_churn: float = 20.0, resamples: int = 1,
                      max_steps: int = 1000, s_tmin: float = 0.0) -> int:
    """Raises `DiracStepsError` (a ValueError that says what to change) when `steps` is below
    `min_dirac_steps` for MSDM's Dirac form (`dirac="constrained"`); returns that minimum otherwise."""
    kw = {"sampler": sampler, "s_churn": s_churn, "resamples": resamples, "s_tmin": s_tmin}
    need = min_dirac_steps(n_sources, sigma_data, sigma_min, sigma_max, rho, max_steps=max_steps, **kw)
    if need is not None and steps >= need:
        return need
    err = dirac_error(get_sigmas_karras(steps, sigma_min, sigma_max, rho), n_sources, sigma_data, **kw)
    advice = f"use steps={need} or more, or " if need is not None else ""
    raise DiracStepsError(
        f"{steps} {sampler} steps (churn {s_churn:g}) are too few for MSDM's Dirac separator with {n_sources} "
        f"stems: the steps overshoot the constrained stem and the stems would keep the starting noise (on Gaussian "
        f"sources they land {err:.3g}x the posterior spread away). To fix it, {advice}"
        "use dirac='projected' (no stem singled out; it does not diverge at any step count)"
    )
