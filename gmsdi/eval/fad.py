"""Fréchet audio distance (Kilgour et al. 2019) on MagnaTagATune musicnn embeddings.

Embeddings: every clip (16 kHz mono; other rates are resampled) is cut into musicnn's 3 s patches
(187 mel frames, no overlap by default; a clip shorter than 3 s is repeated to fill one patch), and
each patch gives one vector. The default layer is musicnn's "penultimate" (the 200-d dense layer after
ReLU and batch norm, the last layer before the tag classifier); "max_pool" / "mean_pool" (753-d,
temporal max / mean of the frame features) can be chosen. All patch vectors of a set are pooled and
fitted with one Gaussian, as VGGish-FAD pools its frame embeddings.

FAD = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}). It is biased upwards for small sets, so
compare numbers only between sets of equal size; with fewer patches than dimensions the covariances
are singular (a warning is raised).

The paper's uses (METHOD.md §4): FAD of generated vs. real mixtures (`FrechetAudioDistance.score`);
sub-FAD of given + generated stems vs. real mixtures (`sub_fad`); single-source FAD of stems
generated from one prompt vs. real stems of that class (`score`, once per instrument and per
negative-prompting setting).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg

from gmsdi.eval.musicnn import PATCH_FRAMES, SAMPLE_RATE, MusiCNNExtractor, load_musicnn

EMBEDDING_LAYERS: dict[str, int] = {"penultimate": 200, "max_pool": 753, "mean_pool": 753}  # name → dim

Clips = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


@dataclass(frozen=True)
class GaussianStats:
    """Mean [D] and covariance [D, D] (float64) of `n` embeddings."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray) -> GaussianStats:
        """Fit [N, D] embeddings, N ≥ 2 (unbiased covariance)."""
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] < 2:
            raise ValueError(f"need at least 2 embeddings [N, D] to fit a Gaussian, got shape {emb.shape}")
        if emb.shape[0] <= emb.shape[1]:
            warnings.warn(f"{emb.shape[0]} embeddings of dimension {emb.shape[1]}: the covariance is singular "
                          "and the FAD unreliable; use more or longer clips", stacklevel=2)
        return cls(mu=emb.mean(0), sigma=np.cov(emb, rowvar=False), n=emb.shape[0])


def frechet_distance(a: GaussianStats, b: GaussianStats, eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians (Dowson & Landau 1982), as in FID/FAD implementations.

    The matrix square root comes from `scipy.linalg.sqrtm`; if it is not finite (singular product) the
    covariances get `eps` on their diagonals, and a small imaginary part from round-off is dropped.
    """
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"embedding dimensions differ: {a.mu.shape} vs {b.mu.shape}")
    diff = a.mu - b.mu
    covmean = linalg.sqrtm(a.sigma @ b.sigma)
    if not np.isfinite(covmean).all():
        offset = np.eye(a.sigma.shape[0]) * eps
        covmean = linalg.sqrtm((a.sigma + offset) @ (b.sigma + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3 * max(1.0, np.abs(np.diagonal(covmean).real).max()):
            raise ValueError(f"sqrtm returned a significant imaginary component ({imag:.3g}); "
                             "the covariances are ill-conditioned (too few embeddings?)")
        covmean = covmean.real
    fad = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(covmean)
    return max(float(fad), 0.0)  # round-off can leave -1e-12 for identical sets


def _iter_clips(clips: Clips) -> Iterable[torch.Tensor]:
    if isinstance(clips, (torch.Tensor, np.ndarray)):
        clips = torch.as_tensor(clips)
        if clips.ndim == 3 and clips.shape[1] == 1:
            clips = clips[:, 0]
        if clips.ndim != 2:
            raise ValueError(f"expected clips [N, T] or [N, 1, T] (mono), got shape {tuple(clips.shape)}")
    for clip in clips:
        clip = torch.as_tensor(np.asarray(clip) if not isinstance(clip, torch.Tensor) else clip)
        if clip.ndim == 2 and clip.shape[0] == 1:
            clip = clip[0]
        if clip.ndim != 1:
            raise ValueError(f"expected mono clips [T], got shape {tuple(clip.shape)}")
        yield clip.float()


class FrechetAudioDistance:
    """FAD with musicnn embeddings. The model loads once; real-set statistics can be cached and reused.

    Args:
        model: a loaded `MusiCNNExtractor`; default `load_musicnn()` (assets/musicnn_mtt.npz).
        layer: the embedding, one of `EMBEDDING_LAYERS` ("penultimate", 200-d, by default).
        hop_frames: patch hop in mel frames (187 = 3 s, no overlap).
        device: where the embedding network runs.
    """

    def __init__(self, model: MusiCNNExtractor | None = None, layer: str = "penultimate",
                 hop_frames: int = PATCH_FRAMES, device: torch.device | str = "cpu"):
        if layer not in EMBEDDING_LAYERS:
            raise ValueError(f"unknown embedding layer {layer!r}; valid: {', '.join(EMBEDDING_LAYERS)}")
        self.model = (model or load_musicnn()).to(device).eval()
        self.layer, self.hop_frames, self.device = layer, hop_frames, torch.device(device)

    @torch.no_grad()
    def embed(self, clips: Clips, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Clips (a [N, T] array or a list of [T] waveforms, any length) → patch embeddings [M, D], float64."""
        out = []
        for clip in _iter_clips(clips):
            if sample_rate != SAMPLE_RATE:
                import soxr

                clip = torch.from_numpy(soxr.resample(clip.numpy(), sample_rate, SAMPLE_RATE).astype(np.float32))
            feats = self.model(clip.to(self.device), hop_frames=self.hop_frames)
            out.append(feats[self.layer].double().cpu().numpy())
        if not out:
            raise ValueError("no clips to embed")
        return np.concatenate(out)

    def stats(self, clips: Clips, sample_rate: int = SAMPLE_RATE) -> GaussianStats:
        """Gaussian fit of the clips' embeddings; pass it as `real` to `score` to embed a reference set once."""
        return GaussianStats.from_embeddings(self.embed(clips, sample_rate))

    def score(self, generated: Clips | GaussianStats, real: Clips | GaussianStats,
              sample_rate: int = SAMPLE_RATE) -> float:
        """FAD between two sets of clips (either may be precomputed `GaussianStats`). Lower is better."""
        def fit(x):
            return x if isinstance(x, GaussianStats) else self.stats(x, sample_rate)

        return frechet_distance(fit(generated), fit(real))

    def sub_fad(self, given: torch.Tensor | np.ndarray, generated: torch.Tensor | np.ndarray,
                real_mixtures: Clips | GaussianStats, sample_rate: int = SAMPLE_RATE) -> float:
        """sub-FAD for accompaniment (METHOD.md §4): FAD of the mixes Σ given + Σ generated, given
        [N, I, T] and generated [N, J, T] stems, against real mixtures."""
        given, generated = torch.as_tensor(given), torch.as_tensor(generated)
        if given.ndim != 3 or generated.ndim != 3 or given.shape[0] != generated.shape[0] \
                or given.shape[-1] != generated.shape[-1]:
            raise ValueError(f"given [N, I, T] and generated [N, J, T] must share N and T, got "
                             f"{tuple(given.shape)} and {tuple(generated.shape)}")
        return self.score(given.sum(1) + generated.sum(1), real_mixtures, sample_rate)

    def single_source(self, generated_stems: Clips, real_stems: Clips | GaussianStats,
                      sample_rate: int = SAMPLE_RATE) -> float:
        """Single-source FAD: stems generated from one instrument's prompt vs real stems of that class."""
        return self.score(generated_stems, real_stems, sample_rate)


def fad(generated: Clips, real: Clips, sample_rate: int = SAMPLE_RATE, layer: str = "penultimate") -> float:
    """One-shot FAD between two sets of 16 kHz clips (loads musicnn each call; reuse a
    `FrechetAudioDistance` for several scores)."""
    return FrechetAudioDistance(layer=layer).score(generated, real, sample_rate)
