"""Tiny Slakh2100-format folders built in code, for the loader tests.

Every stem's audio is a constant level (per channel), so sums and resampling are easy to check,
and its MIDI notes are chosen independently of the audio, so tests can tell that activity comes
from MIDI only.

`make_slakh(root)` writes::

    train/Track00001   16 kHz mono, 6 s
        S00 Bass  (33, Electric Bass (finger))  notes 0-2 s      audio 0.1, 6 s
        S01 Drums (0, Standard Kit)             hits 3.0-4.75 s  audio 0.2, 5 s (shorter than mix)
        S02 Piano (0)  audio_rendered: false    notes 0-6 s      no audio file
        S03 Bass  (38, Synth Bass 1)            notes 3-5 s      audio 0.05, 7 s (longer than mix)
    train/Track00002   44.1 kHz stereo, 3 s
        S00 Guitar (27)                 notes 0-3 s  audio L 0.3 / R 0.1 (mono 0.2)
        S01 Strings (continued) (48)    notes 0-3 s  audio L 0.15 / R 0.05 (mono 0.1)
    validation/Track00003   16 kHz mono, 2 s
        S00 Piano (0)  notes 0-2 s  audio 0.1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf
import yaml


@dataclass
class StemSpec:
    """One stem: its metadata, MIDI notes (start, end) in seconds and constant audio level."""

    inst_class: str
    program: int
    notes: list[tuple[float, float]]
    level: float
    audio_seconds: float
    is_drum: bool = False
    rendered: bool = True


def _signal(level: float, seconds: float, sample_rate: int, channels: int) -> np.ndarray:
    """Constant audio `[T, C]` whose channel mean is `level` (left louder than right)."""
    n = int(round(seconds * sample_rate))
    if channels == 1:
        return np.full((n, 1), level, dtype=np.float32)
    gains = np.linspace(1.5, 0.5, channels, dtype=np.float32)
    return np.full((n, channels), level, dtype=np.float32) * gains


def write_midi(path: Path, program: int, is_drum: bool, notes: list[tuple[float, float]]) -> None:
    """A one-instrument MIDI file with the given note intervals (s)."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
    pitch = 36 if is_drum else 48
    inst.notes = [pretty_midi.Note(velocity=100, pitch=pitch, start=s, end=e) for s, e in notes]
    midi.instruments.append(inst)
    midi.write(str(path))


def write_track(
    folder: Path,
    stems: dict[str, StemSpec],
    mix_seconds: float,
    sample_rate: int = 16000,
    channels: int = 1,
) -> Path:
    """Write one Slakh-format track folder; the mix is the sum of the rendered stems."""
    (folder / "stems").mkdir(parents=True)
    (folder / "MIDI").mkdir()
    n_mix = int(round(mix_seconds * sample_rate))
    mix = np.zeros((n_mix, channels), dtype=np.float32)
    meta_stems = {}
    all_src = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for sid, spec in stems.items():
        write_midi(folder / "MIDI" / f"{sid}.mid", spec.program, spec.is_drum, spec.notes)
        all_src.instruments += pretty_midi.PrettyMIDI(str(folder / "MIDI" / f"{sid}.mid")).instruments
        if spec.rendered:
            audio = _signal(spec.level, spec.audio_seconds, sample_rate, channels)
            sf.write(folder / "stems" / f"{sid}.flac", audio, sample_rate, subtype="PCM_16")
            n = min(n_mix, len(audio))
            mix[:n] += audio[:n]
        name = (
            "Standard Kit" if spec.is_drum else pretty_midi.program_to_instrument_name(spec.program)
        )
        meta_stems[sid] = {
            "audio_rendered": spec.rendered,
            "inst_class": spec.inst_class,
            "integrated_loudness": -20.0,
            "is_drum": spec.is_drum,
            "midi_program_name": name,
            "midi_saved": True,
            "plugin_name": "test.sf2",
            "program_num": spec.program,
        }
    all_src.write(str(folder / "all_src.mid"))
    sf.write(folder / "mix.flac", mix, sample_rate, subtype="PCM_16")
    meta = {
        "UUID": f"uuid-{folder.name}",
        "audio_dir": "stems",
        "midi_dir": "MIDI",
        "normalization_factor": -13.0,
        "normalized": True,
        "overall_gain": 0.5,
        "target_peak": -1.0,
        "stems": meta_stems,
    }
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return folder


def make_slakh(root: Path) -> Path:
    """Write the dataset described in the module docstring under `root` and return `root`."""
    hits = [(3.0 + 0.25 * k, 3.02 + 0.25 * k) for k in range(8)]
    write_track(
        root / "train" / "Track00001",
        {
            "S00": StemSpec("Bass", 33, [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)], 0.1, 6.0),
            "S01": StemSpec("Drums", 0, hits, 0.2, 5.0, is_drum=True),
            "S02": StemSpec("Piano", 0, [(0.0, 6.0)], 0.3, 6.0, rendered=False),
            "S03": StemSpec("Bass", 38, [(3.0, 4.0), (4.0, 5.0)], 0.05, 7.0),
        },
        mix_seconds=6.0,
    )
    write_track(
        root / "train" / "Track00002",
        {
            "S00": StemSpec("Guitar", 27, [(0.0, 1.5), (1.5, 3.0)], 0.2, 3.0),
            "S01": StemSpec("Strings (continued)", 48, [(0.0, 3.0)], 0.1, 3.0),
        },
        mix_seconds=3.0,
        sample_rate=44100,
        channels=2,
    )
    write_track(
        root / "validation" / "Track00003",
        {"S00": StemSpec("Piano", 0, [(0.0, 2.0)], 0.1, 2.0)},
        mix_seconds=2.0,
    )
    return root
