"""Spectrogram pictures of stems and mixes (for the README, the app and the notebooks)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def log_spectrogram(audio: np.ndarray, sample_rate: int, n_fft: int = 1024, hop: int = 256,
                    floor_db: float = -80.0) -> np.ndarray:
    """Magnitude spectrogram in dBFS of mono audio [T]: [n_fft // 2 + 1, frames], clipped at `floor_db`."""
    from scipy.signal import stft

    _, _, z = stft(audio.astype(np.float64), fs=sample_rate, window="hann", nperseg=n_fft,
                   noverlap=n_fft - hop, boundary=None)
    mag = np.abs(z) * 2.0  # scipy scales by the window sum; x2 puts a full-scale sine near 0 dB
    return np.maximum(20 * np.log10(mag + 1e-10), floor_db)


def plot_stems(stems: Mapping[str, np.ndarray], sample_rate: int, path: str | Path | None = None,
               title: str | None = None, floor_db: float = -80.0):
    """One spectrogram row per named signal (stems first, then e.g. "mix"), on one dB scale so
    relative levels read true. Returns the matplotlib figure; saves it when `path` is given."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend (e.g. Jupyter) alone

    names = list(stems)
    fig = Figure(figsize=(10, 1.6 * len(names) + 0.6))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)
    im = None
    for ax, name in zip(axes[:, 0], names, strict=True):
        x = np.asarray(stems[name], dtype=np.float64).reshape(-1)
        spec = log_spectrogram(x, sample_rate, floor_db=floor_db)
        extent = (0.0, len(x) / sample_rate, 0.0, sample_rate / 2000)
        im = ax.imshow(spec, origin="lower", aspect="auto", extent=extent, vmin=floor_db, vmax=0, cmap="magma")
        ax.set_ylabel(f"{name}\nkHz", fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    if title:
        axes[0, 0].set_title(title, fontsize=10)
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="dBFS", pad=0.01, fraction=0.03)
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def plot_track(track_dir: str | Path, path: str | Path, seconds: float | None = None):
    """Spectrograms of a Slakh-format track's stems (labelled by class) and its mix."""
    import soundfile as sf
    import yaml

    track_dir = Path(track_dir)
    meta = yaml.safe_load((track_dir / "metadata.yaml").read_text())
    signals, rate = {}, None
    for sid, s in sorted(meta["stems"].items()):
        f = track_dir / meta.get("audio_dir", "stems") / f"{sid}.flac"
        if s.get("audio_rendered", True) and f.is_file():
            x, rate = sf.read(f, dtype="float32", always_2d=True)
            signals[f"{sid} {s['inst_class']}"] = x.mean(1)
    mix, rate = sf.read(track_dir / "mix.flac", dtype="float32", always_2d=True)
    signals["mix"] = mix.mean(1)
    if seconds:
        signals = {k: v[: int(seconds * rate)] for k, v in signals.items()}
    synth = meta.get("synth", {})
    title = f"{track_dir.name}: {synth.get('key', '')} {synth.get('tempo_bpm', '')} BPM".strip()
    return plot_stems(signals, rate, path, title=title)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Spectrograms of a Slakh-format track's stems and mix")
    parser.add_argument("track", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=None)
    a = parser.parse_args()
    plot_track(a.track, a.out, a.seconds)
    print(f"wrote {a.out}")
