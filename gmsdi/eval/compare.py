"""Paired comparison of two separation records: the same windows and seeds, scored twice.

Two runs of `python -m gmsdi.eval separation` over the same tracks score the same windows with the
same per-chunk seeds (`runner.chunk_seed`). Their per-window SI-SDRi differences cancel what the two
share (how hard a window is), so a change is read against the spread of the differences rather than
against the spread of the windows. On the 12-track gate that spread is about ±0.3 dB for "All"
(train/RUNS.md, sessions 21–22), while the windows themselves spread by tens of dB.

    python -m gmsdi.eval compare benchmarks/results/eval/separation-gmsdi-separator.json \
        benchmarks/results/eval/separation-gmsdi-separator-s128.json
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def _windows(record: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, int, int]], np.ndarray, np.ndarray]:
    """A separation record's stems, its window keys (track, start, end), SI-SDRi [W, K] and active flags
    [W, K] (True: the stem plays in the window), read back with the runner's own readers."""
    from gmsdi.eval.runner import active_from_summary, scores_from_summary

    if record.get("kind") != "separation":
        raise ValueError(f"not a separation record (kind {record.get('kind')!r}); compare the JSON files that "
                         "`python -m gmsdi.eval separation` writes")
    stems = list(record["stems"])
    scores = scores_from_summary(record["results"], stems)
    keys = list(zip(scores.tracks, scores.starts.tolist(), scores.ends.tolist(), strict=True))
    return stems, keys, scores.sisdri, active_from_summary(record["results"], stems)


def paired_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """SI-SDRi of record `b` minus record `a`, window by window, on the windows both scored.

    Returns {"windows": n paired, "only_a" / "only_b": windows in one record alone, "dropped": paired
    windows left out because either score is not finite (a diverged chunk), "mean" / "sem" / "a" / "b":
    {stem: dB, ..., "All": dB}}. "mean" is the mean difference and "sem" its standard error
    (std with ddof 1 ÷ √n); "All" is taken per window as the mean over stems, so its mean equals the
    difference of the records' "All" on these windows. "a" / "b" are each record's means on the paired
    windows. "active" / "active_sem" / "active_windows": the same difference per stem on the paired
    windows where that stem plays (the records' "sisdri_active"), where silent-target windows do not
    weigh in. Raises ValueError when the records name different stems, or share no window.
    """
    stems_a, keys_a, sa, act = _windows(a)
    stems_b, keys_b, sb, _ = _windows(b)
    if stems_a != stems_b:
        raise ValueError(f"the records separate different stems: {stems_a} and {stems_b}")
    row_b = {key: r for r, key in enumerate(keys_b)}
    shared = [(r, row_b[key]) for r, key in enumerate(keys_a) if key in row_b]
    if not shared:
        raise ValueError("the two records share no window: run both over the same --split, --tracks and "
                         "--max-chunks")
    rows_a, rows_b = (list(rows) for rows in zip(*shared, strict=True))
    sa, act, sb = sa[rows_a], act[rows_a], sb[rows_b]  # [W, K], paired row by row
    finite = np.isfinite(sa).all(1) & np.isfinite(sb).all(1)
    sa, sb, act = sa[finite], sb[finite], act[finite]
    n = int(finite.sum())
    if n == 0:
        raise ValueError("no paired window has finite scores in both records")
    diff = sb - sa
    cols = {s: diff[:, k] for k, s in enumerate(stems_a)} | {"All": diff.mean(1)}

    def sem(x: np.ndarray) -> float:
        return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")

    def means(x: np.ndarray) -> dict[str, float]:
        out = {s: float(x[:, k].mean()) for k, s in enumerate(stems_a)}
        return out | {"All": float(np.mean(list(out.values())))}

    active = {s: diff[act[:, k], k] for k, s in enumerate(stems_a)}
    return {"stems": stems_a, "windows": n, "dropped": len(shared) - n,
            "only_a": len(keys_a) - len(shared), "only_b": len(keys_b) - len(shared),
            "mean": {s: float(x.mean()) for s, x in cols.items()}, "sem": {s: sem(x) for s, x in cols.items()},
            "a": means(sa), "b": means(sb),
            "active": {s: float(x.mean()) if len(x) else float("nan") for s, x in active.items()},
            "active_sem": {s: sem(x) for s, x in active.items()},
            "active_windows": {s: len(x) for s, x in active.items()}}


def format_difference(result: Mapping[str, Any], name_a: str, name_b: str) -> str:
    """A Markdown table of `paired_difference`'s result."""
    cols = [*result["stems"], "All"]
    lines = [f"SI-SDRi (dB) on {result['windows']} paired windows"
             + (f" ({result['dropped']} dropped: not finite in one record)" if result["dropped"] else "")
             + (f"; unpaired: {result['only_a']} only in A, {result['only_b']} only in B"
                if result["only_a"] or result["only_b"] else ""),
             "", "| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols),
             f"| A: {name_a} | " + " | ".join(f"{result['a'][c]:.2f}" for c in cols) + " |",
             f"| B: {name_b} | " + " | ".join(f"{result['b'][c]:.2f}" for c in cols) + " |",
             "| B − A | " + " | ".join(f"{result['mean'][c]:+.2f} ± {result['sem'][c]:.2f}" for c in cols) + " |",
             "| B − A, windows where the stem plays | "
             + " | ".join(f"{result['active'][c]:+.2f} ± {result['active_sem'][c]:.2f} "
                          f"({result['active_windows'][c]})" for c in result["stems"]) + " | — |",
             "", "(mean ± standard error of the paired per-window differences; in brackets, the windows)"]
    return "\n".join(lines)


__all__ = ["format_difference", "paired_difference"]
