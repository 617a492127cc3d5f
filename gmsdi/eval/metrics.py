"""Separation metrics: SI-SDR, SI-SDRi under the MSDM protocol, and mixture consistency.

The protocol follows MSDM's evaluation (Mariani et al., ICLR 2024; METHOD.md §4), which the GMSDI
paper reuses for its table: a full-length estimate of each stem (the caller separates in
model-length chunks and concatenates them) is scored in 4 s windows with a 2 s hop; a window is
skipped when at most one reference stem is active in it, a stem being silent when
‖x‖₂ / n < 1.5e-5 (n: samples in the window); in every kept window *every* stem is scored,
silent ones included, as MSDM does; the table reports the mean over windows per stem and "All",
the mean of the per-stem means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

SILENCE_THRESHOLD = 1.5e-5  # MSDM's `is_silent`: ‖x‖₂ / n below this is silence
SI_SDR_EPS = 1e-8  # MSDM's `sisnr` regulariser, added to every energy and to the projection

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double()


def si_sdr(estimate: ArrayLike, reference: ArrayLike, eps: float = SI_SDR_EPS) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last axis: [..., T] × [..., T] → [...].

    SI-SDR = 10 log10(‖α s‖² / ‖α s − ŝ‖²) with α = ⟨ŝ, s⟩ / ‖s‖² (Le Roux et al. 2019), with MSDM's
    `eps` added to the projection and to both energies, so that silent references stay finite.
    Computed in float64.
    """
    est, ref = _as_tensor(estimate), _as_tensor(reference)
    if est.shape != ref.shape:
        raise ValueError(f"estimate and reference must have the same shape, got {tuple(est.shape)} "
                         f"and {tuple(ref.shape)}")
    alpha = ((est * ref).sum(-1, keepdim=True) + eps) / (ref.square().sum(-1, keepdim=True) + eps)
    target = alpha * ref
    return 10 * torch.log10((target.square().sum(-1) + eps) / ((target - est).square().sum(-1) + eps))


def si_sdr_improvement(estimate: ArrayLike, reference: ArrayLike, mixture: ArrayLike,
                       eps: float = SI_SDR_EPS) -> torch.Tensor:
    """SI-SDRi in dB: SI-SDR(estimate, reference) − SI-SDR(mixture, reference); shapes as `si_sdr`,
    `mixture` broadcast against the references (e.g. [T] against [K, T])."""
    ref = _as_tensor(reference)
    mix = _as_tensor(mixture).expand_as(ref)
    return si_sdr(estimate, ref, eps) - si_sdr(mix, ref, eps)


def is_silent(x: ArrayLike, threshold: float = SILENCE_THRESHOLD) -> bool:
    """MSDM's silence rule: ‖x‖₂ / n < threshold, the norm over all channels, n samples per channel."""
    x = _as_tensor(x)
    if x.shape[-1] == 0:
        return True
    return bool(torch.linalg.vector_norm(x) / x.shape[-1] < threshold)


def eval_windows(num_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """MSDM's evaluation windows `[start, end)` in samples: ⌈(N − (window − hop)) / hop⌉ windows of
    `window` samples every `hop`; the last one may be cut short by the end of the signal."""
    if window <= 0 or not 0 < hop <= window:
        raise ValueError(f"need 0 < hop <= window, got window={window}, hop={hop}")
    n = max(0, math.ceil((num_samples - (window - hop)) / hop))
    return [(i * hop, min(i * hop + window, num_samples)) for i in range(n)]


@dataclass
class SeparationScores:
    """Per-window scores of one or more tracks, in dB. Rows are the kept windows, columns the stems.

    `sisdr` [W, K]: SI-SDR of the estimates; `sisdr_mixture` [W, K]: SI-SDR of the mixture (the
    0 dB-improvement floor); `sisdri` = their difference. `starts` / `ends` [W]: window bounds in
    samples; `tracks` [W]: the track each window belongs to. `num_skipped`: windows left out because
    at most one stem was active.
    """

    stems: tuple[str, ...]
    sisdr: np.ndarray
    sisdr_mixture: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    tracks: list[str] = field(default_factory=list)
    num_skipped: int = 0

    @property
    def sisdri(self) -> np.ndarray:
        return self.sisdr - self.sisdr_mixture

    @property
    def num_windows(self) -> int:
        return int(self.sisdr.shape[0])

    def per_stem(self, metric: str = "sisdri") -> dict[str, float]:
        """Mean over windows per stem, plus "All" (the mean of the per-stem means, as in the paper's table).
        `metric`: "sisdri", "sisdr" or "sisdr_mixture". NaN when no window was kept."""
        if metric not in ("sisdri", "sisdr", "sisdr_mixture"):
            raise ValueError(f"unknown metric {metric!r}; valid: 'sisdri', 'sisdr', 'sisdr_mixture'")
        values = getattr(self, metric)
        if self.num_windows == 0:
            means = {s: float("nan") for s in self.stems}
        else:
            means = {s: float(values[:, k].mean()) for k, s in enumerate(self.stems)}
        means["All"] = float(np.mean(list(means.values())))
        return means

    @classmethod
    def concat(cls, scores: Sequence[SeparationScores]) -> SeparationScores:
        """Pool the windows of several tracks (all scored on the same stems), as MSDM's table does."""
        if not scores:
            raise ValueError("nothing to concatenate")
        stems = scores[0].stems
        if any(s.stems != stems for s in scores):
            raise ValueError(f"all scores must have the same stems, got {sorted({s.stems for s in scores})}")
        return cls(
            stems=stems,
            sisdr=np.concatenate([s.sisdr for s in scores]),
            sisdr_mixture=np.concatenate([s.sisdr_mixture for s in scores]),
            starts=np.concatenate([s.starts for s in scores]),
            ends=np.concatenate([s.ends for s in scores]),
            tracks=[t for s in scores for t in s.tracks],
            num_skipped=sum(s.num_skipped for s in scores),
        )


def score_separation(
    estimates: ArrayLike,
    references: ArrayLike,
    stems: Sequence[str],
    mixture: ArrayLike | None = None,
    sample_rate: int = 16_000,
    window_seconds: float = 4.0,
    hop_seconds: float = 2.0,
    filter_single_source: bool = True,
    silence_threshold: float = SILENCE_THRESHOLD,
    eps: float = SI_SDR_EPS,
    track: str = "",
) -> SeparationScores:
    """Score full-length separated stems of one track with the MSDM protocol.

    Args:
        estimates: [K, T] (or [K, C, T]) separated stems, in the order of `stems`.
        references: [K, T'] (or [K, C, T']) true stems, T' ≥ T; cropped to T as MSDM does, since
            chunked separation may drop the tail. A stem absent from the track is all zeros.
        stems: the K stem names.
        mixture: [T'] (or [C, T']) the input mixture; default the sum of the references (MSDM).
        sample_rate: Hz; `window_seconds` / `hop_seconds` become samples with it (4 s / 2 s in MSDM).
        filter_single_source: skip windows where ≤ 1 reference stem is active.
        silence_threshold: ‖x‖₂ / n below which a reference stem is silent in a window.
        track: a name recorded with each window.

    Returns:
        `SeparationScores` with one row per kept window.
    """
    est, ref = _as_tensor(estimates), _as_tensor(references)
    if est.ndim not in (2, 3) or est.shape[0] != len(stems):
        raise ValueError(f"estimates must be [K, T] or [K, C, T] with K = {len(stems)} stems, "
                         f"got {tuple(est.shape)}")
    if ref.shape[:-1] != est.shape[:-1] or ref.shape[-1] < est.shape[-1]:
        raise ValueError(f"references {tuple(ref.shape)} must match estimates {tuple(est.shape)} "
                         "and be at least as long")
    n = est.shape[-1]
    ref = ref[..., :n]
    mix = ref.sum(0) if mixture is None else _as_tensor(mixture)[..., :n]
    if mix.shape != est.shape[1:]:
        raise ValueError(f"mixture must be {tuple(est.shape[1:])} after cropping, got {tuple(mix.shape)}")

    window, hop = round(window_seconds * sample_rate), round(hop_seconds * sample_rate)
    rows, rows_mix, kept, skipped = [], [], [], 0
    for start, end in eval_windows(n, window, hop):
        r = ref[..., start:end]
        active = sum(not is_silent(r[k], silence_threshold) for k in range(len(stems)))
        if filter_single_source and active <= 1:
            skipped += 1
            continue
        e, m = est[..., start:end], mix[..., start:end]
        flat = (len(stems), -1)  # multichannel stems are scored on their channels jointly
        rows.append(si_sdr(e.reshape(flat), r.reshape(flat), eps))
        rows_mix.append(si_sdr(m.reshape(1, -1).expand(flat), r.reshape(flat), eps))
        kept.append((start, end))
    k = len(stems)
    bounds = np.array(kept, dtype=np.int64).reshape(-1, 2)
    return SeparationScores(
        stems=tuple(stems),
        sisdr=torch.stack(rows).numpy() if rows else np.zeros((0, k)),
        sisdr_mixture=torch.stack(rows_mix).numpy() if rows_mix else np.zeros((0, k)),
        starts=bounds[:, 0],
        ends=bounds[:, 1],
        tracks=[track] * len(kept),
        num_skipped=skipped,
    )


def mixture_consistency_error(mixture: ArrayLike, sources: ArrayLike, relative: bool = False) -> torch.Tensor:
    """‖y − Σ_k x_k‖₂ over time: mixture [..., T], sources [..., K, T] → [...].

    `relative=True` divides by ‖y‖₂ (0 for an exact decomposition, 1 for all-zero sources). The Dirac
    separator makes this zero by construction (METHOD.md §3.3); the generators of §3.1–3.2 only
    approximately.
    """
    y, x = _as_tensor(mixture), _as_tensor(sources)
    if x.shape[:-2] != y.shape[:-1] or x.shape[-1] != y.shape[-1]:
        raise ValueError(f"sources must be [..., K, T] for a mixture [..., T], got {tuple(x.shape)} "
                         f"for {tuple(y.shape)}")
    err = torch.linalg.vector_norm(y - x.sum(-2), dim=-1)
    return err / torch.linalg.vector_norm(y, dim=-1).clamp_min(1e-12) if relative else err
