"""The evaluation protocols of METHOD.md §4 over a Slakh-format split, method-agnostic.

- `run_separation`: each track's four-stem mixture (the sum of its bass, drums, guitar and piano
  stems, as MSDM evaluates Slakh2100) is cut into model-length chunks, the tail that does not fill
  a chunk dropped (MSDM); each chunk is separated on its own, the chunks are concatenated and
  scored with `score_separation` (4 s windows, 2 s hop, windows with ≤ 1 active stem skipped).
  Per-track scores can be cached on disk, so a long run resumes where it stopped.
- `clip_dataset` / `real_stats` / `accompaniment_clips`: non-overlapping clips of the split, the
  musicnn statistics of the real FAD sets (mixtures, or one class's stems where it plays; cached on
  disk), and the real clips whose stems are given for a sub-FAD.
- `generate_mixes`, `accompany_mixes`, `single_source_stems`: the generated sets of the FAD tables.

Commands that assemble these into result files are in `gmsdi.eval.cli`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gmsdi.data.classes import PAPER_STEMS
from gmsdi.data.prompts import compose
from gmsdi.data.slakh import StemsDataset
from gmsdi.eval.fad import FrechetAudioDistance, GaussianStats, frechet_distance
from gmsdi.eval.methods import LoadedModel, Separator
from gmsdi.eval.metrics import SeparationScores, is_silent, score_separation

CACHE_FORMAT = 2  # bump when what a cached track holds changes
CLIP_MIN_PEAK = 1e-3  # a real clip quieter than this (−60 dBFS peak) is not music; left out of FAD sets


def split_dataset(root: str | Path, split: str, stems: Sequence[str] = PAPER_STEMS,
                  sample_rate: int = 16000) -> StemsDataset:
    """Whole tracks of a split with the four-stem mixture (the sum of `stems`) as the mix."""
    return StemsDataset(root, split, classes=tuple(stems), sample_rate=sample_rate, mix_from_stems=True)


def select_tracks(total: int, count: int | None) -> list[int]:
    """`count` track indices spread evenly over `total` (all when None or ≥ total)."""
    if count is None or count >= total:
        return list(range(total))
    if count < 1:
        raise ValueError(f"need at least one track, got {count}")
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, count)})


@dataclass
class SeparationRun:
    """Scores of one method over a split.

    Attributes:
        scores: all kept windows of all tracks.
        active: bool [W, K], whether each reference stem sounds in each kept window (not silent by
            MSDM's rule). The protocol scores silent stems too, where SI-SDR is a ratio of
            regularisers: a near-silent estimate of a silent stem gains tens of dB over the mixture.
            `summary` therefore also gives the means over the windows where the stem plays.
        tracks: per track: name, seconds scored, windows kept / skipped, wall seconds.
        seconds: audio seconds separated. wall_seconds: time spent separating (cached tracks count
            with the time they took when first run).
    """

    scores: SeparationScores
    active: np.ndarray | None = None
    tracks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    wall_seconds: float = 0.0

    def per_stem_active(self, metric: str = "sisdri") -> dict[str, float]:
        """Like `SeparationScores.per_stem`, over the windows where each stem plays ("All": the mean of
        the per-stem means). NaN for a stem that never plays."""
        s = self.scores
        values = getattr(s, metric)
        active = self.active if self.active is not None else np.ones_like(values, dtype=bool)
        means = {n: float(values[active[:, k], k].mean()) if active[:, k].any() else float("nan")
                 for k, n in enumerate(s.stems)}
        finite = [v for v in means.values() if np.isfinite(v)]
        means["All"] = float(np.mean(finite)) if finite else float("nan")
        return means

    def summary(self, decimals: int | None = 4) -> dict[str, Any]:
        """JSON-ready: per-stem means (SI-SDRi, SI-SDR, mixture SI-SDR), window counts, and the windows'
        scores rounded to `decimals` (None: full precision)."""
        s = self.scores

        def rounded(a: np.ndarray) -> list:
            return (a if decimals is None else np.round(a, decimals)).tolist()

        return {
            "sisdri": s.per_stem("sisdri"), "sisdr": s.per_stem("sisdr"), "sisdr_mixture": s.per_stem("sisdr_mixture"),
            "sisdri_active": self.per_stem_active("sisdri"), "sisdr_active": self.per_stem_active("sisdr"),
            "windows_active": dict(zip(s.stems, self._active().sum(0).tolist(), strict=True)),
            "windows": s.num_windows, "windows_skipped": s.num_skipped, "seconds": round(self.seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "real_time_factor": round(self.wall_seconds / self.seconds, 3) if self.seconds else None,
            "tracks": self.tracks,
            "per_window": {"track": s.tracks, "start": s.starts.tolist(), "end": s.ends.tolist(),
                           "sisdr": rounded(s.sisdr), "sisdr_mixture": rounded(s.sisdr_mixture),
                           "active": self._active().astype(int).tolist()},
        }

    def _active(self) -> np.ndarray:
        return self.active if self.active is not None else np.ones(self.scores.sisdr.shape, dtype=bool)


def active_from_summary(summary: Mapping[str, Any], stems: Sequence[str]) -> np.ndarray:
    """The `SeparationRun.active` mask stored by `summary` ([W, K] bool)."""
    w = summary["per_window"]
    return np.asarray(w.get("active", np.ones((len(w["start"]), len(stems)))), dtype=bool).reshape(-1, len(stems))


def scores_from_summary(summary: Mapping[str, Any], stems: Sequence[str]) -> SeparationScores:
    """The `SeparationScores` stored by `SeparationRun.summary`."""
    w = summary["per_window"]
    k = len(stems)
    return SeparationScores(stems=tuple(stems), sisdr=np.asarray(w["sisdr"], dtype=np.float64).reshape(-1, k),
                            sisdr_mixture=np.asarray(w["sisdr_mixture"], dtype=np.float64).reshape(-1, k),
                            starts=np.asarray(w["start"], dtype=np.int64), ends=np.asarray(w["end"], dtype=np.int64),
                            tracks=list(w["track"]), num_skipped=int(summary.get("windows_skipped", 0)))


def chunk_seed(seed: int, track: int, chunk: int) -> int:
    """A distinct, reproducible seed per (run seed, track, chunk)."""
    return (seed * 1_000_003 + track * 1009 + chunk) % (2**62)


def _cache_key(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_separation(
    separator: Separator,
    dataset: StemsDataset,
    chunk_samples: int,
    *,
    tracks: int | None = None,
    max_chunks: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    cache_key: Mapping[str, Any] | None = None,
    window_seconds: float = 4.0,
    hop_seconds: float = 2.0,
    progress: bool = False,
) -> SeparationRun:
    """Separate and score the tracks of `dataset` in model-length chunks (MSDM's protocol).

    Args:
        separator: `(mix [T], references [K, T], seed) -> [K, T]` for one chunk.
        dataset: whole tracks (`split_dataset`); mix = the sum of the K stems.
        chunk_samples: the chunk (the model's window); a track shorter than one chunk is one chunk.
        tracks: evaluate this many tracks, spread evenly over the split (None = all).
        max_chunks: at most this many chunks per track (None = all full chunks).
        seed: the run's seed; chunk j of track t gets `chunk_seed(seed, t, j)`.
        cache_dir, cache_key: per-track scores are stored in cache_dir/<hash of cache_key>/ and
            reused, so an interrupted run resumes (the key must name everything that changes
            the result: method, checkpoint hash, settings, seed).
        window_seconds, hop_seconds: the scoring windows (MSDM: 4 s, 2 s).
        progress: a tqdm bar over tracks.
    """
    from tqdm.auto import tqdm

    if chunk_samples < 1:
        raise ValueError(f"chunk_samples must be positive, got {chunk_samples}")
    stems = list(dataset.row_names)
    sr = dataset.sample_rate
    folder = None
    if cache_dir is not None:
        key = {**dict(cache_key or {}), "chunk": chunk_samples, "max_chunks": max_chunks, "seed": seed,
               "window": window_seconds, "hop": hop_seconds, "format": CACHE_FORMAT}
        folder = Path(cache_dir) / _cache_key(key)
        folder.mkdir(parents=True, exist_ok=True)
    all_scores, all_active, rows, seconds, wall = [], [], [], 0.0, 0.0
    for t in tqdm(select_tracks(len(dataset), tracks), disable=not progress, desc="tracks", unit="track"):
        track = dataset.tracks[t]
        cached = folder / f"{track.name}.json" if folder is not None else None
        if cached is not None and cached.is_file():
            data = json.loads(cached.read_text())
            scores, row = scores_from_summary(data["summary"], stems), data["row"]
            active = active_from_summary(data["summary"], stems)
        else:
            item = dataset[t]
            mix, refs = item["mix"][0].numpy(), item["stems"].numpy()
            n = len(mix)
            n_chunks = max(1, n // chunk_samples)
            if max_chunks is not None:
                n_chunks = min(n_chunks, max_chunks)
            length = min(n, n_chunks * chunk_samples)
            est = np.zeros((len(stems), length), dtype=np.float32)
            t0 = time.perf_counter()
            for j in range(n_chunks):
                a, b = j * chunk_samples, min((j + 1) * chunk_samples, length)
                est[:, a:b] = separator(mix[a:b], refs[:, a:b], chunk_seed(seed, t, j))
            took = time.perf_counter() - t0
            scores = score_separation(est, refs, stems, mixture=mix, sample_rate=sr, window_seconds=window_seconds,
                                      hop_seconds=hop_seconds, track=track.name)
            active = np.array([[not is_silent(refs[k, a:b]) for k in range(len(stems))]
                               for a, b in zip(scores.starts, scores.ends, strict=True)], dtype=bool)
            active = active.reshape(-1, len(stems))
            row = {"track": track.name, "seconds": round(length / sr, 3), "windows": scores.num_windows,
                   "skipped": scores.num_skipped, "wall_seconds": round(took, 3)}
            if cached is not None:
                cached.write_text(json.dumps({"summary": SeparationRun(scores, active).summary(None), "row": row}))
        all_scores.append(scores)
        all_active.append(active)
        rows.append(row)
        seconds += row["seconds"]
        wall += row["wall_seconds"]
    return SeparationRun(SeparationScores.concat(all_scores), np.concatenate(all_active), rows, seconds, wall)


# -- FAD sets -----------------------------------------------------------------------------------------------


@dataclass
class Clip:
    """A real clip of a split: the four-stem mixture [T], its stems [K, T] and which are active (MIDI)."""

    track: str
    start: float
    mix: np.ndarray
    stems: np.ndarray
    active: np.ndarray


def clip_dataset(root: str | Path, split: str, stems: Sequence[str], seconds: float,
                 sample_rate: int = 16000) -> StemsDataset:
    """Non-overlapping `seconds` clips of a split, the mix being the sum of `stems`."""
    return StemsDataset(root, split, classes=tuple(stems), sample_rate=sample_rate, crop_seconds=seconds,
                        hop_seconds=seconds, mix_from_stems=True)


def clip_indices(ds: StemsDataset, tracks: int | None = None, max_clips: int | None = None) -> list[int]:
    """The clips of `tracks` tracks spread evenly over the split (all when None), at most `max_clips`."""
    keep = set(select_tracks(len(ds.tracks), tracks))
    out = [i for i in range(len(ds)) if ds.crop_position(i)[0] in keep]
    return out[:max_clips] if max_clips is not None else out


def load_clip(ds: StemsDataset, i: int) -> Clip:
    item = ds[i]
    return Clip(item["track"], item["start"], item["mix"][0].numpy(), item["stems"].numpy(), item["active"].numpy())


def _audible(x: np.ndarray) -> bool:
    return float(np.abs(x).max(initial=0.0)) >= CLIP_MIN_PEAK


def real_stats(fad: FrechetAudioDistance, ds: StemsDataset, indices: Sequence[int], cache: Path | None = None,
               key: Mapping[str, Any] | None = None) -> tuple[dict[str, GaussianStats], dict[str, int]]:
    """musicnn statistics of the real FAD sets, in one pass over the clips (nothing kept in memory):
    "mix" -> the clips' mixtures; each stem class -> the clips where it is active (MIDI) and audible.
    Clips quieter than `CLIP_MIN_PEAK` are left out; a set of fewer than 2 clips gets no statistics.

    Returns ({set: stats}, {set: clips}); both cached in `cache`/real-<hash of key>.npz when given.
    """
    names = ["mix", *ds.row_names]
    path = None
    if cache is not None:
        path = cache / f"real-{_cache_key({**dict(key or {}), 'layer': fad.layer, 'hop': fad.hop_frames})}.npz"
        if path.is_file():
            data = np.load(path)
            counts = {n: int(data[f"{n}/clips"]) for n in names}
            return {n: GaussianStats(data[f"{n}/mu"], data[f"{n}/sigma"], int(data[f"{n}/n"])) for n in names
                    if f"{n}/mu" in data}, counts
    emb: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in indices:
        c = load_clip(ds, i)
        if _audible(c.mix):
            emb["mix"].append(fad.embed([c.mix]))
        for k, name in enumerate(ds.row_names):
            if c.active[k] and _audible(c.stems[k]):
                emb[name].append(fad.embed([c.stems[k]]))
    counts = {n: len(v) for n, v in emb.items()}
    stats = {n: GaussianStats.from_embeddings(np.concatenate(v)) for n, v in emb.items() if len(v) >= 2}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{n}/clips": np.array(c) for n, c in counts.items()}
        for n, st in stats.items():
            arrays.update({f"{n}/mu": st.mu, f"{n}/sigma": st.sigma, f"{n}/n": np.array(st.n)})
        np.savez(path, **arrays)
    return stats, counts


def accompaniment_clips(ds: StemsDataset, indices: Sequence[int], given: Sequence[str], n: int) -> list[Clip]:
    """`n` real clips for a sub-FAD, spread evenly over `indices`, in which at least one `given` stem is
    active (MIDI) and audible: the given stems are whatever the clip holds (some may be silent, as
    in MSDM's partial generation), but never all silent."""
    rows = [list(ds.row_names).index(g) for g in given]
    eligible = [i for i in indices if ds.crop_active(i)[rows].any()]
    if len(eligible) > n:
        eligible = [eligible[int(round(j))] for j in np.linspace(0, len(eligible) - 1, n)]
    clips = [load_clip(ds, i) for i in eligible]
    return [c for c in clips if any(c.active[r] and _audible(c.stems[r]) for r in rows)]


def fad_or_nan(fad: FrechetAudioDistance, generated: Sequence[np.ndarray], real: GaussianStats) -> float:
    """FAD of generated clips against real statistics; NaN (with a warning) when there are no more
    patch embeddings than dimensions (a singular covariance: more or longer clips, or a smaller
    `hop_frames`, fix it), or when the matrix square root fails."""
    emb = fad.embed(list(generated))
    if emb.shape[0] <= emb.shape[1] or not np.isfinite(emb).all():
        warnings.warn(f"FAD not computed: {emb.shape[0]} patch embeddings of dimension {emb.shape[1]} "
                      "(need more patches than dimensions, all finite)", stacklevel=2)
        return math.nan
    try:
        return frechet_distance(GaussianStats.from_embeddings(emb), real)
    except ValueError as e:
        warnings.warn(f"FAD not computable: {e}", stacklevel=2)
        return math.nan


def _model_settings(model: LoadedModel, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Sampling overrides without None values; the model's default guidance unless one is given."""
    kw = {k: v for k, v in dict(settings or {}).items() if v is not None}
    if model.spec.guidance is not None:
        kw.setdefault("guidance", model.spec.guidance)
    return kw


def resolved_generation_settings(model: LoadedModel, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every generation setting `generate_mixes` samples `model` with: its pipeline's
    `generation_defaults` with `settings` (None values left out) over them, as a plain dict."""
    return asdict(model.pipeline.generation_defaults.replace(**_model_settings(model, settings)))


def generate_mixes(model: LoadedModel, stems: Sequence[str], n: int, seconds: float, seed: int = 0,
                   settings: Mapping[str, Any] | None = None, progress: bool = False,
                   negative_prompts: Sequence[str | None] | None = None) -> list[Any]:
    """`n` generated four-stem songs (`Result`s; `.mix` is the sum of the stems), seeds seed..seed+n−1.
    GMSDI-kind models get `stems` as their prompts (stem names or worded prompts) and `negative_prompts`
    (one per stem, None = the other stems' prompts, as in `GMSDIPipeline.generate`); MSDM generates its
    channels and ignores both."""
    from tqdm.auto import tqdm

    kw = _model_settings(model, settings)
    pipe = model.pipeline
    out = []
    for i in tqdm(range(n), disable=not progress, desc=f"generate {model.spec.name}", unit="clip"):
        if model.spec.kind == "msdm":
            kw.pop("guidance", None)
            out.append(pipe.generate(seconds=seconds, seed=seed + i, **kw))
        else:
            out.append(pipe.generate(list(stems), negative_prompts, seconds=seconds, seed=seed + i, **kw))
    return out


def accompany_mixes(model: LoadedModel, clips: Sequence[Clip], stems: Sequence[str], generated: Sequence[str],
                    seed: int = 0, settings: Mapping[str, Any] | None = None,
                    progress: bool = False) -> list[np.ndarray]:
    """Mixes of given + generated stems (sub-FAD): for each real clip, the stems not in `generated`
    are given (locked) and the `generated` ones are generated; returns the mixes [T]. A given stem
    that is silent in the clip is absent: a GMSDI-kind model neither gets nor generates it, MSDM
    gets its channel locked to silence."""
    from tqdm.auto import tqdm

    kw = _model_settings(model, settings)
    given = [s for s in stems if s not in generated]
    pipe = model.pipeline
    out = []
    for i, c in enumerate(tqdm(clips, disable=not progress, desc=f"accompany {model.spec.name}", unit="clip")):
        audio = {s: c.stems[list(stems).index(s)] for s in given}
        locked = {s: a for s, a in audio.items() if _audible(a)}
        if model.spec.kind == "msdm":
            kw.pop("guidance", None)
            r = pipe.accompany(locked, silent=[s for s in given if s not in locked], seed=seed + i, **kw)
        else:
            r = pipe.accompany(locked, list(generated), seed=seed + i, **kw)
        out.append(r.mix)
    return out


def reference_sets(ds: StemsDataset, n: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """The FAD reference sets drawn from a held-out split `ds` (not the one the real statistics come
    from), visiting its clips in a seeded random order so they spread over its tracks:
    "mix" -> `n` audible clip mixtures; each stem class -> `n` clips where it is active (MIDI) and
    audible; "noise:<set>" -> white Gaussian noise at the RMS of each clip of <set>. Real held-out clips score
    what a perfect generator scores with `n` clips (FAD's small-set bias included); noise scores a
    generator that learned nothing but the level. A set may hold fewer than `n` clips if the split
    runs out.

    Returns:
        {set name: list of float32 [T] clips}.
    """
    rng = np.random.default_rng(seed)
    clips: dict[str, list[np.ndarray]] = {name: [] for name in ("mix", *ds.row_names)}
    for i in rng.permutation(len(ds)):
        if all(len(v) >= n for v in clips.values()):
            break
        c = load_clip(ds, int(i))
        if len(clips["mix"]) < n and _audible(c.mix):
            clips["mix"].append(c.mix)
        for k, name in enumerate(ds.row_names):
            if len(clips[name]) < n and c.active[k] and _audible(c.stems[k]):
                clips[name].append(c.stems[k])
    for name in list(clips):
        clips[f"noise:{name}"] = [
            (rng.standard_normal(x.shape) * np.sqrt(np.mean(x.astype(np.float64) ** 2))).astype(np.float32)
            for x in clips[name]]
    return clips


# The single-source FAD settings (the negative-prompting ablation): name -> (negative prompt, guidance),
# "others" standing for the other instruments' prompts joined.
SINGLE_SOURCE_VARIANTS: dict[str, tuple[str, float | None]] = {
    "no guidance": ("", 1.0),
    "classifier-free (negative = null prompt)": ("", None),
    "negative prompting (negative = the other instruments)": ("others", None),
}


def single_source_stems(model: LoadedModel, stem: str, others: Sequence[str], variant: str, n: int, seconds: float,
                        seed: int = 0, settings: Mapping[str, Any] | None = None,
                        progress: bool = False) -> list[np.ndarray]:
    """`n` stems generated from the one prompt `stem` under a `SINGLE_SOURCE_VARIANTS` setting
    (guidance None = the pipeline's default weight)."""
    from tqdm.auto import tqdm

    if variant not in SINGLE_SOURCE_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid names are {sorted(SINGLE_SOURCE_VARIANTS)}")
    negative, guidance = SINGLE_SOURCE_VARIANTS[variant]
    negative = compose(list(others)) if negative == "others" else negative
    kw = {k: v for k, v in dict(settings or {}).items() if v is not None}
    if guidance is not None:
        kw["guidance"] = guidance
    out = []
    for i in tqdm(range(n), disable=not progress, desc=f"{stem}: {variant}", unit="clip"):
        r = model.pipeline.generate([stem], [negative], seconds=seconds, seed=seed + i, **kw)
        out.append(r.stems[stem])
    return out


__all__ = ["CLIP_MIN_PEAK", "SINGLE_SOURCE_VARIANTS", "Clip", "SeparationRun", "accompaniment_clips", "accompany_mixes",
           "chunk_seed", "clip_dataset", "clip_indices", "fad_or_nan", "generate_mixes", "load_clip", "real_stats",
           "reference_sets", "run_separation", "scores_from_summary", "select_tracks", "single_source_stems",
           "split_dataset"]
