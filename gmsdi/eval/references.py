"""Reference "separators" that bracket the learned ones.

- `ideal_ratio_mask`: an oracle that knows the true stems: each stem's STFT magnitude share of the
  mixture, applied to the mixture's STFT. Not reachable by any real method at this STFT
  resolution; an upper bound for mask-like separation.
- `unprocessed_mixture`: every stem estimated as the mixture itself; its SI-SDRi is 0 dB by the
  definition of SI-SDRi (the floor).
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def ideal_ratio_mask(
    mixture: ArrayLike,
    references: ArrayLike,
    n_fft: int = 1024,
    hop_length: int = 256,
    power: float = 1.0,
    eps: float = 1e-10,
) -> np.ndarray:
    """The ideal ratio mask estimate of each reference stem.

    M_k(f, t) = |S_k|^p / Σ_j |S_j|^p, estimate_k = iSTFT(M_k · Y), Hann windows.

    Args:
        mixture: [T] the mixture y.
        references: [K, T] the true stems (their sum need not be y exactly).
        n_fft, hop_length: STFT size and hop in samples (1024 / 256 = 64 / 16 ms at 16 kHz).
        power: p; 1 = magnitude ratio (default), 2 = the Wiener-like power ratio.
        eps: added to the denominator, so silent bins give M = 0.

    Returns:
        float32 [K, T] estimates; they sum to y wherever some stem is non-silent.
    """
    y = torch.as_tensor(np.asarray(mixture) if not isinstance(mixture, torch.Tensor) else mixture).double()
    s = torch.as_tensor(np.asarray(references) if not isinstance(references, torch.Tensor) else references).double()
    if y.ndim != 1 or s.ndim != 2 or s.shape[-1] != y.shape[-1]:
        raise ValueError(f"need mixture [T] and references [K, T], got {tuple(y.shape)} and {tuple(s.shape)}")
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")
    n = y.shape[-1]
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def stft(x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, n_fft, hop_length, window=window, center=True, return_complex=True)

    mags = stft(s).abs() ** power  # [K, F, N]
    masks = mags / (mags.sum(0, keepdim=True) + eps)
    est = torch.istft(masks * stft(y)[None], n_fft, hop_length, window=window, center=True, length=n)
    return est.float().numpy()


def unprocessed_mixture(mixture: ArrayLike, n_sources: int) -> np.ndarray:
    """The floor: every one of the K stems estimated as the mixture, [T] -> float32 [K, T]."""
    y = np.asarray(mixture, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"need a mono mixture [T], got shape {y.shape}")
    return np.repeat(y[None], n_sources, axis=0)


__all__ = ["ideal_ratio_mask", "unprocessed_mixture"]
