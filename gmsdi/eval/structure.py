"""Time-frequency structure: a measure that tells notes and hits from noise of the same colour.

A class classifier or a FAD backbone that knows only real audio has to put coloured noise
somewhere; a score that noise can pass is not a quality gate. This one asks what noise cannot
have: sharp peaks. In a power spectrogram, stationary noise of any colour has, in every bin, an
exponentially distributed power around its smooth mean, so a bin stands out from its neighbours
by a few dB at most. A partial stands out from the bins around it in frequency, and a drum hit
from the frames around it in time, by 15-40 dB.

`tf_contrast` takes the loudest `top` fraction of time-frequency bins of a clip (the ones that
carry what is heard) and averages, over them, how far each stands above the median of its
neighbourhood, in frequency (±`freq_radius` bins) or in time (±`time_radius` frames), whichever
is larger. Measured by `benchmarks/look.py` on real stems, on noise coloured to each class's mean
spectrum, and on generated stems; the figures are in docs/RESULTS.md.
"""

from __future__ import annotations

import numpy as np


def power_spectrogram(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """|STFT|² of mono audio [T] with a periodic Hann window: [n_fft/2 + 1, frames]."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop]
    window = np.hanning(n_fft + 1)[:-1]
    return (np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2).T


def tf_contrast(audio: np.ndarray, n_fft: int = 1024, hop: int = 256, freq_radius: int = 12,
                time_radius: int = 8, top: float = 0.05) -> float:
    """Mean peak contrast in dB of the loudest `top` fraction of time-frequency bins (see the module).

    Args:
        audio: mono samples [T] (any scale; the measure is level-free).
        n_fft, hop: the STFT (samples); at 16 kHz the defaults give 15.6 Hz bins and 16 ms frames.
        freq_radius: neighbourhood half-width in bins for the contrast along frequency.
        time_radius: neighbourhood half-width in frames for the contrast along time.
        top: fraction of bins, the loudest, that the mean runs over.

    Returns:
        dB; NaN for a silent clip.
    """
    from scipy.ndimage import median_filter

    power = power_spectrogram(audio, n_fft, hop)
    if not np.any(power > 0):
        return float("nan")
    level = 10 * np.log10(power + power.max() * 1e-12)
    along_f = level - median_filter(level, size=(2 * freq_radius + 1, 1), mode="reflect")
    along_t = level - median_filter(level, size=(1, 2 * time_radius + 1), mode="reflect")
    contrast = np.maximum(along_f, along_t)
    k = max(1, int(top * level.size))
    loudest = np.argpartition(level.ravel(), -k)[-k:]
    return float(contrast.ravel()[loudest].mean())


def coloured_noise(reference: np.ndarray, n: int, length: int, generator: np.random.Generator,
                   n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """`n` clips [n, length] of stationary Gaussian noise with the mean power spectrum of `reference`.

    Args:
        reference: [M, T] clips of one class; their mean spectrum and RMS are matched.
        generator: the randomness (pass a seeded `np.random.default_rng`).
    """
    reference = np.asarray(reference, dtype=np.float64)
    spectrum = np.mean([power_spectrogram(r, n_fft, hop).mean(axis=1) for r in reference], axis=0)
    rms = np.sqrt(np.mean(reference**2))
    gain = np.sqrt(spectrum)
    white = generator.standard_normal((n, length))
    shaped = np.fft.irfft(np.fft.rfft(white, axis=-1) * np.interp(
        np.fft.rfftfreq(length), np.fft.rfftfreq(n_fft), gain), n=length, axis=-1)
    shaped *= rms / max(np.sqrt(np.mean(shaped**2)), 1e-12)
    return shaped.astype(np.float32)
