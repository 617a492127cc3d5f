"""Algorithmic composition for SynthSlakh: a song plan (key, tempo, sections, chords, arrangement)
and one part per instrument, as `pretty_midi` notes.

A song is a sequence of sections (intro, verse, chorus, breakdown, outro). Each section has a
chord progression and an *active set*: the instruments that play in it. The size of the active
set is drawn from `ArrangementConfig.active_weights`, which is what controls how many crops are
solo, duo, ... passages (the model learns what one instrument is from those; see the README).
Every random choice comes from the `numpy.random.Generator` passed in, so a seed gives a song.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pretty_midi

from gmsdi.data.classes import SYNTH_CLASSES, SYNTH_PROGRAMS, check_synth_class

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Progressions as 0-based scale degrees, one chord per bar.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 0, 4), (3, 4, 2, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 5, 4), (0, 2, 6, 3), (3, 4, 0, 0)),
}
SECTION_NAMES = ("intro", "verse", "chorus", "breakdown", "verse", "chorus", "outro")

# GM percussion keys.
KICK, RIM, SNARE, CLAP, CLOSED_HAT, OPEN_HAT, RIDE, CRASH = 36, 37, 38, 39, 42, 46, 51, 49
TOMS = (50, 48, 47, 45, 43)
# 16-step patterns per drum style: kick, snare, hat (1 = hit).
DRUM_STYLES: dict[str, tuple[str, str, str]] = {
    "rock": ("1000000010100000", "0000100000001000", "1010101010101010"),
    "funk": ("1000001000100100", "0000100101001000", "1111111111111111"),
    "disco": ("1000100010001000", "0000100000001000", "0010001000100010"),
    "halftime": ("1000000000100000", "0000000010000000", "1010101010101010"),
    "hiphop": ("1000000101000000", "0000100000001000", "1010101010101010"),
    "ballad": ("1000000000000000", "0000000010000000", "1000100010001000"),
    "shuffle": ("1000001010000010", "0000100000001000", "1001101110011011"),
}


@dataclass
class ArrangementConfig:
    """How instruments are chosen and arranged.

    Attributes:
        min_instruments / max_instruments: how many instruments a song has (drawn uniformly).
        active_weights: relative probability that a section has 1, 2, 3, ... instruments playing.
        class_weights: relative probability of each stem class being in a song.
        section_bars: section lengths (bars) to draw from.
        music21_fraction: fraction of songs arranged from the music21 corpus instead of composed.
    """

    min_instruments: int = 3
    max_instruments: int = 6
    active_weights: tuple[float, ...] = (0.34, 0.3, 0.18, 0.11, 0.07)
    class_weights: dict[str, float] = field(
        default_factory=lambda: {
            "bass": 3.0, "drums": 3.0, "guitar": 2.5, "piano": 2.5, "strings": 1.0,
            "brass": 0.8, "organ": 0.8, "synth_lead": 0.8, "reed": 0.8,
        }
    )
    section_bars: tuple[int, ...] = (2, 4, 4, 8)
    music21_fraction: float = 0.15

    def __post_init__(self) -> None:
        for name in self.class_weights:
            check_synth_class(name)
        if not 1 <= self.min_instruments <= self.max_instruments:
            raise ValueError("need 1 <= min_instruments <= max_instruments")
        if not self.active_weights or min(self.active_weights) < 0 or sum(self.active_weights) <= 0:
            raise ValueError("active_weights must be non-negative with a positive sum")
        if not 0.0 <= self.music21_fraction <= 1.0:
            raise ValueError("music21_fraction must be in [0, 1]")


@dataclass
class Part:
    """One instrument of a song: its class, General MIDI program and notes (seconds)."""

    stem_class: str
    program: int
    is_drum: bool
    style: str
    notes: list[pretty_midi.Note] = field(default_factory=list)


@dataclass
class Section:
    name: str
    start: float  # seconds
    bars: int
    chords: list[tuple[int, tuple[int, ...]]]  # per bar: (root pitch class, chord intervals)
    active: list[int]  # indices into Song.parts


@dataclass
class Song:
    tempo: float
    key: int
    mode: str
    beats_per_bar: int
    sections: list[Section]
    parts: list[Part]
    source: str  # "composed" or "music21:<corpus path>"

    @property
    def beat(self) -> float:
        return 60.0 / self.tempo

    def describe(self) -> dict:
        """A YAML-friendly summary for metadata.yaml."""
        names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
        return {
            "source": self.source,
            "tempo_bpm": round(float(self.tempo), 2),
            "key": f"{names[self.key]} {self.mode}",
            "beats_per_bar": self.beats_per_bar,
            "sections": [
                {"name": s.name, "start": round(float(s.start), 3), "bars": s.bars,
                 "active": [self.parts[i].stem_class for i in s.active]}
                for s in self.sections
            ],
        }


def diatonic_chord(degree: int, mode: str, key: int, sevenths: bool) -> tuple[int, tuple[int, ...]]:
    """Root pitch class and intervals of the diatonic triad (or seventh) on a scale degree."""
    scale = SCALES[mode]
    steps = (0, 2, 4, 6) if sevenths else (0, 2, 4)
    pcs = [scale[(degree + s) % 7] + 12 * ((degree + s) // 7) for s in steps]
    root = pcs[0]
    return (key + root) % 12, tuple(p - root for p in pcs)


def _humanize(notes: list[pretty_midi.Note], rng: np.random.Generator, timing: float, vel: float) -> None:
    for n in notes:
        shift = float(rng.normal(0.0, timing))
        dur = n.end - n.start
        n.start = max(0.0, n.start + shift)
        n.end = n.start + max(dur, 0.03)
        n.velocity = int(np.clip(n.velocity + rng.normal(0.0, vel), 1, 127))


def _note(pitch: int, start: float, end: float, velocity: float) -> pretty_midi.Note:
    return pretty_midi.Note(velocity=int(np.clip(velocity, 1, 127)), pitch=int(pitch), start=start, end=end)


def _place(pc: int, low: int) -> int:
    """The lowest pitch with pitch class `pc` at or above `low`."""
    return low + (pc - low) % 12


def _voicing(root: int, intervals: tuple[int, ...], low: int, n: int) -> list[int]:
    """`n` chord tones stacked upwards from the chord root placed at or above `low`."""
    base = _place(root, low)
    tones = [base + i for i in intervals]
    while len(tones) < n:
        tones.append(tones[len(tones) - len(intervals)] + 12)
    return tones[:n]


# ---- part generators: (song, section, bar index, bar start, rng, style) -> notes ------------

PartFn = Callable[[Song, Section, int, float, np.random.Generator, str], list[pretty_midi.Note]]


def _bass(song: Song, sec: Section, b: int, t0: float, rng: np.random.Generator, style: str):
    root, iv = sec.chords[b]
    r = _place(root, 28)
    fifth = r + 7
    beat, bpb = song.beat, song.beats_per_bar
    vel = rng.integers(80, 110)
    if style == "whole":
        return [_note(r, t0, t0 + bpb * beat * 0.95, vel)]
    if style == "quarters":
        return [_note(r if i % 2 == 0 or rng.random() < 0.6 else fifth, t0 + i * beat, t0 + (i + 0.85) * beat, vel)
                for i in range(bpb)]
    if style == "eighths":
        return [_note(r + (12 if i == 2 * bpb - 1 and rng.random() < 0.3 else 0), t0 + i * beat / 2,
                      t0 + (i + 0.8) * beat / 2, vel - 10 * (i % 2)) for i in range(2 * bpb)]
    if style == "walking":
        nxt = sec.chords[(b + 1) % len(sec.chords)][0]
        tones = [r, r + iv[1], r + iv[2], _place(nxt, r - 6) + (1 if rng.random() < 0.5 else -1)]
        return [_note(tones[i % 4], t0 + i * beat, t0 + (i + 0.9) * beat, vel) for i in range(bpb)]
    # syncopated: a 16th-note rhythm over root, fifth and octave.
    pattern = "1001001010010010" if bpb == 4 else "100100101001"
    out = []
    for i, hit in enumerate(pattern):
        if hit == "1":
            p = [r, r, fifth, r + 12][rng.integers(4)]
            out.append(_note(p, t0 + i * beat / 4, t0 + (i + 1.6) * beat / 4, vel))
    return out


def _drums(song: Song, sec: Section, b: int, t0: float, rng: np.random.Generator, style: str):
    kick, snare, hat = DRUM_STYLES[style]
    steps = 4 * song.beats_per_bar
    dt = song.beat / 4
    ride = style == "ballad" or rng.random() < 0.05
    out = []
    last_bar = b == sec.bars - 1 and sec.bars > 1
    fill_from = steps - 4 * int(rng.integers(1, 3)) if last_bar else steps
    for i in range(steps):
        t = t0 + i * dt
        j = i % 16
        if i >= fill_from:  # a fill: snare and toms on 16ths, rising in velocity
            if rng.random() < 0.8:
                pitch = SNARE if rng.random() < 0.4 else TOMS[min(len(TOMS) - 1, (i - fill_from) // 2)]
                out.append(_note(pitch, t, t + dt, 70 + 40 * (i - fill_from) / max(1, steps - fill_from)))
            continue
        if kick[j] == "1":
            out.append(_note(KICK, t, t + dt, 100 + rng.integers(-8, 8)))
        if snare[j] == "1":
            out.append(_note(CLAP if style == "hiphop" and rng.random() < 0.3 else SNARE, t, t + dt, 100))
        if hat[j] == "1":
            pitch = RIDE if ride else (OPEN_HAT if style == "disco" or rng.random() < 0.04 else CLOSED_HAT)
            out.append(_note(pitch, t, t + dt, 90 if j % 4 == 0 else 65))
    if b == 0:
        out.append(_note(CRASH, t0, t0 + 4 * dt, 105))
    return out


def _guitar(song: Song, sec: Section, b: int, t0: float, rng: np.random.Generator, style: str):
    root, iv = sec.chords[b]
    beat, bpb = song.beat, song.beats_per_bar
    out = []
    if style == "strum":
        shape = _voicing(root, iv[:3], 40, 5)
        pattern = ("10111011", "11011101", "10101010", "10011010")[rng.integers(4)][: 2 * bpb]
        for i, hit in enumerate(pattern):
            if hit != "1":
                continue
            down = i % 2 == 0
            strings = shape if down else shape[::-1][:3]
            for k, p in enumerate(strings):
                t = t0 + i * beat / 2 + k * 0.012
                out.append(_note(p, t, t0 + (i + 1) * beat / 2, 85 if down else 65))
    elif style == "arpeggio":
        tones = _voicing(root, iv[:3], 45, 4)
        order = [0, 1, 2, 3, 2, 1, 2, 3]
        for i in range(2 * bpb):
            t = t0 + i * beat / 2
            out.append(_note(tones[order[i % 8]], t, t + beat * 0.9, 75))
    else:  # riff: palm-muted power chords, or a short melodic figure
        r = _place(root, 40)
        if rng.random() < 0.5:
            for i in range(2 * bpb):
                t = t0 + i * beat / 2
                if rng.random() < 0.85:
                    for p in (r, r + 7, r + 12):
                        out.append(_note(p, t, t + beat * 0.4, 95))
        else:
            out = _melody_bar(song, sec, b, t0, rng, low=52, density=0.7, legato=0.7)
    return out


def _piano(song: Song, sec: Section, b: int, t0: float, rng: np.random.Generator, style: str):
    root, iv = sec.chords[b]
    beat, bpb = song.beat, song.beats_per_bar
    left = _place(root, 36)
    out = [_note(left, t0, t0 + bpb * beat * 0.95, 70)]
    chord = _voicing(root, iv, 55 + int(rng.integers(0, 5)), 4 if len(iv) > 3 else 3)
    if style == "block":
        half = bpb * beat / 2
        for k in range(2):
            out += [_note(p, t0 + k * half, t0 + (k + 1) * half * 0.98, 72) for p in chord]
    elif style == "comp":
        for i, hit in enumerate("10010010"[: 2 * bpb] if bpb == 4 else "100100"):
            if hit == "1":
                t = t0 + i * beat / 2
                out += [_note(p, t, t + beat * 0.7, 78) for p in chord]
    else:  # melody in the right hand over half-note chords
        out += [_note(p, t0, t0 + bpb * beat * 0.9, 55) for p in chord[:3]]
        out += _melody_bar(song, sec, b, t0, rng, low=67, density=0.8, legato=0.9)
    return out


def _pad(song: Song, sec: Section, b: int, t0: float, rng: np.random.Generator, style: str):
    """Strings, organ and brass: sustained voicings, pulses or stabs."""
    root, iv = sec.chords[b]
    beat, bpb = song.beat, song.beats_per_bar
    chord = _voicing(root, iv, 53, 4)
    if style == "sustain":
        return [_note(p, t0, t0 + bpb * beat, 70) for p in chord]
    if style == "pulse":
        return [_note(p, t0 + i * beat, t0 + (i + 0.8) * beat, 70 + 10 * (i == 0))
                for i in range(bpb) for p in chord]
    hits = "10010010" if bpb == 4 else "100100"
    return [_note(p, t0 + i * beat / 2, t0 + i * beat / 2 + beat * 0.3, 95)
            for i, h in enumerate(hits) if h == "1" and rng.random() < 0.9 for p in chord[:3]]


def _melody_bar(song: Song, sec: Section, b: int, t0: float, rng: np.random.Generator, low: int,
                density: float = 0.75, legato: float = 0.9) -> list[pretty_midi.Note]:
    """A bar of melody: a random walk on the scale that lands on chord tones on strong beats."""
    scale = [(song.key + s) % 12 for s in SCALES[song.mode]]
    pitches = sorted(p for p in range(low, low + 19) if p % 12 in scale)
    root, iv = sec.chords[b]
    chord_pcs = {(root + i) % 12 for i in iv}
    beat, bpb = song.beat, song.beats_per_bar
    out, idx = [], int(rng.integers(len(pitches) // 3, 2 * len(pitches) // 3))
    t, end = t0, t0 + bpb * beat
    while t < end - 1e-6:
        dur = beat * float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
        dur = min(dur, end - t)
        idx = int(np.clip(idx + rng.choice([-2, -1, -1, 1, 1, 2, 0]), 0, len(pitches) - 1))
        on_beat = abs(((t - t0) / beat) - round((t - t0) / beat)) < 1e-6
        if on_beat and pitches[idx] % 12 not in chord_pcs:
            near = [k for k in range(len(pitches)) if pitches[k] % 12 in chord_pcs]
            idx = min(near, key=lambda k: abs(k - idx))
        if rng.random() < density:
            out.append(_note(pitches[idx], t, t + dur * legato, 85))
        t += dur
    return out


def _lead(song: Song, sec: Section, b: int, t0: float, rng: np.random.Generator, style: str):
    low = 62 if style == "high" else 55
    return _melody_bar(song, sec, b, t0, rng, low=low)


PARTS: dict[str, tuple[PartFn, tuple[str, ...]]] = {
    "bass": (_bass, ("whole", "quarters", "eighths", "walking", "syncopated")),
    "drums": (_drums, tuple(DRUM_STYLES)),
    "guitar": (_guitar, ("strum", "arpeggio", "riff")),
    "piano": (_piano, ("comp", "block", "melody")),
    "strings": (_pad, ("sustain", "sustain", "pulse")),
    "brass": (_pad, ("stabs", "sustain")),
    "organ": (_pad, ("sustain", "pulse")),
    "synth_lead": (_lead, ("high", "low")),
    "reed": (_lead, ("low",)),
}
assert set(PARTS) == set(SYNTH_CLASSES)
HUMANIZE = {"drums": (0.004, 6.0)}  # (timing std seconds, velocity std); others use the default
DEFAULT_HUMANIZE = (0.008, 8.0)


def choose_instruments(rng: np.random.Generator, config: ArrangementConfig,
                       classes: tuple[str, ...] | None = None) -> list[str]:
    """Draw the stem classes of a song (distinct), weighted by `config.class_weights`."""
    pool = [c for c in (classes or SYNTH_CLASSES) if config.class_weights.get(c, 0.0) > 0]
    n = int(rng.integers(config.min_instruments, config.max_instruments + 1))
    n = min(n, len(pool))
    w = np.array([config.class_weights[c] for c in pool], dtype=float)
    picked = rng.choice(len(pool), size=n, replace=False, p=w / w.sum())
    return [pool[i] for i in sorted(picked)]


def choose_active(rng: np.random.Generator, config: ArrangementConfig, n_parts: int, name: str) -> list[int]:
    """Which parts play in a section: its size follows `config.active_weights`."""
    w = np.array(config.active_weights[:n_parts], dtype=float)
    if name in ("intro", "outro", "breakdown"):  # sparser, as in real arrangements
        w = w * np.linspace(1.5, 0.5, len(w))
    k = int(rng.choice(len(w), p=w / w.sum())) + 1
    return sorted(int(i) for i in rng.choice(n_parts, size=k, replace=False))


def plan_sections(rng: np.random.Generator, config: ArrangementConfig, song: Song, seconds: float) -> None:
    """Fill `song.sections` with sections until `seconds` are covered."""
    bar = song.beat * song.beats_per_bar
    t, i = 0.0, 0
    progressions = PROGRESSIONS[song.mode]
    by_name: dict[str, tuple] = {}
    while t < seconds:
        name = SECTION_NAMES[i % len(SECTION_NAMES)] if i < len(SECTION_NAMES) else str(
            rng.choice(["verse", "chorus", "breakdown"]))
        if name not in by_name:  # a repeated section keeps its progression, like a song form
            by_name[name] = progressions[rng.integers(len(progressions))]
        prog = by_name[name]
        bars = int(rng.choice(config.section_bars))
        sevenths = rng.random() < 0.3
        chords = [diatonic_chord(prog[k % len(prog)], song.mode, song.key, sevenths) for k in range(bars)]
        active = choose_active(rng, config, len(song.parts), name)
        song.sections.append(Section(name, t, bars, chords, active))
        t += bars * bar
        i += 1


def compose_song(rng: np.random.Generator, seconds: float, config: ArrangementConfig,
                 classes: tuple[str, ...] | None = None) -> Song:
    """Compose a song of at least `seconds`: plan, sections, and every part's notes."""
    mode = "major" if rng.random() < 0.55 else "minor"
    song = Song(tempo=float(rng.uniform(70, 170)), key=int(rng.integers(12)), mode=mode,
                beats_per_bar=4 if rng.random() < 0.9 else 3, sections=[], parts=[], source="composed")
    for cls in choose_instruments(rng, config, classes):
        programs = SYNTH_PROGRAMS[cls]
        fn, styles = PARTS[cls]
        style = str(rng.choice(styles))
        if cls == "drums" and style == "shuffle" and song.beats_per_bar == 3:
            style = "ballad"
        song.parts.append(Part(cls, int(rng.choice(programs)), cls == "drums", style))
    plan_sections(rng, config, song, seconds)
    bar = song.beat * song.beats_per_bar
    for sec in song.sections:
        for i in sec.active:
            part = song.parts[i]
            fn, styles = PARTS[part.stem_class]
            style = part.style if rng.random() < 0.75 else str(rng.choice(styles))
            for b in range(sec.bars):
                part.notes += fn(song, sec, b, sec.start + b * bar, rng, style)
    for part in song.parts:
        _humanize(part.notes, rng, *HUMANIZE.get(part.stem_class, DEFAULT_HUMANIZE))
    trim(song, seconds)
    return song


def trim(song: Song, seconds: float) -> None:
    """Drop notes that start after `seconds`, shorten those that end after it, and drop parts
    left without notes (re-indexing the sections' active sets)."""
    for part in song.parts:
        part.notes = [n for n in part.notes if n.start < seconds - 0.05]
        for n in part.notes:
            n.end = min(n.end, seconds)
    keep = [i for i, p in enumerate(song.parts) if p.notes]
    new_index = {old: new for new, old in enumerate(keep)}
    song.parts = [song.parts[i] for i in keep]
    song.sections = [s for s in song.sections if s.start < seconds]
    for sec in song.sections:
        sec.active = [new_index[i] for i in sec.active if i in new_index]


# ---- music21 corpus ------------------------------------------------------------------------

MUSIC21_COMPOSERS = ("bach", "palestrina")
# Classes a voice of a corpus piece may be played by (the lowest voice becomes the bass).
_VOICE_CLASSES = ("piano", "guitar", "strings", "brass", "organ", "synth_lead", "reed")


def music21_pieces() -> list[str]:
    """Paths of the corpus pieces we arrange (polyphonic vocal works that ship with music21)."""
    from music21 import corpus

    paths: list[str] = []
    for composer in MUSIC21_COMPOSERS:
        paths += [str(p) for p in corpus.getComposer(composer)]
    return sorted(p for p in paths if p.endswith((".mxl", ".xml", ".krn", ".musicxml")))


def _corpus_name(path: str) -> str:
    """A corpus path relative to music21's corpus folder (the same on every machine)."""
    marker = "/corpus/"
    return path.split(marker, 1)[1] if marker in path else path


def arrange_music21(rng: np.random.Generator, seconds: float, config: ArrangementConfig,
                    path: str) -> Song:
    """Arrange a corpus piece: voices -> instruments, the lowest voice -> bass, drums added.

    The piece is looped to cover `seconds`; sections of 2-8 bars switch voices on and off with
    the same arrangement statistics as composed songs.
    """
    from music21 import converter

    score = converter.parse(path)
    parts = [p.stripTies() for p in score.parts]
    if len(parts) < 2:
        raise ValueError(f"{path} has fewer than two parts")
    ts = parts[0].recurse().getElementsByClass("TimeSignature")
    bar_q = float(ts[0].barDuration.quarterLength) if len(ts) else 4.0
    key = score.analyze("key")
    tempo = float(rng.uniform(70, 130))
    song = Song(tempo=tempo, key=int(key.tonic.pitchClass), mode="minor" if key.mode == "minor" else "major",
                beats_per_bar=max(2, int(round(bar_q))), sections=[], parts=[], source=f"music21:{_corpus_name(path)}")
    voices = parts[:5]
    classes = list(rng.choice(_VOICE_CLASSES, size=len(voices) - 1, replace=True))
    for cls in classes:
        song.parts.append(Part(str(cls), int(rng.choice(SYNTH_PROGRAMS[cls])), False, "music21"))
    song.parts.append(Part("bass", int(rng.choice(SYNTH_PROGRAMS["bass"])), False, "music21"))
    drum_style = str(rng.choice(["ballad", "halftime", "rock", "shuffle"]))
    song.parts.append(Part("drums", int(rng.choice(SYNTH_PROGRAMS["drums"])), True, drum_style))
    plan_sections(rng, config, song, seconds)
    beat = song.beat
    events = []  # per voice: (start q, end q, pitch)
    length_q = 0.0
    for v in voices:
        ev = []
        for n in v.flatten().notes:
            for p in n.pitches:
                ev.append((float(n.offset), float(n.offset + n.quarterLength), int(p.midi)))
        events.append(ev)
        length_q = max(length_q, max((e[1] for e in ev), default=0.0))
    if length_q <= 0:
        raise ValueError(f"{path} has no notes")
    length_q = bar_q * np.ceil(length_q / bar_q)
    bar_s = bar_q * beat
    for sec in song.sections:
        t_start, t_end = sec.start, sec.start + sec.bars * bar_s
        for i in sec.active:
            part = song.parts[i]
            if part.is_drum:
                for b in range(sec.bars):
                    part.notes += _drums(song, sec, b, t_start + b * bar_s, rng, drum_style)
                continue
            voice = events[i] if i < len(voices) - 1 else events[len(voices) - 1]
            shift = -12 if part.stem_class == "bass" else 0
            loops = int(np.ceil(t_end / (length_q * beat))) + 1
            for loop in range(loops):
                for s, e, p in voice:
                    ts_, te_ = (s + loop * length_q) * beat, (e + loop * length_q) * beat
                    if t_start <= ts_ < t_end:
                        part.notes.append(_note(p + shift, ts_, min(te_, t_end), 80))
    for part in song.parts:
        _humanize(part.notes, rng, *HUMANIZE.get(part.stem_class, DEFAULT_HUMANIZE))
    trim(song, seconds)
    return song
