"""EDM preconditioning (Karras et al. 2022) around a time-domain network (METHOD.md §2).

`EDMDenoiser` turns a raw network `F(x_in, c_noise, cond)` into the denoiser
`D(x; σ, z) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ), z)` and its training loss.
`forward` and `loss` share one `scalings` method; the network never does σ arithmetic.
Samplers only need `model(x, sigma, cond) -> denoised`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn


@dataclass
class EDMConfig:
    """Preconditioning and training-noise parameters.

    Attributes:
        sigma_data: σ_d, the standard deviation of the training waveforms (full scale = 1).
            MSDM used 0.2; a parameter, not measured.
        p_mean: mean of ln σ during training (MSDM: -3.0).
        p_std: standard deviation of ln σ during training (MSDM: 1.0).
        sigma_min: smallest σ the model is meant for (the samplers' default; MSDM 1e-4).
        sigma_max: largest σ the model is meant for (the samplers' default; MSDM 1.0).
        emphasis: a in the diffusion variable z = x[n] − a·x[n−1], the pre-emphasised waveform
            (`preemphasis`); 0 = the waveform itself. Music's power falls about 27 dB from 100 Hz to
            4–8 kHz, so white noise on the waveform hides the upper partials and the hi-hats until σ is
            small, and they are decided last, by the local denoising of the low σ; a = 0.9 flattens the
            training mixtures' mean spectrum to within ±3 dB (train/RUNS.md, session 24), so every
            band is decided at about the same σ. The map is linear and invertible, so Σ stems = mix
            holds for z as for x (METHOD.md §2): the samplers, Eq. (2) and the Dirac separator are unchanged.
    """

    sigma_data: float = 0.2
    p_mean: float = -3.0
    p_std: float = 1.0
    sigma_min: float = 1e-4
    sigma_max: float = 1.0
    emphasis: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.emphasis < 1:
            raise ValueError(f"emphasis must be in [0, 1) (0 = the waveform itself), got {self.emphasis}")
        if self.sigma_data <= 0 or self.p_std <= 0:
            raise ValueError(f"sigma_data and p_std must be positive, got {self.sigma_data}, {self.p_std}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")


Audio = TypeVar("Audio", torch.Tensor, np.ndarray)


def preemphasis(x: Audio, coef: float) -> Audio:
    """z[n] = x[n] − coef·x[n−1] along the last axis, with x[−1] = 0 (a first-order high-pass tilt).

    Args:
        x: [..., T] waveforms, a tensor or an array.
        coef: a in [0, 1); 0 returns `x` itself.

    Returns:
        [..., T] of the same type, dtype and device.
    """
    if coef == 0:
        return x
    z = x.clone() if isinstance(x, torch.Tensor) else x.copy()
    z[..., 1:] -= coef * x[..., :-1]
    return z


def deemphasis(z: Audio, coef: float) -> Audio:
    """The inverse of `preemphasis`: x[n] = z[n] + coef·x[n−1], x[−1] = 0 (a one-pole IIR filter).

    Runs in float64 through `scipy.signal.lfilter` on the CPU, so that a long signal keeps the exact
    inverse; the result has `z`'s type, dtype and device.
    """
    if coef == 0:
        return z
    from scipy.signal import lfilter

    array = z.detach().cpu().double().numpy() if isinstance(z, torch.Tensor) else np.asarray(z, np.float64)
    x = lfilter([1.0], [1.0, -coef], array, axis=-1)
    if isinstance(z, torch.Tensor):
        return torch.from_numpy(x).to(device=z.device, dtype=z.dtype)
    return x.astype(z.dtype, copy=False)


class EDMScalings(NamedTuple):
    """The EDM coefficients for a batch of noise levels; each [B] (Karras et al. 2022, Table 1)."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor
    weight: torch.Tensor


def sample_sigmas_lognormal(
    n: int,
    p_mean: float = -3.0,
    p_std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training noise levels: ln σ ~ N(p_mean, p_std²) (EDM; MSDM's -3, 1).

    Returns:
        [n] float32 σ values, on `device` (the generator's device must match).
    """
    return torch.exp(p_mean + p_std * torch.randn(n, generator=generator, device=device))


class EDMDenoiser(nn.Module):
    """The EDM denoiser D(x; σ, cond) around a network F(x_in, c_noise, cond) -> F.

    Args:
        net: maps x_in [B, C, T], c_noise [B] and a conditioning to [B, C, T].
        config: preconditioning parameters (σ_d, training σ distribution).
    """

    def __init__(self, net: nn.Module, config: EDMConfig | None = None) -> None:
        super().__init__()
        self.net = net
        self.config = config if config is not None else EDMConfig()
        # The full `ModelConfig` when built by `build_model` (checkpoints save it).
        self.model_config: Any = None

    @property
    def sigma_data(self) -> float:
        return self.config.sigma_data

    def encode(self, x: Audio) -> Audio:
        """Waveforms [..., T] -> the diffusion variable z [..., T] (`EDMConfig.emphasis`; x itself when 0)."""
        return preemphasis(x, self.config.emphasis)

    def decode(self, z: Audio) -> Audio:
        """The diffusion variable z [..., T] -> waveforms [..., T]; the inverse of `encode`."""
        return deemphasis(z, self.config.emphasis)

    def scalings(self, sigma: torch.Tensor) -> EDMScalings:
        """c_skip, c_out, c_in, c_noise and the loss weight for noise levels σ [B] (METHOD.md §2).

        c_skip = σd²/(σ²+σd²), c_out = σ·σd/√(σ²+σd²), c_in = 1/√(σ²+σd²), c_noise = ln(σ)/4,
        weight = (σ²+σd²)/(σ·σd)². σ = 0 is allowed in `forward` (D returns its input): c_noise
        uses σ clamped to 1e-20 so that the network sees finite values.
        """
        sd = self.config.sigma_data
        var = sigma**2 + sd**2
        c_skip = sd**2 / var
        c_out = sigma * sd / var.sqrt()
        c_in = var.rsqrt()
        c_noise = sigma.clamp_min(1e-20).log() / 4
        weight = var / (sigma * sd) ** 2
        return EDMScalings(c_skip, c_out, c_in, c_noise, weight)

    def _sigma_batch(self, sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"sigma must be a scalar or have shape [{x.shape[0]}], got {tuple(sigma.shape)}")
        return sigma

    @staticmethod
    def _bcast(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return c.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Any = None) -> torch.Tensor:
        """The denoised estimate D(x; σ, cond) ≈ E[x_0 | x_σ = x].

        Args:
            x: [B, C, T] noisy diffusion variables z + σε (the waveform itself unless `EDMConfig.emphasis`).
            sigma: σ, a scalar or [B].
            cond: the network's conditioning (a `TextEmbedding` for `UNet1d`; None = null prompt).

        Returns:
            [B, C, T] the denoised z (`decode` turns it into waveforms).
        """
        sigma = self._sigma_batch(sigma, x)
        s = self.scalings(sigma)
        f = self.net(x * self._bcast(s.c_in, x), s.c_noise, cond)
        return x * self._bcast(s.c_skip, x) + f * self._bcast(s.c_out, x)

    def loss(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        cond: Any = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        error_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Per-example EDM loss λ(σ)·mean‖D(z + σε; σ) − z‖², λ = (σ²+σd²)/(σ·σd)², z = `encode`(x).

        Computed in the equivalent form mean‖F(c_in·x_σ) − (x − c_skip·x_σ)/c_out‖², which is
        the same number without dividing by small c_out twice.

        Args:
            x: [B, C, T] clean waveforms; the noise is added to the diffusion variable z = `encode`(x).
            sigma: σ, a scalar or [B] (draw it with `sample_training_sigmas`).
            cond: the conditioning (see `forward`).
            noise: ε [B, C, T]; drawn with `generator` when None.
            error_weight: maps the scaled error [B, C, T] to [B] in place of its mean square, e.g. a
                `SpectralErrorWeight` (None: the mean square).

        Returns:
            [B] losses (mean over channels and samples).
        """
        sigma = self._sigma_batch(sigma, x)
        x = self.encode(x)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        s = self.scalings(sigma)
        noised = x + noise * self._bcast(sigma, x)
        f = self.net(noised * self._bcast(s.c_in, x), s.c_noise, cond)
        target = (x - noised * self._bcast(s.c_skip, x)) / self._bcast(s.c_out, x)
        if error_weight is not None:
            return error_weight(f - target)
        return (f - target).pow(2).flatten(1).mean(dim=1)

    def sample_training_sigmas(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """[n] training noise levels from the configured log-normal (`sample_sigmas_lognormal`)."""
        return sample_sigmas_lognormal(n, self.config.p_mean, self.config.p_std, generator, device)

    def extra_repr(self) -> str:
        return f"sigma_data={self.config.sigma_data}"
