"""Sampling: σ schedules and EDM samplers as pure functions (k-diffusion style)."""

from gmsdi.sampling.samplers import (
    SAMPLERS,
    Cancelled,
    get_sampler,
    get_sigmas_karras,
    network_evaluations,
    sample_euler,
    sample_heun,
    to_d,
)

__all__ = [
    "SAMPLERS",
    "Cancelled",
    "get_sampler",
    "get_sigmas_karras",
    "network_evaluations",
    "sample_euler",
    "sample_heun",
    "to_d",
]
