"""Instrument classes: General MIDI families, Slakh2100 `inst_class` names and our stem classes.

Slakh2100 labels every stem with the General MIDI family of its program (`inst_class` in
`metadata.yaml`: "Bass", "Guitar", "Strings (continued)", ...). We group those families into
*stem classes*, the names that prompts and the evaluation use: bass, drums, guitar, piano, and
every other family by its own name in snake case (strings, brass, organ, synth_lead, ...).
"""

from __future__ import annotations

import re

import pretty_midi

# General MIDI families, as Slakh2100 spells them, indexed by program // 8.
GM_FAMILIES: tuple[str, ...] = (
    "Piano",
    "Chromatic Percussion",
    "Organ",
    "Guitar",
    "Bass",
    "Strings",
    "Strings (continued)",
    "Brass",
    "Reed",
    "Pipe",
    "Synth Lead",
    "Synth Pad",
    "Synth Effects",
    "Ethnic",
    "Percussive",
    "Sound Effects",
)
DRUMS_FAMILY = "Drums"

# Slakh families that share one stem class; every other family maps to its snake-case name.
_FAMILY_TO_STEM: dict[str, str] = {
    "Strings (continued)": "strings",
    "Sound effects": "sound_effects",
}

# The four stems of the paper's separation table, in its column order.
PAPER_STEMS: tuple[str, ...] = ("bass", "drums", "guitar", "piano")

# Stem classes the synthesizer composes parts for, with the GM programs (0-based) each may
# draw. Drum "programs" are kit numbers of the GM percussion bank (bank 128).
SYNTH_PROGRAMS: dict[str, tuple[int, ...]] = {
    "bass": (32, 33, 34, 35, 36, 37, 38, 39),
    "drums": (0, 8, 16, 24, 25, 32, 40),
    "guitar": (24, 25, 26, 27, 28, 29, 30),
    "piano": (0, 1, 2, 3, 4, 5),
    "strings": (40, 41, 42, 48, 49, 50),
    "brass": (56, 57, 58, 60, 61, 62),
    "organ": (16, 17, 18, 19),
    "synth_lead": (80, 81, 82, 84, 87),
    "reed": (64, 65, 66, 68, 71),
}
SYNTH_CLASSES: tuple[str, ...] = tuple(SYNTH_PROGRAMS)

_DRUM_KIT_NAMES = {
    0: "Standard Kit",
    8: "Room Kit",
    16: "Power Kit",
    24: "Electronic Kit",
    25: "TR-808 Kit",
    32: "Jazz Kit",
    40: "Brush Kit",
}

# Short descriptive names per stem class, used by prompts at the middle granularity.
CLASS_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "bass": ("bass", "bass guitar", "electric bass", "bass line"),
    "drums": ("drums", "drum kit", "percussion", "drum beat"),
    "guitar": ("guitar", "electric guitar", "acoustic guitar", "guitar chords"),
    "piano": ("piano", "keys", "keyboard", "grand piano"),
    "strings": ("strings", "string section", "string ensemble", "violins"),
    "brass": ("brass", "brass section", "horns", "trumpets"),
    "organ": ("organ", "electric organ", "church organ", "hammond organ"),
    "synth_lead": ("synth lead", "lead synth", "synthesizer melody", "synth"),
    "reed": ("saxophone", "reed", "woodwinds", "sax"),
}


def snake(name: str) -> str:
    """`"Synth Lead"` -> `"synth_lead"`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def family_of(program: int, is_drum: bool) -> str:
    """The Slakh `inst_class` of a General MIDI program (0-127)."""
    if is_drum:
        return DRUMS_FAMILY
    if not 0 <= program <= 127:
        raise ValueError(f"MIDI program must be in 0..127, got {program}")
    return GM_FAMILIES[program // 8]


def stem_class(inst_class: str) -> str:
    """Our stem class for a Slakh `inst_class` ("Strings (continued)" -> "strings")."""
    return _FAMILY_TO_STEM.get(inst_class, snake(inst_class))


def program_name(program: int, is_drum: bool) -> str:
    """The General MIDI name of a program, or of a drum kit when `is_drum`."""
    if is_drum:
        return _DRUM_KIT_NAMES.get(program, "Drum Kit")
    return pretty_midi.program_to_instrument_name(program)


def check_synth_class(name: str) -> str:
    """Return `name` if the synthesizer knows it, else raise a `ValueError` listing the valid ones."""
    if name not in SYNTH_PROGRAMS:
        raise ValueError(
            f"unknown instrument class {name!r}; the synthesizer knows: {', '.join(SYNTH_CLASSES)}"
        )
    return name
