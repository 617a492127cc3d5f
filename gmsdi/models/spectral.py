"""The spectral front end of the denoiser: STFT analysis in, masked and added STFT out, waveform back.

The diffusion variable stays the waveform (METHOD.md §2): Eq. (2), locked stems and the Dirac
separator need Σ stems = mix where noise is added, and the waveform is linear. Only the inside of
the denoiser works in frequency. A frame of the network is one STFT hop; its channels see every
bin of that frame (real, imaginary and log power), so the first level resolves partials
sample_rate / n_fft Hz apart (15.6 Hz at 16 kHz and n_fft 1024) and every weight knows its bin.

The output per bin is a complex gain M on the input's own STFT plus a complex residual R,
Y = M·X + R, synthesised back to a waveform. The gain is what lets a denoiser built from
linear layers keep or remove a partial it sees (a product of the input with a prediction); the
residual is what lets it write a partial that is not there yet.

`Stft` is a tight-frame STFT whose frames are the network's frames: T samples give exactly
T / hop frames, and `synthesize(analyze(x)) == x` for every x.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gmsdi.text.embedding import TextEmbedding


class Stft(nn.Module):
    """A periodic-Hann STFT with T / hop frames and exact inversion.

    Frame n covers samples [n·hop − (n_fft − hop)/2, n·hop + (n_fft + hop)/2), zero-padded at the
    ends, so it is centred on hop block n. Coefficients are scaled by 1/√Σw², so white noise of
    variance v gives coefficients of mean power v in every bin.

    Args:
        n_fft: window and FFT length in samples (a multiple of `hop`, at least 2·hop).
        hop: samples per frame.
    """

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        if hop <= 0 or n_fft % hop or n_fft < 2 * hop or (n_fft - hop) % 2:
            raise ValueError(f"n_fft={n_fft} must be a multiple of hop={hop}, at least 2·hop, with n_fft − hop even")
        self.n_fft, self.hop = n_fft, hop
        self.pad = (n_fft - hop) // 2
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window.float(), persistent=False)
        self.scale = float(window.pow(2).sum().sqrt())

    @property
    def bins(self) -> int:
        """F, the number of frequency bins (n_fft/2 + 1)."""
        return self.n_fft // 2 + 1

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        """[..., T] float -> [..., F, T/hop] complex64 (T a multiple of hop)."""
        if x.shape[-1] % self.hop:
            raise ValueError(f"length {x.shape[-1]} is not a multiple of the hop {self.hop}")
        lead = x.shape[:-1]
        x = F.pad(x.float().reshape(-1, 1, x.shape[-1]), (self.pad, self.pad))[:, 0]
        frames = x.unfold(-1, self.n_fft, self.hop) * self.window  # [N, frames, n_fft]
        spec = torch.fft.rfft(frames, dim=-1) / self.scale
        return spec.transpose(-1, -2).reshape(*lead, self.bins, -1)

    def synthesize(self, spec: torch.Tensor) -> torch.Tensor:
        """[..., F, N] complex -> [..., N·hop] float32, the least-squares inverse of `analyze`."""
        lead, n = spec.shape[:-2], spec.shape[-1]
        frames = torch.fft.irfft(spec.reshape(-1, self.bins, n).transpose(1, 2) * self.scale, n=self.n_fft, dim=-1)
        frames = frames * self.window  # [B, N, n_fft]
        length = (n - 1) * self.hop + self.n_fft
        out = F.fold(frames.transpose(1, 2), (1, length), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0]
        env = F.fold(self.window.pow(2)[None, :, None].expand(1, -1, n), (1, length), (1, self.n_fft),
                     stride=(1, self.hop))[0, 0, 0]
        out = out / env.clamp_min(1e-8)
        return out[:, self.pad : self.pad + n * self.hop].reshape(*lead, n * self.hop)


class SpectralErrorWeight(nn.Module):
    """A per-frequency weighting of the denoising loss: error [B, C, T] -> [B], the mean over bins and frames
    of w_k·|STFT(error)_k|² (mean over channels), with mean(w) = 1, so that white error costs about its mean
    square, as in the plain loss (in expectation, less a little for the half-covered samples at the crop's ends).

    Any positive weights keep the minimiser of the loss, the posterior mean E[x | x_σ] (the loss is a positive
    definite quadratic form of the error), and change only which errors a finite network pays for first. Weights
    that fall with the data's power, w_k = (P_k + floor·mean P)^(−α), give the quiet upper partials of a note the
    gradient that the plain loss spends on the loud low bins (α = 1: every bin's error counts relative to its
    power; α = 0: flat weights, close to the plain loss, though the one-sided spectrum counts DC and Nyquist
    errors more).

    Args:
        weights: [F] positive weights of the F = n_fft/2 + 1 bins (normalised here to mean 1).
        n_fft, hop: the STFT (`Stft`) the error is weighed in.
    """

    def __init__(self, weights: torch.Tensor, n_fft: int = 1024, hop: int = 256) -> None:
        super().__init__()
        self.stft = Stft(n_fft, hop)
        if weights.shape != (self.stft.bins,) or not bool((weights > 0).all()) or not weights.isfinite().all():
            raise ValueError(f"weights must be {self.stft.bins} positive finite numbers (n_fft {n_fft}), got shape "
                             f"{tuple(weights.shape)}")
        self.register_buffer("weights", (weights / weights.mean()).float())

    @classmethod
    def from_power(cls, power: torch.Tensor, alpha: float, floor: float = 1e-3, n_fft: int = 1024, hop: int = 256
                   ) -> SpectralErrorWeight:
        """Weights (P_k + floor·mean P)^(−α) from the data's mean power spectrum P [F] (any scale)."""
        if alpha < 0 or floor <= 0:
            raise ValueError(f"alpha must be at least 0 and floor positive, got {alpha}, {floor}")
        power = power.double().clamp_min(0)
        return cls((power + floor * power.mean()).pow(-alpha), n_fft, hop)

    def forward(self, error: torch.Tensor) -> torch.Tensor:
        """error [B, C, T] (T a multiple of the hop) -> [B]."""
        with torch.autocast(error.device.type, enabled=False):
            power = self.stft.analyze(error.float()).abs().pow(2)  # [B, C, F, N]
            return (power * self.weights[:, None]).mean((-1, -2)).mean(-1)


class SpectralEmbed(nn.Module):
    """Waveform -> frames: [B, C, T] -> ([B, C_0, T/hop], the input's STFT [B, C, F, T/hop]).

    Per frame and channel: real and imaginary parts of every bin and its log power
    ln(|X|² + 1e-4) / 4, one linear map to C_0 channels.
    """

    def __init__(self, in_channels: int, out_channels: int, hop: int, n_fft: int) -> None:
        super().__init__()
        self.stft = Stft(n_fft, hop)
        self.proj = nn.Linear(3 * self.stft.bins * in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x.device.type, enabled=False):
            spec = self.stft.analyze(x)  # [B, C, F, N]
            feats = torch.cat([spec.real, spec.imag, spec.abs().pow(2).add(1e-4).log() / 4], dim=2)
        b, _, _, n = feats.shape
        h = self.proj(feats.reshape(b, -1, n).transpose(1, 2).to(self.proj.weight.dtype))
        return h.transpose(1, 2), spec


class SpectralUnembed(nn.Module):
    """Frames -> waveform: [B, C_0, N] and the input's STFT [B, C, F, N] -> [B, C, N·hop].

    A linear map gives each bin a complex gain M and a complex residual R; the output is the
    synthesis of M·X + R. Zero-initialised: the untrained network outputs zeros.
    """

    def __init__(self, in_channels: int, out_channels: int, stft: Stft) -> None:
        super().__init__()
        self.stft, self.out_channels = stft, out_channels
        self.proj = nn.Linear(in_channels, 4 * stft.bins * out_channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        b, _, n = h.shape
        out = self.proj(h.transpose(1, 2))  # [B, N, 4·F·C]
        with torch.autocast(h.device.type, enabled=False):
            out = out.float().reshape(b, n, self.out_channels, 4, self.stft.bins).permute(0, 2, 3, 4, 1)
            gain = torch.complex(out[:, :, 0], out[:, :, 1])
            residual = torch.complex(out[:, :, 2], out[:, :, 3])
            return self.stft.synthesize(gain * spec + residual)


class SpectralWiener(nn.Module):
    """The linear floor: a Wiener filter whose per-bin signal power comes from the prompt.

    The prompt's parts (tokens of a `TextEmbedding`, one per part with `minilm-parts`) each give a
    power spectrum exp(W·t + b) [F]; a mixture prompt's spectrum is their sum, the null prompt's a
    learned spectrum of its own. The denoiser is then the exact posterior mean of a stationary
    Gaussian source of that spectrum in white noise, D = S / (S + σ²) · X per bin, synthesised back.
    It knows each class's average timbre and nothing else (no notes, no time): every model must
    beat it. Train it by `train/train_floor.py` (the Gaussian likelihood of STFT frames).

    The Wiener gain is defined on x and σ, so this network undoes the EDM preconditioning itself:
    with x = x_in / c_in it returns F = (D − c_skip·x) / c_out, which needs σ_d (`sigma_data`).

    Args:
        hop, n_fft: the STFT (samples).
        text_dim: D of the prompt tokens.
        sigma_data: the EDM σ_d of the wrapping `EDMDenoiser`.
    """

    def __init__(self, hop: int, n_fft: int, text_dim: int, sigma_data: float, in_channels: int = 1) -> None:
        super().__init__()
        if in_channels != 1:
            raise ValueError("the Wiener floor is a single-channel model (in_channels=1)")
        self.stft = Stft(n_fft, hop)
        self.text_dim, self.sigma_data = text_dim, sigma_data
        self.part_spectrum = nn.Linear(text_dim, self.stft.bins)
        nn.init.zeros_(self.part_spectrum.weight)
        nn.init.constant_(self.part_spectrum.bias, math.log(sigma_data**2))
        self.null_log_spectrum = nn.Parameter(torch.full((self.stft.bins,), math.log(sigma_data**2)))

    def spectrum(self, cond: Any, batch: int) -> torch.Tensor:
        """Per-bin signal power S [B, F] of each prompt (units: the STFT's, white noise of variance v = v)."""
        if cond is None:
            return self.null_log_spectrum.exp().expand(batch, -1)
        cond = TextEmbedding.from_any(cond)
        parts = self.part_spectrum(cond.tokens.float()).exp() * cond.mask[..., None]  # [B, L, F]
        null = self.null_log_spectrum.exp().expand(batch, -1)
        return torch.where(cond.is_null[:, None], null, parts.sum(dim=1))

    def gaussian_nll(self, audio: torch.Tensor, cond: Any) -> torch.Tensor:
        """Mean negative log-likelihood (per bin and frame, up to a constant) of clean audio [B, 1, T]
        as a stationary complex Gaussian with the prompt's spectrum: ln S + |X|² / S. Returns [B]."""
        power = self.stft.analyze(audio[:, 0]).abs().pow(2)  # [B, F, N]
        s = self.spectrum(cond, audio.shape[0])[..., None]
        return (s.log() + power / s).mean(dim=(1, 2))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: Any = None) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x, sigma, sd = x.float(), (4 * c_noise.float()).exp()[:, None, None], self.sigma_data
            var = sigma**2 + sd**2
            x_raw = x * var.sqrt()  # x_in = c_in·x
            s = self.spectrum(cond, x.shape[0]).float()[:, None, :, None]  # [B, 1, F, 1]
            denoised = self.stft.synthesize(self.stft.analyze(x_raw) * (s / (s + sigma[..., None] ** 2)))
            c_skip, c_out = sd**2 / var, sigma * sd / var.sqrt()
            return (denoised - c_skip * x_raw) / c_out
