"""Sampling: σ schedules and EDM samplers as pure functions (k-diffusion style)."""

from gmsdi.sampling.samplers import get_sigmas_karras, sample_euler, sample_heun, to_d

__all__ = ["get_sigmas_karras", "sample_euler", "sample_heun", "to_d"]
