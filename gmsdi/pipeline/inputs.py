"""Checks and names for a task's prompts: the stems asked for, their negatives and the constrained stem."""

from __future__ import annotations

from collections.abc import Sequence

from gmsdi.inference.guidance import default_negative_prompts
from gmsdi.pipeline import settings as limits


def check_prompts(prompts: str | Sequence[str], what: str = "prompts", minimum: int = 1) -> list[str]:
    """The prompts as a list of stripped, non-empty strings (one string = one prompt)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if prompts is None or len(prompts) == 0:
        raise ValueError(f"no prompt given: name at least one instrument, e.g. {what}=['bass', 'drums']")
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"{what} must be strings; item {i + 1} is a {type(p).__name__}")
        if not p.strip():
            raise ValueError(f"{what}: item {i + 1} is empty; name an instrument such as 'piano'")
        out.append(p.strip())
    if len(out) < minimum:
        raise ValueError(f"{what}: this task needs at least {minimum} prompts, got {len(out)}")
    return out


def check_count(n: int) -> None:
    """At most `MAX_STEMS` stems per task."""
    if n > limits.MAX_STEMS:
        raise ValueError(f"{n} stems requested, more than the limit of {limits.MAX_STEMS}; ask for fewer stems")


def unique_names(names: Sequence[str]) -> list[str]:
    """Stem names for a Result: the prompts, with repeats numbered ("piano", "piano (2)")."""
    out: list[str] = []
    for name in names:
        cand, i = name, 2
        while cand in out:
            cand, i = f"{name} ({i})", i + 1
        out.append(cand)
    return out


def negatives(prompts: list[str], negative_prompts: Sequence[str | None] | None, n_fixed: int = 0,
              exclude: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Negative prompt per stem: the user's where given (None entries = default), else ⊗ of the others.

    The first `n_fixed` stems (locked ones) take no user negatives; `negative_prompts` lists one
    entry per remaining stem. `exclude`: see `default_negative_prompts` (`Settings.negative_exclude`).
    """
    out = default_negative_prompts(prompts, exclude)
    if negative_prompts is None:
        return out
    if isinstance(negative_prompts, str):
        negative_prompts = [negative_prompts]
    n = len(prompts) - n_fixed
    if len(negative_prompts) != n:
        raise ValueError(f"negative_prompts needs one entry per prompt ({n}; None = the default), "
                         f"got {len(negative_prompts)}")
    for i, neg in enumerate(negative_prompts):
        if neg is not None:
            if not isinstance(neg, str):
                raise ValueError(f"negative prompts must be strings or None, got {type(neg).__name__}")
            out[n_fixed + i] = neg.strip()
    return out


def constrained_index(constrained: int | str | None, prompts: list[str]) -> int:
    """The index of the Dirac separator's constrained stem (name or index; None = the last)."""
    if constrained is None:
        return len(prompts) - 1
    if isinstance(constrained, str):
        if constrained not in prompts:
            raise ValueError(f"constrained={constrained!r} is not one of the prompts {prompts}")
        return prompts.index(constrained)
    if isinstance(constrained, bool) or not isinstance(constrained, int) or not 0 <= constrained < len(prompts):
        raise ValueError(f"constrained must be a prompt or an index in 0..{len(prompts) - 1}, got {constrained!r}")
    return constrained
