"""The ensemble of METHOD.md §3.3: per instrument, the better of the separator and the extractor.

The choice comes from a results file that the evaluation writes, `assets/ensemble.json`:

    {
      "metric": "si_sdri_db",
      "separator": {"bass": 9.76, "drums": 15.57, "guitar": 9.13, "piano": 9.57},
      "extractor": {"bass": 11.00, "drums": 10.55, "guitar": 9.52, "piano": 10.13},
      "choice": {"drums": "separator"}
    }

"separator" / "extractor" hold a score per stem class (higher is better); "choice" (optional)
overrides them per class. A prompt is matched to a stem class by its words ("electric bass" ->
bass, "keys" -> piano; `prompt_class`). Until the file exists, `DEFAULT_CHOICES` applies: the
paper's own ensemble (its Table: separator for drums, extractor for bass, guitar and piano), and
the extractor for every other class or unmatched prompt.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from gmsdi.data.classes import CLASS_DESCRIPTIONS
from gmsdi.data.prompts import class_phrase

METHODS: tuple[str, ...] = ("separator", "extractor")
DEFAULT_METHOD = "extractor"
DEFAULT_CHOICES: dict[str, str] = {"bass": "extractor", "drums": "separator", "guitar": "extractor",
                                   "piano": "extractor"}
ENSEMBLE_PATH = Path(__file__).resolve().parents[2] / "assets" / "ensemble.json"


def prompt_class(prompt: str) -> str | None:
    """The stem class a prompt names, or None: an exact description first, then a class word."""
    text = " ".join(re.findall(r"[a-z0-9]+", prompt.lower()))
    for cls, names in CLASS_DESCRIPTIONS.items():
        if text == class_phrase(cls) or text in names:
            return cls
    words = set(text.split())
    for cls, names in CLASS_DESCRIPTIONS.items():
        for name in (class_phrase(cls), *names):
            if set(name.split()) <= words:
                return cls
    return None


def load_choices(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, str], str]:
    """Stem class -> "separator" | "extractor", and where the choice came from.

    Args:
        path: a results file; None uses `assets/ensemble.json` when it exists, else the defaults.

    Raises:
        FileNotFoundError: an explicit `path` does not exist.
        ValueError: the file is not valid JSON of the documented form.
    """
    source = None
    if path is None:
        if not ENSEMBLE_PATH.is_file():
            return dict(DEFAULT_CHOICES), "default (paper's ensemble; assets/ensemble.json not found)"
        path, source = ENSEMBLE_PATH, "assets/ensemble.json (bundled)"  # not this machine's absolute path
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ensemble results file at {str(path)!r}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, Mapping):
        raise ValueError(f"{str(path)!r} must hold a JSON object with 'separator' and 'extractor' scores")
    choices = dict(DEFAULT_CHOICES)
    sep, ext = data.get("separator", {}), data.get("extractor", {})
    for cls in set(sep) & set(ext):
        choices[cls] = "separator" if float(sep[cls]) > float(ext[cls]) else "extractor"
    for cls, method in dict(data.get("choice", {})).items():
        if method not in METHODS:
            raise ValueError(f"{str(path)!r}: choice for {cls!r} is {method!r}; valid names are {list(METHODS)}")
        choices[cls] = method
    return choices, source or str(path)


def stale_choice(path: str | os.PathLike[str] | None, checkpoint_sha256: str | None) -> str | None:
    """A sentence when the results file was chosen for another checkpoint than `checkpoint_sha256`,
    else None (also when either side does not say which checkpoint: nothing to compare).

    A choice measured on one model says nothing about another's separator and extractor, so the
    pipeline passes this on as a warning with its result.

    Args:
        path: the results file as for `load_choices` (None: `assets/ensemble.json` when it exists).
        checkpoint_sha256: the sha256 of the checkpoint the pipeline runs.
    """
    path = ENSEMBLE_PATH if path is None else Path(path)
    if checkpoint_sha256 is None or not path.is_file():
        return None
    try:
        chosen_for = json.loads(path.read_text()).get("checkpoint_sha256")
    except (json.JSONDecodeError, AttributeError):
        return None  # load_choices has already refused it, with its own message
    if not chosen_for or chosen_for == checkpoint_sha256:
        return None
    return (f"the ensemble's choice of separator or extractor per stem ({path.name}) was measured on checkpoint "
            f"{chosen_for[:12]}, not on this one ({checkpoint_sha256[:12]}); run `python -m gmsdi.eval "
            "ensemble-choice` for this checkpoint, or use the separator or the extractor directly")


def choose(prompts: Sequence[str], choices: Mapping[str, str]) -> list[str]:
    """The method for each prompt: its class's choice, else `DEFAULT_METHOD`."""
    return [choices.get(prompt_class(p) or "", DEFAULT_METHOD) for p in prompts]
