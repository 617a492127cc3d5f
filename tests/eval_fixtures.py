"""A tiny Slakh-format set with all four paper stems playing throughout, built in code (no FluidSynth).

Every track has a bass (low harmonic tone), drums (decaying noise bursts), a guitar (plucked
sawtooth-like tone) and a piano (decaying bell-like tone), each with its own MIDI so that activity
(from MIDI) marks all four active. Distinct spectra make the ideal ratio mask near perfect, and
four active stems keep every evaluation window (at most one active stem would skip it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from slakh_fixtures import write_midi

SR = 16000
STEMS = {  # id -> (inst_class, program, is_drum, fundamental Hz)
    "S00": ("Bass", 33, False, 55.0),
    "S01": ("Drums", 0, True, 0.0),
    "S02": ("Guitar", 27, False, 330.0),
    "S03": ("Piano", 0, False, 880.0),
}


def _stem(kind: str, f0: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    beat = (t % 0.5) / 0.5  # position in a 0.5 s beat
    if kind == "Drums":
        return (0.3 * rng.standard_normal(n) * np.exp(-beat * 12)).astype(np.float32)
    harmonics = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5))
    decay = {"Bass": 1.0, "Guitar": np.exp(-beat * 4), "Piano": np.exp(-beat * 6)}[kind]
    return (0.15 * harmonics * decay).astype(np.float32)


def make_four_stem_set(root: Path, splits: tuple[str, ...] = ("validation", "test"), tracks: int = 1,
                       seconds: float = 10.0, seed: int = 0) -> Path:
    """Writes `tracks` tracks per split under `root` and returns `root`."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    number = 1
    for split in splits:
        for _ in range(tracks):
            folder = root / split / f"Track{number:05d}"
            number += 1
            (folder / "stems").mkdir(parents=True)
            (folder / "MIDI").mkdir()
            mix = np.zeros(n, dtype=np.float32)
            meta = {}
            for sid, (inst, program, drum, f0) in STEMS.items():
                audio = _stem(inst, f0, n, rng)
                mix += audio
                sf.write(folder / "stems" / f"{sid}.flac", audio, SR, subtype="PCM_24")
                notes = [(0.5 * k, 0.5 * k + 0.45) for k in range(int(seconds * 2))]
                write_midi(folder / "MIDI" / f"{sid}.mid", program, drum, notes)
                meta[sid] = {"audio_rendered": True, "inst_class": inst, "is_drum": drum, "program_num": program,
                             "midi_program_name": "Standard Kit" if drum else inst, "plugin_name": "test.sf2"}
            sf.write(folder / "mix.flac", mix, SR, subtype="PCM_24")
            (folder / "metadata.yaml").write_text(yaml.safe_dump({"audio_dir": "stems", "midi_dir": "MIDI",
                                                                  "stems": meta}, sort_keys=False))
    return root
