"""SynthSlakh: compose multi-instrument songs and render each instrument with FluidSynth into the
Slakh2100 folder layout (`TrackNNNNN/mix.flac`, `stems/SNN.flac`, `MIDI/SNN.mid`, `all_src.mid`,
`metadata.yaml`), so that our data and the real Slakh2100 load through the same code.

Every stem is rendered on its own, at its own loudness, and never normalised alone; the stems
are summed into the mix and one gain for the whole track gives headroom, so the stems sum to
the mix (up to 16-bit quantisation) and keep their relative levels.

    python -m gmsdi.data.synth --out /tmp/s --tracks 4 --seconds 20 --seed 1
    python -m gmsdi.data.synth --preset default --out data/synthslakh      # the training set
    python -m gmsdi.data.synth --check data/synthslakh                     # verify the manifest
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import multiprocessing as mp
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf
import soxr
import yaml
from scipy.signal import oaconvolve
from tqdm import tqdm

from gmsdi.data.classes import family_of, program_name
from gmsdi.data.compose import ArrangementConfig, Song, arrange_music21, compose_song, music21_pieces

SOUNDFONTS: dict[str, tuple[str, ...]] = {
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2",),
    "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2",),
    "musescore": ("/usr/share/sounds/sf3/MuseScore_General.sf3", "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
}
SPLITS = ("train", "validation", "test")
# The default data set: (split, tracks, first track index). Seed and length are in PRESETS.
PRESETS: dict[str, dict] = {
    "default": {"seed": 2024, "seconds": 32.0, "splits": (("train", 1150, 1), ("validation", 60, 1151),
                                                           ("test", 120, 1211))},
    "small": {"seed": 7, "seconds": 16.0, "splits": (("train", 40, 1), ("validation", 8, 41), ("test", 8, 49))},
}
# Loudness of a stem before mixing: mean and spread of its RMS (dBFS over its sounding frames).
STEM_LEVEL_DB: dict[str, tuple[float, float]] = {"drums": (-19.0, 2.0), "bass": (-20.0, 2.0)}
DEFAULT_LEVEL_DB = (-22.0, 2.5)


@dataclass
class SynthConfig:
    """Rendering settings. `sample_rate` is the output rate; FluidSynth runs at `synth_rate`
    (default: twice the output rate, at least 32 kHz) and soxr resamples, which avoids the
    aliasing of FluidSynth's sample interpolation at low rates."""

    sample_rate: int = 16000
    synth_rate: int | None = None
    seconds: float = 32.0
    soundfont: str = "fluidr3"
    target_peak_db: float = -1.0
    reverb_wet: tuple[float, float] = (0.03, 0.2)
    reverb_rt60: tuple[float, float] = (0.25, 1.2)
    subtype: str = "PCM_16"
    arrangement: ArrangementConfig = field(default_factory=ArrangementConfig)

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 96000:
            raise ValueError(f"sample_rate must be in 8000..96000 Hz, got {self.sample_rate}")
        if self.seconds <= 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")

    @property
    def render_rate(self) -> int:
        if self.synth_rate:
            return self.synth_rate
        return max(32000, 2 * self.sample_rate) if self.sample_rate < 32000 else self.sample_rate


def find_soundfont(name_or_path: str) -> Path:
    """A soundfont by name (fluidr3, timgm6mb, musescore) or path; a clear error if it is missing."""
    candidates = SOUNDFONTS.get(name_or_path.lower(), (name_or_path,))
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    hint = ("install the Debian packages in packages.txt (run `bash scripts/setup.sh` as root, or "
            "`apt-get install fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small`)")
    if name_or_path.lower() in SOUNDFONTS:
        raise FileNotFoundError(f"soundfont {name_or_path!r} not found at {', '.join(candidates)}: {hint}")
    raise FileNotFoundError(
        f"soundfont file {name_or_path!r} does not exist; give a path to an .sf2/.sf3 file or one of "
        f"{', '.join(SOUNDFONTS)} ({hint})")


class StemRenderer:
    """One FluidSynth synthesizer with one loaded soundfont, reused for every stem of a track.

    Reverb and chorus are off inside FluidSynth (their state would leak from one stem into the
    next and break determinism); `system_reset` between stems kills all voices.
    """

    def __init__(self, soundfont: Path, sample_rate: int) -> None:
        import fluidsynth

        self.sample_rate = sample_rate
        self.fs = fluidsynth.Synth(gain=0.5, samplerate=sample_rate, **{
            "synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 512})
        self.sfid = self.fs.sfload(str(soundfont))
        if self.sfid < 0:
            raise RuntimeError(f"FluidSynth could not load the soundfont {soundfont}; is it a valid .sf2/.sf3?")
        self._write = fluidsynth._fl.fluid_synth_write_float
        self._write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._write.restype = ctypes.c_int
        self.name = soundfont.name

    def close(self) -> None:
        """Free the synthesizer and its soundfont."""
        self.fs.delete()

    def _samples(self, out: np.ndarray) -> None:
        n = out.shape[0]
        if n:
            buf = np.empty((n, 2), dtype=np.float32)
            self._write(self.fs.synth, n, buf.ctypes.data, 0, 2, buf.ctypes.data, 1, 2)
            out[:] = buf.mean(axis=1)

    def render(self, notes: list[pretty_midi.Note], program: int, is_drum: bool, seconds: float) -> np.ndarray:
        """Render one instrument's notes to mono float32 audio [round(seconds * rate)]."""
        self.fs.system_reset()
        chan = 9 if is_drum else 0
        if self.fs.program_select(chan, self.sfid, 128 if is_drum else 0, program) != 0 and is_drum:
            self.fs.program_select(chan, self.sfid, 128, 0)  # kit missing in this soundfont
        events = [(n.end, 0, n.pitch, 0) for n in notes] + [(n.start, 1, n.pitch, n.velocity) for n in notes]
        events.sort()
        total = int(round(seconds * self.sample_rate))
        # FluidSynth computes audio in blocks of 64 frames; rendering whole blocks makes every
        # stem start on a block boundary, so no state carries from one stem into the next.
        audio = np.zeros(-(-total // 64) * 64, dtype=np.float32)
        pos = 0
        for t, on, pitch, vel in events:
            idx = min(len(audio), int(round(t * self.sample_rate)))
            self._samples(audio[pos:idx])
            pos = idx
            if on:
                self.fs.noteon(chan, pitch, vel)
            else:
                self.fs.noteoff(chan, pitch)
        self._samples(audio[pos:])
        self.fs.system_reset()
        return audio[:total]


def _room(rng: np.random.Generator, rate: int, rt60: float) -> np.ndarray:
    """A deterministic room impulse response: exponentially decaying noise, no direct path."""
    n = int(rt60 * rate)
    t = np.arange(n) / rate
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[: int(0.01 * rate)] = 0.0  # pre-delay
    return (ir / np.sqrt(np.sum(ir ** 2))).astype(np.float32)


def _sounding_rms_db(x: np.ndarray, rate: int) -> float:
    """RMS in dBFS over 100 ms frames that sound (power within 50 dB of the loudest frame)."""
    hop = rate // 10
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    power = (frames.astype(np.float64) ** 2).mean(axis=1)
    if power.size == 0 or power.max() <= 1e-20:
        return -np.inf
    loud = power[power > power.max() * 1e-5]
    return float(10 * np.log10(loud.mean()))


@dataclass
class RenderedTrack:
    song: Song
    stems: list[np.ndarray]  # per part with notes, float32 [T] at config.sample_rate
    mix: np.ndarray
    gain: float
    clipped: list[int]  # parts whose level alone would have clipped without the track gain


def render_song(song: Song, renderer: StemRenderer, config: SynthConfig, rng: np.random.Generator) -> RenderedTrack:
    """Render, level, reverberate and mix every part of `song` that has notes."""
    rate = config.sample_rate
    room = _room(rng, rate, float(rng.uniform(*config.reverb_rt60)))
    wet = float(rng.uniform(*config.reverb_wet))
    stems = []
    for part in song.parts:
        x = renderer.render(part.notes, part.program, part.is_drum, config.seconds)
        if renderer.sample_rate != rate:
            x = soxr.resample(x, renderer.sample_rate, rate).astype(np.float32)
        n = int(round(config.seconds * rate))
        x = np.pad(x, (0, max(0, n - len(x))))[:n]
        level = _sounding_rms_db(x, rate)
        mean, spread = STEM_LEVEL_DB.get(part.stem_class, DEFAULT_LEVEL_DB)
        target = mean + spread * float(rng.standard_normal())
        if np.isfinite(level):
            x = x * np.float32(10 ** ((target - level) / 20))
        w = wet * (0.4 if part.is_drum else 1.0)
        x = (1 - w) * x + w * oaconvolve(x, room)[:n].astype(np.float32)
        stems.append(x.astype(np.float32))
    limit = 10 ** (config.target_peak_db / 20)
    mix = np.sum(stems, axis=0) if stems else np.zeros(int(round(config.seconds * rate)), np.float32)
    peaks = [float(np.abs(s).max()) for s in stems]
    clipped = [i for i, p in enumerate(peaks) if p > limit]
    gain = limit / max([float(np.abs(mix).max()), *peaks, limit])
    stems = [s * np.float32(gain) for s in stems]
    return RenderedTrack(song, stems, np.sum(stems, axis=0).astype(np.float32) if stems else mix, gain, clipped)


def write_track(track_dir: Path, r: RenderedTrack, config: SynthConfig, soundfont: str, track_uuid: str) -> None:
    """Write one rendered track in the Slakh2100 layout."""
    (track_dir / "stems").mkdir(parents=True, exist_ok=True)
    (track_dir / "MIDI").mkdir(exist_ok=True)
    rate = config.sample_rate
    all_src = pretty_midi.PrettyMIDI(initial_tempo=r.song.tempo)
    stems_meta = {}
    for i, (part, audio) in enumerate(zip(r.song.parts, r.stems, strict=True)):
        sid = f"S{i:02d}"
        inst = pretty_midi.Instrument(program=part.program, is_drum=part.is_drum,
                                      name=program_name(part.program, part.is_drum))
        inst.notes = sorted(part.notes, key=lambda n: (n.start, n.pitch))
        one = pretty_midi.PrettyMIDI(initial_tempo=r.song.tempo)
        one.instruments.append(inst)
        one.write(str(track_dir / "MIDI" / f"{sid}.mid"))
        all_src.instruments.append(inst)
        sf.write(track_dir / "stems" / f"{sid}.flac", audio, rate, subtype=config.subtype)
        stems_meta[sid] = {
            "audio_rendered": True,
            "inst_class": family_of(part.program, part.is_drum),
            "is_drum": part.is_drum,
            "midi_program_name": program_name(part.program, part.is_drum),
            "midi_saved": True,
            "plugin_name": soundfont,
            "program_num": part.program,
            "stem_class": part.stem_class,
            "style": part.style,
            "clipped_before_gain": i in r.clipped,
        }
    all_src.write(str(track_dir / "all_src.mid"))
    sf.write(track_dir / "mix.flac", r.mix, rate, subtype=config.subtype)
    meta = {
        "UUID": track_uuid,
        "audio_dir": "stems",
        "midi_dir": "MIDI",
        "normalized": False,
        "overall_gain": round(float(r.gain), 6),
        "target_peak": config.target_peak_db,
        "sample_rate": rate,
        "seconds": config.seconds,
        "synth": r.song.describe(),
        "stems": stems_meta,
    }
    with open(track_dir / "metadata.yaml", "w") as f:
        yaml.safe_dump(meta, f, sort_keys=True)


def render_track(job: tuple[Path, int, int, SynthConfig]) -> dict:
    """Compose and render track number `index` of a data set; the worker function of the pool.

    The song depends only on (seed, index), never on the worker or the order of work.
    """
    track_dir, seed, index, config = job
    sf_path = find_soundfont(config.soundfont)
    rng = np.random.default_rng([seed, index])
    track_uuid = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)), version=4))
    song = None
    if rng.random() < config.arrangement.music21_fraction:
        pieces = music21_pieces()
        path = pieces[int(rng.integers(len(pieces)))]
        try:
            song = arrange_music21(rng, config.seconds, config.arrangement, path)
        except (ValueError, IndexError, AttributeError):  # a piece we cannot arrange: compose instead
            song = None
    if song is None:
        song = compose_song(rng, config.seconds, config.arrangement)
    # One synthesizer per track, shared by its stems: FluidSynth keeps state that
    # `system_reset` does not clear (a stem rendered after another track differs in its last
    # bits), and loading a soundfont takes only ~0.06 s once it is in the page cache.
    renderer = StemRenderer(sf_path, config.render_rate)
    try:
        rendered = render_song(song, renderer, config, rng)
    finally:
        renderer.close()
    write_track(track_dir, rendered, config, sf_path.name, track_uuid)
    return {"track": track_dir.name, "stems": len(rendered.stems), "clipped": len(rendered.clipped),
            "stem_seconds": len(rendered.stems) * config.seconds}


def split_of(i: int, n: int) -> str:
    """Automatic split of track i of n: 80 % train, 10 % validation, 10 % test (test at least 1)."""
    n_test = max(1, n // 10) if n >= 3 else 0
    n_val = max(1, n // 10) if n >= 3 else 0
    if i >= n - n_test:
        return "test"
    if i >= n - n_test - n_val:
        return "validation"
    return "train"


def render_dataset(out: str | Path, tracks: int, seed: int, config: SynthConfig, split: str = "auto",
                   start_index: int = 1, workers: int | None = None, progress: bool = True) -> dict:
    """Render `tracks` tracks into `out/<split>/TrackNNNNN/` with a process pool.

    Args:
        split: "auto" spreads tracks over train / validation / test (80/10/10); a split name
            puts them all there.
        start_index: number of the first track (so several calls can fill one data set).
    Returns: counts of tracks, stems, stem-seconds, clipped stems and wall seconds.
    """
    if tracks < 1:
        raise ValueError(f"--tracks must be at least 1, got {tracks}")
    if split != "auto" and split not in SPLITS:
        raise ValueError(f"split must be 'auto' or one of {SPLITS}, got {split!r}")
    find_soundfont(config.soundfont)  # fail before starting workers
    out = Path(out)
    jobs = []
    for i in range(tracks):
        index = start_index + i
        name = split if split != "auto" else split_of(i, tracks)
        jobs.append((out / name / f"Track{index:05d}", seed, index, config))
    workers = workers or min(len(jobs), mp.cpu_count())
    t0 = time.perf_counter()
    results = []
    if workers == 1:
        it = map(render_track, jobs)
        results = list(tqdm(it, total=len(jobs), desc="rendering", unit="track", disable=not progress))
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            it = pool.imap(render_track, jobs)
            results = list(tqdm(it, total=len(jobs), desc="rendering", unit="track", disable=not progress))
    wall = time.perf_counter() - t0
    stats = {
        "tracks": len(results),
        "stems": sum(r["stems"] for r in results),
        "stem_seconds": sum(r["stem_seconds"] for r in results),
        "clipped_stems": sum(r["clipped"] for r in results),
        "wall_seconds": wall,
    }
    stats["stem_seconds_per_second"] = stats["stem_seconds"] / max(wall, 1e-9)
    return stats


def write_manifest(root: str | Path) -> Path:
    """Write `root/MANIFEST.sha256` (`sha256sum -c` format) over every track file under `root`."""
    root = Path(root)
    lines = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "MANIFEST.sha256":
            lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}")
    path = root / "MANIFEST.sha256"
    path.write_text("\n".join(lines) + "\n")
    return path


def check_manifest(root: str | Path, manifest: str | Path | None = None) -> list[str]:
    """Paths whose checksum differs from the manifest (or that are missing); empty when all match."""
    root = Path(root)
    manifest = Path(manifest) if manifest else root / "MANIFEST.sha256"
    if not manifest.is_file():
        raise FileNotFoundError(f"no manifest at {manifest}; render with --preset, or pass --manifest")
    bad = []
    for line in manifest.read_text().splitlines():
        digest, rel = line.split("  ", 1)
        p = root / rel
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            bad.append(rel)
    return bad


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gmsdi.data.synth", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="output folder (Slakh2100 layout)")
    p.add_argument("--tracks", type=int, default=10, help="number of tracks")
    p.add_argument("--seconds", type=float, default=32.0, help="length of each track in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--soundfont", default="fluidr3", help=f"a path or one of {', '.join(SOUNDFONTS)}")
    p.add_argument("--sample-rate", type=int, default=16000, help="output sample rate in Hz (default 16000)")
    p.add_argument("--split", default="auto", help="auto (80/10/10) or train, validation, test")
    p.add_argument("--start-index", type=int, default=1, help="number of the first track")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--music21-fraction", type=float, default=None,
                   help="fraction of tracks arranged from the music21 corpus (default 0.15)")
    p.add_argument("--active-weights", type=float, nargs="+", default=None,
                   help="relative weights of 1, 2, 3, ... instruments playing in a section")
    p.add_argument("--preset", choices=tuple(PRESETS), help="render a named data set (all splits) and its manifest")
    p.add_argument("--check", type=Path, metavar="DIR", help="verify DIR against its MANIFEST.sha256 and exit")
    p.add_argument("--manifest", type=Path, help="with --check: the manifest file (default DIR/MANIFEST.sha256)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        if args.check:
            bad = check_manifest(args.check, args.manifest)
            print("all files match the manifest" if not bad else f"{len(bad)} files differ, e.g. {bad[:5]}")
            return 0 if not bad else 1
        if args.out is None:
            raise ValueError("--out DIR is required")
        arrangement = ArrangementConfig()
        if args.music21_fraction is not None:
            arrangement = replace(arrangement, music21_fraction=args.music21_fraction)
        if args.active_weights is not None:
            arrangement = replace(arrangement, active_weights=tuple(args.active_weights))
        config = SynthConfig(sample_rate=args.sample_rate, seconds=args.seconds, soundfont=args.soundfont,
                             arrangement=arrangement)
        if args.preset:
            preset = PRESETS[args.preset]
            config = replace(config, seconds=preset["seconds"])
            for split, n, start in preset["splits"]:
                stats = render_dataset(args.out, n, preset["seed"], config, split, start, args.workers)
                print(f"{split}: {_summary(stats)}")
            print(f"manifest: {write_manifest(args.out)}")
        else:
            stats = render_dataset(args.out, args.tracks, args.seed, config, args.split, args.start_index,
                                   args.workers)
            print(_summary(stats))
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _summary(s: dict) -> str:
    return (f"{s['tracks']} tracks, {s['stems']} stems, {s['stem_seconds']:.0f} stem-seconds in "
            f"{s['wall_seconds']:.1f} s ({s['stem_seconds_per_second']:.0f} stem-seconds per second), "
            f"{s['clipped_stems']} stems would have clipped without the track gain")


if __name__ == "__main__":
    sys.exit(main())
