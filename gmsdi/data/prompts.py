"""Text prompts from instrument tags, and the composition operator ⊗ of METHOD.md §2.

Training prompts name the instruments of a crop at a random granularity ("bass",
"electric bass", or the General MIDI program name), so that at inference a user may write any
of them. `compose` is the one place where per-source prompts become a mixture prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from gmsdi.data.classes import CLASS_DESCRIPTIONS

GRANULARITIES: tuple[str, ...] = ("class", "description", "program")
SEPARATOR = ", "


def program_phrase(midi_program_name: str) -> str:
    """A General MIDI program name as free text: "Electric Bass (finger)" -> "finger electric bass"."""
    name = midi_program_name.strip().lower()
    match = re.fullmatch(r"(.*?)\s*\((.*)\)", name)
    if match:
        name = f"{match.group(2)} {match.group(1)}"
    return re.sub(r"\s+", " ", name).strip()


def class_phrase(stem_class: str) -> str:
    """A stem class as text: "synth_lead" -> "synth lead"."""
    return stem_class.replace("_", " ")


def stem_prompt(
    stem_class: str,
    midi_program_name: str | None,
    rng: np.random.Generator | None = None,
    granularity: str | None = None,
) -> str:
    """One source's prompt.

    Args:
        stem_class: our stem class ("bass", "synth_lead", ...).
        midi_program_name: the stem's General MIDI program name, if known.
        rng: draws the granularity (and the description) when `granularity` is None.
        granularity: "class", "description" or "program"; None draws one uniformly.
    """
    if granularity is None:
        granularity = GRANULARITIES[rng.integers(len(GRANULARITIES))] if rng is not None else "class"
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if granularity == "program" and midi_program_name:
        return program_phrase(midi_program_name)
    if granularity == "description" and stem_class in CLASS_DESCRIPTIONS:
        options = CLASS_DESCRIPTIONS[stem_class]
        return options[rng.integers(len(options))] if rng is not None else options[0]
    return class_phrase(stem_class)


def compose(prompts: Sequence[str], rng: np.random.Generator | None = None) -> str:
    """The composition z_1 ⊗ ... ⊗ z_K of per-source prompts (METHOD.md §2).

    The per-source prompts are joined with ", "; with `rng` their order is shuffled, as in
    training, so the model does not learn an order. Empty prompts are dropped; no prompt at
    all gives "" (the unconditional prompt).
    """
    parts = [p.strip() for p in prompts if p and p.strip()]
    if rng is not None and len(parts) > 1:
        parts = [parts[i] for i in rng.permutation(len(parts))]
    return SEPARATOR.join(parts)


def parts(prompt: str) -> list[str]:
    """The per-source prompts of a composed prompt, the inverse of `compose`: "bass, drums" -> ["bass", "drums"].

    Splits at commas and drops empty parts; "" gives [] (the unconditional prompt).
    """
    return [p.strip() for p in prompt.split(",") if p.strip()]
