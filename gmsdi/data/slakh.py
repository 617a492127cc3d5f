"""Loader for the Slakh2100 folder layout: real Slakh2100 or our synthetic SynthSlakh.

Layout (one folder per track, as in Slakh2100)::

    ROOT/{train,validation,test}/TrackNNNNN/
        mix.flac            mono or stereo, any sample rate
        stems/S00.flac ...  one per stem with `audio_rendered: true`
        MIDI/S00.mid ...    one instrument per file
        metadata.yaml       `stems: {S00: {inst_class, program_num, is_drum, ...}}`

Two datasets sit on top of it:

- `MixtureDataset` (training, METHOD.md §2): random crops of the *mixture* with the tags of the
  instruments sounding in the crop and a prompt built from them. Stems are never read.
- `StemsDataset` (evaluation, supervised baselines): the mixture and its per-class stems.

Which instruments are active in a crop comes only from MIDI (notes sounding for at least
`min_active_s` seconds in the crop), never from audio, and stems with `audio_rendered: false` are
ignored everywhere since they are not in the mix.

Commands::

    python -m gmsdi.data.slakh resample --src ROOT --dst ROOT16K --sample-rate 16000
    python -m gmsdi.data.slakh stats --root ROOT --split train --crop-seconds 4
"""

from __future__ import annotations

import argparse
import hashlib
import math
import shutil
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi
import soundfile as sf
import soxr
import torch
import yaml
from torch.utils.data import Dataset
from tqdm import tqdm

from gmsdi.data.classes import DRUMS_FAMILY, GM_FAMILIES, PAPER_STEMS, family_of, program_name, stem_class
from gmsdi.data.prompts import compose, stem_prompt

__all__ = [
    "SPLITS",
    "Stem",
    "Track",
    "TrackActivity",
    "load_track",
    "list_tracks",
    "stem_intervals",
    "track_activity",
    "stem_activity",
    "class_activity",
    "activity_histogram",
    "read_audio",
    "resample_dataset",
    "MixtureDataset",
    "StemsDataset",
    "collate_mixtures",
    "collate_stems",
    "get_parser",
    "main",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
AUDIO_SUFFIXES: tuple[str, ...] = (".flac", ".wav")
OTHER = "other"

# Activity grid step (s): crop lookups interpolate a cumulative "seconds sounding" curve on it.
DEFAULT_FRAME_S = 0.05
# (ours) Every note counts as sounding for at least this long (s): drum hits are often written as
# very short MIDI notes although the sound rings on, and would otherwise never reach `min_active_s`.
DEFAULT_MIN_NOTE_S = 0.1
# Context (s) decoded on each side of a crop before resampling, so that the crop's edges are
# filtered as in a read of the whole file.
_RESAMPLE_CONTEXT_S = 0.02
_EPS = 1e-9


# ----------------------------------------------------------------------------------------------
# Metadata


@dataclass(frozen=True)
class Stem:
    """One stem of a track, from `metadata.yaml`.

    Attributes:
        stem_id: "S00", "S01", ...
        inst_class: the Slakh General MIDI family ("Bass", "Strings (continued)", ...).
        stem_class: our stem class ("bass", "strings", ...), see `classes.stem_class`.
        program: General MIDI program number (0-127; drum kit number for drums; -1 if unknown).
        program_name: General MIDI program (or drum kit) name.
        is_drum: whether the stem plays on the percussion channel.
        audio_rendered: False for stems that are not in the mix (ignored by every function here).
        audio_path: the stem's audio file (may not exist for unrendered stems).
        midi_path: the stem's MIDI file.
    """

    stem_id: str
    inst_class: str
    stem_class: str
    program: int
    program_name: str
    is_drum: bool
    audio_rendered: bool
    audio_path: Path
    midi_path: Path


@dataclass(frozen=True)
class Track:
    """One track folder.

    Attributes:
        name: folder name ("Track00001").
        path: the track folder.
        split: name of the folder holding the track ("train", ...).
        mix_path: the mixture audio file.
        duration_s: mixture length in seconds.
        sample_rate: sample rate of the mixture file (Hz).
        stems: every stem listed in the metadata, sorted by id, rendered or not.
        uuid: the track's UUID from the metadata ("" if absent).
    """

    name: str
    path: Path
    split: str
    mix_path: Path
    duration_s: float
    sample_rate: int
    stems: tuple[Stem, ...]
    uuid: str = ""
    # Activity grids keyed by (frame_s, min_note_s): computed once per track, see `track_activity`.
    _activity: dict[tuple[float, float], TrackActivity] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    @property
    def rendered_stems(self) -> tuple[Stem, ...]:
        """The stems that are in the mix (`audio_rendered: true`)."""
        return tuple(s for s in self.stems if s.audio_rendered)

    @property
    def classes(self) -> tuple[str, ...]:
        """Sorted stem classes of the rendered stems."""
        return tuple(sorted({s.stem_class for s in self.rendered_stems}))


def _find_audio(folder: Path, stem: str) -> Path:
    """`folder/stem.flac`, or another supported suffix if only that one exists."""
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / f"{stem}{AUDIO_SUFFIXES[0]}"


def _as_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


def _parse_stem(meta_path: Path, stem_id: str, entry: Any, audio_dir: Path, midi_dir: Path) -> Stem:
    if not isinstance(entry, dict):
        raise ValueError(
            f"malformed metadata {meta_path}: stem {stem_id!r} should be a mapping with inst_class, "
            f"program_num, is_drum, audio_rendered; got {entry!r}. Fix or re-render this track."
        )
    is_drum = _as_bool(entry.get("is_drum"), default=entry.get("inst_class") == "Drums")
    try:
        program = int(entry["program_num"]) if entry.get("program_num") is not None else -1
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"malformed metadata {meta_path}: stem {stem_id!r} has program_num "
            f"{entry.get('program_num')!r}, expected an integer. Fix or re-render this track."
        ) from err
    inst_class = entry.get("inst_class")
    if not inst_class:
        if program < 0:
            raise ValueError(
                f"malformed metadata {meta_path}: stem {stem_id!r} has neither inst_class nor "
                "program_num, so its instrument is unknown. Fix or re-render this track."
            )
        inst_class = family_of(program, is_drum)
    name = entry.get("midi_program_name")
    if not name:
        name = program_name(program, is_drum) if 0 <= program <= 127 else str(inst_class)
    return Stem(
        stem_id=stem_id,
        inst_class=str(inst_class),
        stem_class=stem_class(str(inst_class)),
        program=program,
        program_name=str(name),
        is_drum=is_drum,
        audio_rendered=_as_bool(entry.get("audio_rendered"), default=True),
        audio_path=_find_audio(audio_dir, stem_id),
        midi_path=midi_dir / f"{stem_id}.mid",
    )


def load_track(path: str | Path) -> Track:
    """Parse one track folder (its `metadata.yaml` and the mixture's header).

    Raises:
        FileNotFoundError: the folder, its metadata or its mixture is missing.
        ValueError: the metadata is malformed or the mixture is not readable audio.
    """
    path = Path(path)
    meta_path = path / "metadata.yaml"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} does not exist; a Slakh track folder needs a metadata.yaml "
            "(point at a TrackNNNNN folder of a Slakh2100-format dataset)."
        )
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise ValueError(
            f"malformed metadata {meta_path}: not valid YAML ({err}). Fix or re-render this track."
        ) from err
    if not isinstance(meta, dict) or not isinstance(meta.get("stems"), dict) or not meta["stems"]:
        raise ValueError(
            f"malformed metadata {meta_path}: expected a mapping with a non-empty 'stems' mapping "
            "(S00: {inst_class: ..., audio_rendered: ...}). Fix or re-render this track."
        )
    audio_dir = path / str(meta.get("audio_dir") or "stems")
    midi_dir = path / str(meta.get("midi_dir") or "MIDI")
    stems = tuple(
        _parse_stem(meta_path, str(sid), meta["stems"][sid], audio_dir, midi_dir)
        for sid in sorted(meta["stems"], key=str)
    )
    mix_path = _find_audio(path, "mix")
    if not mix_path.is_file():
        raise FileNotFoundError(
            f"{mix_path} does not exist; every track needs its mixture. Re-download or re-render "
            f"{path.name}, or remove its folder."
        )
    try:
        info = sf.info(str(mix_path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise ValueError(
            f"could not read audio file {mix_path} ({err}); it is corrupt or not audio. "
            f"Re-download or re-render {path.name}, or remove its folder."
        ) from err
    return Track(
        name=path.name,
        path=path,
        split=path.parent.name,
        mix_path=mix_path,
        duration_s=info.frames / info.samplerate,
        sample_rate=int(info.samplerate),
        stems=stems,
        uuid=str(meta.get("UUID", "")),
    )


def _track_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p / "metadata.yaml").is_file())


def list_tracks(root: str | Path, split: str | None = None) -> list[Track]:
    """All tracks of a Slakh-format folder, sorted by name.

    Args:
        root: a dataset root holding split folders, or a split folder holding track folders.
        split: "train", "validation", "test" (any subfolder name); None when `root` is itself
            a split folder.

    Raises:
        FileNotFoundError: `root` or the split folder is missing or holds no track folder.
        ValueError: `root` holds splits but `split` is None, or a track's files are malformed.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Slakh folder {root} does not exist; pass the folder of a Slakh2100-format dataset "
            "(real Slakh2100, or one rendered with gmsdi.data.synth)."
        )
    folder = root
    if split is not None:
        folder = root / split
        if not folder.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise FileNotFoundError(
                f"{root} has no {split!r} split folder; it holds: {', '.join(found) or 'nothing'}. "
                "Pass one of these as split, or split=None when root is a split folder itself."
            )
    dirs = _track_dirs(folder)
    if not dirs:
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir() and _track_dirs(p))
        if split is None and splits:
            raise ValueError(
                f"{root} is a dataset root with the splits {', '.join(splits)}; pass one of them as "
                "split (or pass the split folder as root)."
            )
        raise FileNotFoundError(
            f"no track folders (TrackNNNNN/ with a metadata.yaml) in {folder}; point root at a "
            "Slakh2100-format dataset or one of its split folders."
        )
    return [load_track(d) for d in dirs]


# ----------------------------------------------------------------------------------------------
# MIDI activity


def _merge_intervals(intervals: np.ndarray) -> np.ndarray:
    """Union of intervals `[N, 2]` (s) as sorted disjoint intervals `[M, 2]`."""
    if len(intervals) == 0:
        return np.zeros((0, 2))
    intervals = intervals[np.argsort(intervals[:, 0], kind="stable")]
    merged = [list(intervals[0])]
    for start, end in intervals[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return np.asarray(merged, dtype=np.float64)


def stem_intervals(stem: Stem, min_note_s: float = DEFAULT_MIN_NOTE_S) -> np.ndarray:
    """Time intervals during which the stem's MIDI notes sound.

    Each note lasts at least `min_note_s` (s); overlapping notes are merged.

    Returns:
        float64 `[M, 2]` sorted disjoint (start, end) pairs in seconds.
    """
    if not stem.midi_path.is_file():
        raise FileNotFoundError(
            f"MIDI file {stem.midi_path} does not exist; instrument activity comes from MIDI, so "
            "every rendered stem needs one. Re-download or re-render this track, or remove it."
        )
    try:
        with warnings.catch_warnings():
            # Slakh MIDI files put tempo events on instrument tracks; pretty_midi warns on each.
            warnings.simplefilter("ignore")
            midi = pretty_midi.PrettyMIDI(str(stem.midi_path))
    except Exception as err:  # mido/pretty_midi raise many types on bad files
        raise ValueError(
            f"could not parse MIDI file {stem.midi_path} ({err}); it is corrupt. Re-download or "
            "re-render this track, or remove it."
        ) from err
    notes = [(n.start, max(n.end, n.start + min_note_s)) for inst in midi.instruments for n in inst.notes]
    return _merge_intervals(np.asarray(notes, dtype=np.float64).reshape(-1, 2))


def _cumulative_coverage(intervals: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Seconds covered by disjoint sorted `intervals` within [0, t] for each t in `times`."""
    if len(intervals) == 0:
        return np.zeros_like(times)
    starts, ends = intervals[:, 0], intervals[:, 1]
    lengths = ends - starts
    before = np.concatenate([[0.0], np.cumsum(lengths)])
    k = np.searchsorted(starts, times, side="right")  # intervals starting at or before t
    last = np.maximum(k - 1, 0)
    partial = np.where(k > 0, np.clip(times - starts[last], 0.0, lengths[last]), 0.0)
    return before[last] + partial


@dataclass(frozen=True)
class TrackActivity:
    """When each rendered stem of a track sounds, on a frame grid.

    Attributes:
        stem_ids: ids of the rendered stems, in `Track.rendered_stems` order.
        stem_classes: their stem classes.
        frame_s: grid step (s).
        cumulative: float64 `[S + 1, F + 1]`: seconds during which stem s sounds within
            [0, f * frame_s]; the last row is the union of all stems (any stem sounding).
    """

    stem_ids: tuple[str, ...]
    stem_classes: tuple[str, ...]
    frame_s: float
    cumulative: np.ndarray

    def _at(self, t: np.ndarray) -> np.ndarray:
        """Rows of `cumulative` linearly interpolated at times `t` `[N]` -> `[S + 1, N]`."""
        n = self.cumulative.shape[1] - 1
        x = np.clip(np.asarray(t, dtype=np.float64) / self.frame_s, 0.0, float(n))
        i = np.minimum(np.floor(x).astype(np.int64), max(n - 1, 0))
        w = x - i
        lo = self.cumulative[:, i]
        hi = self.cumulative[:, np.minimum(i + 1, n)]
        return lo + w * (hi - lo)

    def sounding_seconds(self, start_s: float | np.ndarray, end_s: float | np.ndarray) -> np.ndarray:
        """Seconds each stem sounds within [start_s, end_s].

        Returns:
            `[S + 1]` for scalar times, `[S + 1, N]` for `[N]` arrays; the last row is the time
            during which any stem sounds.
        """
        start = np.atleast_1d(np.asarray(start_s, dtype=np.float64))
        end = np.atleast_1d(np.asarray(end_s, dtype=np.float64))
        secs = np.maximum(self._at(end) - self._at(start), 0.0)
        return secs[:, 0] if np.ndim(start_s) == 0 and np.ndim(end_s) == 0 else secs

    def active(self, start_s: float | np.ndarray, end_s: float | np.ndarray,
               min_active_s: float = 0.25) -> np.ndarray:
        """Whether each stem sounds for at least `min_active_s` seconds in the crop.

        Returns:
            bool `[S]` (scalar times) or `[S, N]`.
        """
        return self.sounding_seconds(start_s, end_s)[:-1] >= min_active_s - _EPS


def _activity_cache_path(track: Track, cache_dir: Path, frame_s: float, min_note_s: float) -> Path:
    stamps = [track.path.resolve(), frame_s, min_note_s, (track.path / "metadata.yaml").stat().st_mtime_ns]
    stamps += [s.midi_path.stat().st_mtime_ns for s in track.rendered_stems if s.midi_path.is_file()]
    key = hashlib.sha1(repr(stamps).encode()).hexdigest()[:16]
    return cache_dir / f"{track.name}-{key}.npz"


def track_activity(
    track: Track,
    frame_s: float = DEFAULT_FRAME_S,
    min_note_s: float = DEFAULT_MIN_NOTE_S,
    cache_dir: str | Path | None = None,
) -> TrackActivity:
    """The activity grid of a track's rendered stems, parsed from MIDI once and cached.

    The grid is kept on the `Track` object; with `cache_dir` it is also stored on disk (keyed by
    the track path, the parameters and the MIDI files' modification times) so that later runs
    skip MIDI parsing.
    """
    key = (float(frame_s), float(min_note_s))
    if key in track._activity:
        return track._activity[key]
    rendered = track.rendered_stems
    cache_file = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file = _activity_cache_path(track, cache_dir, frame_s, min_note_s)
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as data:
            cumulative = data["cumulative"]
    else:
        intervals = [stem_intervals(s, min_note_s) for s in rendered]
        union = _merge_intervals(np.concatenate([np.zeros((0, 2)), *intervals]))
        last_end = max([track.duration_s] + [float(iv[-1, 1]) for iv in intervals if len(iv)])
        n_frames = int(math.ceil(last_end / frame_s)) + 1
        times = np.arange(n_frames + 1) * frame_s
        cumulative = np.stack([_cumulative_coverage(iv, times) for iv in [*intervals, union]])
        if cache_file is not None:
            tmp = cache_file.with_name(cache_file.name + ".part.npz")
            np.savez(tmp, cumulative=cumulative)
            tmp.replace(cache_file)
    activity = TrackActivity(
        stem_ids=tuple(s.stem_id for s in rendered),
        stem_classes=tuple(s.stem_class for s in rendered),
        frame_s=float(frame_s),
        cumulative=cumulative,
    )
    track._activity[key] = activity
    return activity


def stem_activity(
    track: Track,
    start_s: float,
    end_s: float,
    min_active_s: float = 0.25,
    min_note_s: float = DEFAULT_MIN_NOTE_S,
) -> dict[str, bool]:
    """Which rendered stems have notes sounding for at least `min_active_s` s in [start_s, end_s].

    Returns:
        `{stem_id: active}` for the rendered stems only.
    """
    act = track_activity(track, min_note_s=min_note_s)
    return dict(zip(act.stem_ids, act.active(start_s, end_s, min_active_s).tolist(), strict=True))


def class_activity(
    track: Track,
    start_s: float,
    end_s: float,
    min_active_s: float = 0.25,
    min_note_s: float = DEFAULT_MIN_NOTE_S,
) -> dict[str, bool]:
    """`{stem_class: active}` over the track's rendered stem classes; a class is active when any
    of its stems is (see `stem_activity`)."""
    by_stem = stem_activity(track, start_s, end_s, min_active_s, min_note_s)
    out: dict[str, bool] = {}
    for stem in track.rendered_stems:
        out[stem.stem_class] = out.get(stem.stem_class, False) or by_stem[stem.stem_id]
    return dict(sorted(out.items()))


def _crop_starts(duration_s: float, crop_seconds: float, hop_seconds: float) -> np.ndarray:
    """Starts (s) of crops of `crop_seconds` every `hop_seconds` that fit in the track; one crop
    at 0 when the track is shorter than a crop."""
    if duration_s <= crop_seconds + _EPS:
        return np.zeros(1)
    n = int(math.floor((duration_s - crop_seconds) / hop_seconds + _EPS)) + 1
    return np.arange(n) * hop_seconds


def activity_histogram(
    tracks: Sequence[Track],
    crop_seconds: float,
    hop_seconds: float | None = None,
    min_active_s: float = 0.25,
    by_class: bool = False,
    min_note_s: float = DEFAULT_MIN_NOTE_S,
) -> dict[int, float]:
    """Distribution of the number of active stems (or classes) in crops, from MIDI activity.

    Args:
        tracks: the tracks to crop.
        crop_seconds: crop length (s).
        hop_seconds: crop spacing (s); None tiles each track with non-overlapping crops.
        min_active_s: seconds of notes that make a stem active in a crop.
        by_class: count distinct active stem classes instead of stems.

    Returns:
        `{n: fraction of crops with n active}` for n = 0..max, summing to 1.
    """
    if not tracks:
        raise ValueError("activity_histogram needs at least one track; the list is empty.")
    if crop_seconds <= 0:
        raise ValueError(f"crop_seconds must be positive, got {crop_seconds}")
    hop = crop_seconds if hop_seconds is None else hop_seconds
    if hop <= 0:
        raise ValueError(f"hop_seconds must be positive, got {hop_seconds}")
    counts = np.zeros(1, dtype=np.int64)
    for track in tracks:
        act = track_activity(track, min_note_s=min_note_s)
        starts = _crop_starts(track.duration_s, crop_seconds, hop)
        active = act.active(starts, starts + crop_seconds, min_active_s)  # [S, N]
        if by_class:
            classes = sorted(set(act.stem_classes))
            rows = [active[[c == k for k in act.stem_classes]].any(axis=0) for c in classes]
            active = np.stack(rows) if rows else np.zeros((0, len(starts)), dtype=bool)
        per_crop = np.bincount(active.sum(axis=0), minlength=1)
        if len(per_crop) > len(counts):
            counts = np.pad(counts, (0, len(per_crop) - len(counts)))
        counts[: len(per_crop)] += per_crop
    total = counts.sum()
    return {n: float(c / total) for n, c in enumerate(counts)}


# ----------------------------------------------------------------------------------------------
# Audio


def _unreadable(path: Path, err: Exception) -> ValueError:
    return ValueError(
        f"could not read audio file {path} ({err}); it is corrupt or not audio. Re-download or "
        "re-render this track, or remove its folder."
    )


def read_audio(
    path: str | Path,
    start_s: float = 0.0,
    duration_s: float | None = None,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Read a region of an audio file as mono at `sample_rate`.

    Only the region (plus a few ms of context for the resampler) is decoded. Channels are
    averaged; the file is resampled with soxr when its rate differs. The output has exactly
    `round(duration_s * sample_rate)` samples: zero-padded past the end of the file, so stems
    shorter than the mix read as silence.

    Args:
        path: audio file (flac, wav, ...).
        start_s: region start (s, >= 0).
        duration_s: region length (s); None reads to the end of the file.
        sample_rate: output rate (Hz).

    Returns:
        float32 `[T]`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not readable audio, or the arguments are out of range.
    """
    path = Path(path)
    if start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    if duration_s is not None and duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist; re-download or re-render this track.")
    try:
        with sf.SoundFile(str(path)) as f:
            rate, total = int(f.samplerate), int(f.frames)
            if duration_s is None:
                duration_s = max(total / rate - start_s, 0.0)
            n_out = int(round(duration_s * sample_rate))
            first = int(round(start_s * rate))
            if n_out == 0 or first >= total:
                return np.zeros(n_out, dtype=np.float32)
            skip = 0
            if rate == sample_rate:
                chunk, n_read = first, n_out
            else:
                # Start the decoded chunk on an input frame that falls exactly on an output sample,
                # so a crop lands on the same output grid as a read of the whole file.
                step = rate // math.gcd(rate, sample_rate)
                context = int(math.ceil(_RESAMPLE_CONTEXT_S * rate))
                chunk = max(first - context, 0) // step * step
                chunk_out = chunk // step * (sample_rate * step // rate)  # exact: chunk is on the grid
                skip = max(int(round(start_s * sample_rate)) - chunk_out, 0)
                n_read = first - chunk + int(math.ceil(duration_s * rate)) + context
            f.seek(chunk)
            data = f.read(min(n_read, total - chunk), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise _unreadable(path, err) from err
    x = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        x = soxr.resample(x, rate, sample_rate).astype(np.float32, copy=False)[skip:]
    out = np.zeros(n_out, dtype=np.float32)
    n = min(n_out, len(x))
    out[:n] = x[:n]
    return out


def _resample_file(src: Path, dst: Path, sample_rate: int, block_s: float = 30.0) -> None:
    """Write `src` as mono FLAC at `sample_rate`, streaming in blocks of `block_s` seconds."""
    tmp = dst.with_name(dst.name + ".part")
    try:
        with sf.SoundFile(str(src)) as fin:
            rate = int(fin.samplerate)
            subtype = fin.subtype if fin.subtype in ("PCM_16", "PCM_24") else "PCM_16"
            stream = None
            if rate != sample_rate:
                stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
            with sf.SoundFile(str(tmp), "w", samplerate=sample_rate, channels=1, format="FLAC",
                              subtype=subtype) as fout:
                blocksize = max(int(block_s * rate), 1)
                for block in fin.blocks(blocksize=blocksize, dtype="float32", always_2d=True):
                    mono = block.mean(axis=1, dtype=np.float32)
                    out = stream.resample_chunk(mono) if stream is not None else mono
                    fout.write(np.clip(out, -1.0, 1.0))
                if stream is not None:
                    fout.write(np.clip(stream.resample_chunk(np.zeros(0, np.float32), last=True), -1.0, 1.0))
    except (sf.SoundFileError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        raise _unreadable(src, err) from err
    tmp.replace(dst)


def _resample_tree(args: tuple[Path, Path, int, bool]) -> int:
    """Copy one folder tree, resampling its audio; returns the number of files written."""
    src, dst, sample_rate, overwrite = args
    written = 0
    for item in sorted(src.rglob("*")):
        if not item.is_file():
            continue
        is_audio = item.suffix.lower() in AUDIO_SUFFIXES
        target = dst / item.relative_to(src)
        if is_audio:
            target = target.with_suffix(".flac")
        if target.exists() and not overwrite:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_audio:
            _resample_file(item, target, sample_rate)
        else:
            shutil.copy2(item, target)
        written += 1
    return written


def resample_dataset(
    src: str | Path,
    dst: str | Path,
    sample_rate: int = 16000,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> int:
    """Copy a Slakh-format folder with every audio file as mono FLAC at `sample_rate`.

    MIDI, metadata and every other file are copied unchanged. Files already in `dst` are kept
    unless `overwrite`, so an interrupted run can be resumed. A wav track is written as flac.

    Args:
        src: dataset root, split folder or track folder.
        dst: output folder (created).
        sample_rate: output rate (Hz).
        workers: processes resampling tracks in parallel.

    Returns:
        the number of files written.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist; pass a Slakh2100-format folder.")
    if dst.resolve() == src.resolve():
        raise ValueError("dst must differ from src; resampling writes a copy.")
    track_dirs = sorted(p.parent for p in src.rglob("metadata.yaml"))
    if not track_dirs:
        raise FileNotFoundError(
            f"no track folders (with a metadata.yaml) under {src}; pass a Slakh2100-format folder."
        )
    written = 0
    # Files outside track folders (READMEs, split lists) are copied as they are.
    inside = set(track_dirs)
    for item in sorted(src.rglob("*")):
        if item.is_file() and not any(parent in inside for parent in item.parents):
            target = dst / item.relative_to(src)
            if overwrite or not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, target)
                written += 1
    jobs = [(d, dst / d.relative_to(src), sample_rate, overwrite) for d in track_dirs]
    bar = tqdm(total=len(jobs), unit="track", desc="resample", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for n in pool.map(_resample_tree, jobs):
                written += n
                bar.update()
    else:
        for job in jobs:
            written += _resample_tree(job)
            bar.update()
    bar.close()
    return written


# ----------------------------------------------------------------------------------------------
# Datasets


def _check_crop(crop_seconds: float | None, name: str = "crop_seconds") -> None:
    if crop_seconds is not None and crop_seconds <= 0:
        raise ValueError(f"{name} must be positive, got {crop_seconds}")


class _RandomCrops:
    """Track choice proportional to length and uniform crop starts, from one rng per item."""

    def __init__(self, tracks: Sequence[Track], crop_seconds: float, sample_rate: int):
        self.durations = np.array([t.duration_s for t in tracks], dtype=np.float64)
        if self.durations.sum() <= 0:
            raise ValueError("every track has zero length; nothing to crop.")
        self.cumulative = np.cumsum(self.durations)
        self.crop_seconds = crop_seconds
        self.sample_rate = sample_rate

    def track(self, rng: np.random.Generator) -> int:
        u = rng.random() * self.cumulative[-1]
        return int(min(np.searchsorted(self.cumulative, u, side="right"), len(self.cumulative) - 1))

    def start(self, track_index: int, rng: np.random.Generator) -> float:
        span = max(self.durations[track_index] - self.crop_seconds, 0.0)
        # On the output sample grid, so equal starts give equal audio.
        return float(np.floor(rng.random() * span * self.sample_rate) / self.sample_rate)


class MixtureDataset(Dataset):
    """Random crops of mixtures with the tags and a prompt of the instruments active in them.

    Item `i` is drawn from an rng seeded by `(seed, epoch, i)`: the same for a given seed and
    epoch, different after `set_epoch`. A track is chosen with probability proportional to its
    length and a start uniformly in it; the start is redrawn (up to `max_tries` times) while the
    crop has no active stem or more than `max_silent_fraction` of it has no note sounding, then
    the best try is kept. Stems are never read.

    An item is a dict:
        audio: float32 `[1, T]`, T = round(crop_seconds * sample_rate).
        tags: sorted unique stem classes active in the crop.
        programs: General MIDI program names of the active stems (in stem order).
        prompt: per-class prompts at random granularity (`prompts.stem_prompt`), composed in a
            random order (`prompts.compose`); "" when nothing is active.
        track: track name. start: crop start (s).

    Note: with persistent DataLoader workers, `set_epoch` must reach the workers' copies.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        sample_rate: int = 16000,
        crop_seconds: float = 4.0,
        crops_per_epoch: int | None = None,
        seed: int = 0,
        min_active_s: float = 0.25,
        max_silent_fraction: float = 0.5,
        max_tries: int = 8,
        min_note_s: float = DEFAULT_MIN_NOTE_S,
        activity_cache: str | Path | None = None,
    ):
        """
        Args:
            root, split: see `list_tracks`.
            sample_rate: output rate (Hz).
            crop_seconds: crop length (s).
            crops_per_epoch: dataset length; None gives total mixture length / crop_seconds.
            seed: base seed of every item's rng.
            min_active_s: seconds of notes that make a stem active in a crop.
            max_silent_fraction: (ours) largest fraction of a crop with no note sounding that is
                accepted without redrawing; 1 accepts any crop with an active stem.
            max_tries: crop positions tried per item.
            min_note_s: shortest note duration (s) for activity, see `DEFAULT_MIN_NOTE_S`.
            activity_cache: optional folder caching the MIDI activity grids on disk.
        """
        _check_crop(crop_seconds)
        if not 0.0 <= max_silent_fraction <= 1.0:
            raise ValueError(f"max_silent_fraction must be in [0, 1], got {max_silent_fraction}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        if min_active_s > crop_seconds:
            raise ValueError(
                f"min_active_s ({min_active_s} s) is longer than a crop ({crop_seconds} s), so no "
                "instrument could ever be active; lower min_active_s or lengthen the crops."
            )
        self.tracks = list_tracks(root, split)
        self.sample_rate = int(sample_rate)
        self.crop_seconds = float(crop_seconds)
        self.seed = int(seed)
        self.epoch = 0
        self.min_active_s = float(min_active_s)
        self.max_silent_fraction = float(max_silent_fraction)
        self.max_tries = int(max_tries)
        # Parsed once here so that forked DataLoader workers share the grids.
        self.activity = [track_activity(t, min_note_s=min_note_s, cache_dir=activity_cache)
                         for t in self.tracks]
        self._crops = _RandomCrops(self.tracks, self.crop_seconds, self.sample_rate)
        total = float(self._crops.durations.sum())
        self.crops_per_epoch = (
            int(crops_per_epoch) if crops_per_epoch is not None
            else max(1, int(math.ceil(total / self.crop_seconds)))
        )

    def set_epoch(self, epoch: int) -> None:
        """Draw a different set of crops (item i of epoch e depends on (seed, e, i))."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.crops_per_epoch

    def _choose_start(self, index: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
        act = self.activity[index]
        best: tuple[tuple[bool, float], float, np.ndarray] | None = None
        for _ in range(self.max_tries):
            start = self._crops.start(index, rng)
            secs = act.sounding_seconds(start, start + self.crop_seconds)
            active = secs[:-1] >= self.min_active_s - _EPS
            silent = 1.0 - secs[-1] / self.crop_seconds
            if active.any() and silent <= self.max_silent_fraction + _EPS:
                return start, active
            score = (bool(active.any()), float(secs[-1]))
            if best is None or score > best[0]:
                best = (score, start, active)
        assert best is not None
        return best[1], best[2]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} crops")
        rng = np.random.default_rng((self.seed, self.epoch, int(i)))
        index = self._crops.track(rng)
        track = self.tracks[index]
        start, active = self._choose_start(index, rng)
        audio = read_audio(track.mix_path, start, self.crop_seconds, self.sample_rate)
        stems = [s for s, on in zip(track.rendered_stems, active, strict=True) if on]
        names: dict[str, list[str]] = {}
        for s in stems:
            names.setdefault(s.stem_class, []).append(s.program_name)
        tags = sorted(names)
        parts = [stem_prompt(c, names[c][rng.integers(len(names[c]))], rng) for c in tags]
        return {
            "audio": torch.from_numpy(audio)[None],
            "tags": tags,
            "programs": [s.program_name for s in stems],
            "prompt": compose(parts, rng),
            "track": track.name,
            "start": start,
        }


def collate_mixtures(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch `MixtureDataset` items: audio `[B, 1, T]`, start float `[B]`, the rest as lists."""
    return {
        "audio": torch.stack([b["audio"] for b in batch]),
        "tags": [b["tags"] for b in batch],
        "programs": [b["programs"] for b in batch],
        "prompt": [b["prompt"] for b in batch],
        "track": [b["track"] for b in batch],
        "start": torch.tensor([b["start"] for b in batch], dtype=torch.float64),
    }


class StemsDataset(Dataset):
    """Mixtures with their per-class stems, for evaluation and supervised baselines.

    Modes:
        crop_seconds=None: one item per whole track (T varies; use batch size 1).
        crop_seconds and hop_seconds: crops every hop_seconds through each track, in order.
        crop_seconds only: random crops (track proportional to length, deterministic given
            seed, epoch and index like `MixtureDataset`).

    An item is a dict:
        mix: float32 `[1, T]`: mix.flac, or the sum of the `stems` rows with `mix_from_stems`.
        stems: float32 `[K, T]`: per class, the sum of the rendered stems of that class (zeros
            when the track has none); with `include_other`, a last row "other" sums the rendered
            stems of every remaining class. The real Slakh mix also holds classes outside
            `classes`, so without it the rows need not sum to the mix.
        classes: the K row names.
        active: bool `[K]`: whether the class is active in the crop, from MIDI.
        track: track name. start: crop start (s).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        classes: Sequence[str] = PAPER_STEMS,
        sample_rate: int = 16000,
        crop_seconds: float | None = None,
        hop_seconds: float | None = None,
        seed: int = 0,
        include_other: bool = False,
        mix_from_stems: bool = False,
        crops_per_epoch: int | None = None,
        min_active_s: float = 0.25,
        min_note_s: float = DEFAULT_MIN_NOTE_S,
        on_missing: str = "error",
        activity_cache: str | Path | None = None,
    ):
        """
        Args:
            root, split: see `list_tracks`.
            classes: stem classes of the rows (see `classes.stem_class`).
            sample_rate: output rate (Hz).
            crop_seconds, hop_seconds: see the modes above (s).
            seed: base seed of random crops.
            include_other: add an "other" row with the remaining rendered stems.
            mix_from_stems: use the sum of the rows as the mix instead of mix.flac.
            crops_per_epoch: number of random crops; None gives total length / crop_seconds.
            min_active_s: seconds of notes that make a class active in a crop.
            min_note_s: shortest note duration (s) for activity.
            on_missing: what to do with a rendered stem whose audio file is missing: "error",
                "skip" the track, or read it as "zeros".
            activity_cache: optional folder caching the MIDI activity grids on disk.
        """
        _check_crop(crop_seconds)
        _check_crop(hop_seconds, "hop_seconds")
        if hop_seconds is not None and crop_seconds is None:
            raise ValueError("hop_seconds needs crop_seconds; pass both, or neither for whole tracks.")
        if on_missing not in ("error", "skip", "zeros"):
            raise ValueError(f"on_missing must be 'error', 'skip' or 'zeros', got {on_missing!r}")
        tracks = list_tracks(root, split)
        classes = tuple(classes)
        if not classes:
            raise ValueError("classes is empty; pass at least one stem class, e.g. PAPER_STEMS.")
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes has repeated names: {list(classes)}; list each class once.")
        found = sorted({c for t in tracks for c in t.classes})
        known = {stem_class(f) for f in (*GM_FAMILIES, DRUMS_FAMILY)}
        unknown = [c for c in classes if c not in found and c not in known]
        if unknown:
            raise ValueError(
                f"unknown stem classes {unknown}; the classes found in this dataset are: "
                f"{', '.join(found)} (\"other\" comes from include_other=True)."
            )
        absent = [c for c in classes if c not in found]
        if absent:
            warnings.warn(
                f"no track of this dataset has the classes {absent}; their rows will be zeros "
                f"(classes found: {', '.join(found)}).",
                stacklevel=2,
            )
        self.classes = classes
        self.include_other = bool(include_other)
        self.row_names: tuple[str, ...] = classes + ((OTHER,) if include_other else ())
        self.on_missing = on_missing
        self.tracks = self._check_files(tracks)
        if not self.tracks:
            raise FileNotFoundError("every track lacks some stem audio file; nothing left to load.")
        self.sample_rate = int(sample_rate)
        self.crop_seconds = None if crop_seconds is None else float(crop_seconds)
        self.hop_seconds = None if hop_seconds is None else float(hop_seconds)
        self.seed = int(seed)
        self.epoch = 0
        self.mix_from_stems = bool(mix_from_stems)
        self.min_active_s = float(min_active_s)
        self.activity = [track_activity(t, min_note_s=min_note_s, cache_dir=activity_cache)
                         for t in self.tracks]
        self._crops: _RandomCrops | None = None
        self._index: list[tuple[int, float]] = []
        if self.crop_seconds is None:
            self._index = [(k, 0.0) for k in range(len(self.tracks))]
        elif self.hop_seconds is not None:
            for k, t in enumerate(self.tracks):
                starts = _crop_starts(t.duration_s, self.crop_seconds, self.hop_seconds)
                self._index += [(k, float(s)) for s in starts]
        else:
            self._crops = _RandomCrops(self.tracks, self.crop_seconds, self.sample_rate)
            total = float(self._crops.durations.sum())
            self._length = (int(crops_per_epoch) if crops_per_epoch is not None
                            else max(1, int(math.ceil(total / self.crop_seconds))))

    def _needed(self, track: Track) -> list[Stem]:
        return [s for s in track.rendered_stems if s.stem_class in self.classes or self.include_other]

    def _check_files(self, tracks: list[Track]) -> list[Track]:
        missing = {t.name: [s.audio_path for s in self._needed(t) if not s.audio_path.is_file()]
                   for t in tracks}
        missing = {k: v for k, v in missing.items() if v}
        if missing and self.on_missing == "error":
            first = next(iter(missing.values()))[0]
            raise FileNotFoundError(
                f"{len(missing)} track(s) lack rendered stem audio files (e.g. {first}); re-download "
                "them, or pass on_missing='skip' to drop those tracks or 'zeros' to read them as silence."
            )
        if missing and self.on_missing == "skip":
            warnings.warn(f"skipping {len(missing)} track(s) with missing stem audio files: "
                          f"{', '.join(sorted(missing))}", stacklevel=3)
            return [t for t in tracks if t.name not in missing]
        return tracks

    def set_epoch(self, epoch: int) -> None:
        """Draw a different set of random crops (no effect on whole tracks or hop crops)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._length if self._crops is not None else len(self._index)

    def crop_position(self, i: int) -> tuple[int, float]:
        """(track index, start in s) of item i, without reading audio."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        if self._crops is not None:
            rng = np.random.default_rng((self.seed, self.epoch, int(i)))
            k = self._crops.track(rng)
            return k, self._crops.start(k, rng)
        return self._index[i]

    def _row(self, stem: Stem) -> int | None:
        if stem.stem_class in self.classes:
            return self.classes.index(stem.stem_class)
        return len(self.classes) if self.include_other else None

    def crop_active(self, i: int) -> np.ndarray:
        """bool [K]: item i's `active` (from MIDI), without reading audio."""
        k, start = self.crop_position(i)
        track = self.tracks[k]
        duration = self.crop_seconds if self.crop_seconds is not None else track.duration_s
        active = np.zeros(len(self.row_names), dtype=bool)
        stem_active = self.activity[k].active(start, start + duration, self.min_active_s)
        for stem, on in zip(track.rendered_stems, stem_active, strict=True):
            row = self._row(stem)
            if row is not None:
                active[row] |= bool(on)
        return active

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, start = self.crop_position(i)
        track, act = self.tracks[k], self.activity[k]
        duration = self.crop_seconds if self.crop_seconds is not None else track.duration_s
        n = int(round(duration * self.sample_rate))
        rows = np.zeros((len(self.row_names), n), dtype=np.float32)
        active = np.zeros(len(self.row_names), dtype=bool)
        stem_active = act.active(start, start + duration, self.min_active_s)
        for stem, on in zip(track.rendered_stems, stem_active, strict=True):
            row = self._row(stem)
            if row is None:
                continue
            active[row] |= bool(on)
            if stem.audio_path.is_file() or self.on_missing == "error":
                rows[row] += read_audio(stem.audio_path, start, duration, self.sample_rate)
        if self.mix_from_stems:
            mix = rows.sum(axis=0)
        else:
            mix = read_audio(track.mix_path, start, duration, self.sample_rate)
        return {
            "mix": torch.from_numpy(mix)[None],
            "stems": torch.from_numpy(rows),
            "classes": list(self.row_names),
            "active": torch.from_numpy(active),
            "track": track.name,
            "start": float(start),
        }


def collate_stems(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch `StemsDataset` crops: mix `[B, 1, T]`, stems `[B, K, T]`, active `[B, K]`."""
    return {
        "mix": torch.stack([b["mix"] for b in batch]),
        "stems": torch.stack([b["stems"] for b in batch]),
        "classes": batch[0]["classes"],
        "active": torch.stack([b["active"] for b in batch]),
        "track": [b["track"] for b in batch],
        "start": torch.tensor([b["start"] for b in batch], dtype=torch.float64),
    }


# ----------------------------------------------------------------------------------------------
# Command line


def get_parser() -> argparse.ArgumentParser:
    """Parser of `python -m gmsdi.data.slakh {resample,stats}`."""
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m gmsdi.data.slakh", description=summary)
    sub = parser.add_subparsers(dest="command", required=True)
    res = sub.add_parser("resample", help="write a mono FLAC copy of a Slakh folder at another rate")
    res.add_argument("--src", required=True, type=Path, help="dataset root, split or track folder")
    res.add_argument("--dst", required=True, type=Path, help="output folder")
    res.add_argument("--sample-rate", type=int, default=16000, help="output rate (Hz)")
    res.add_argument("--workers", type=int, default=1, help="parallel processes")
    res.add_argument("--overwrite", action="store_true", help="rewrite files already in dst")
    stats = sub.add_parser("stats", help="how many instruments are active in crops, and hours of audio")
    stats.add_argument("--root", required=True, type=Path, help="dataset root or split folder")
    stats.add_argument("--split", default=None, help="split folder name (train, validation, test)")
    stats.add_argument("--crop-seconds", type=float, default=4.0, help="crop length (s)")
    stats.add_argument("--hop-seconds", type=float, default=None, help="crop spacing (s); default: crop")
    stats.add_argument("--min-active-s", type=float, default=0.25, help="seconds of notes to be active")
    return parser


def _format_histogram(title: str, hist: dict[int, float]) -> str:
    lines = [title]
    lines += [f"  {n:3d}  {frac:7.2%}  {'#' * int(round(frac * 50))}" for n, frac in hist.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m gmsdi.data.slakh`; returns the exit status."""
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "resample":
        n = resample_dataset(args.src, args.dst, args.sample_rate, workers=args.workers,
                             overwrite=args.overwrite)
        print(f"wrote {n} files to {args.dst}")
        return 0
    tracks = list_tracks(args.root, args.split)
    hours = sum(t.duration_s for t in tracks) / 3600.0
    kwargs = dict(hop_seconds=args.hop_seconds, min_active_s=args.min_active_s)
    by_stem = activity_histogram(tracks, args.crop_seconds, **kwargs)
    by_class = activity_histogram(tracks, args.crop_seconds, by_class=True, **kwargs)
    n_crops = sum(len(_crop_starts(t.duration_s, args.crop_seconds, args.hop_seconds or args.crop_seconds))
                  for t in tracks)
    where = f"{args.root}" + (f" [{args.split}]" if args.split else "")
    print(f"{where}: {len(tracks)} tracks, {hours:.3f} hours of mixture, {n_crops} crops of "
          f"{args.crop_seconds:g} s")
    print(_format_histogram("fraction of crops by number of active stems:", by_stem))
    print(_format_histogram("fraction of crops by number of active stem classes:", by_class))
    return 0


if __name__ == "__main__":
    sys.exit(main())
