"""Long audio in model-sized windows (STYLE.md principle 6: one chunking path).

- `overlap_add`: independent windows, cross-faded (demucs-style: a triangular weight over each
  window, normalised by the sum of weights). Separation and extraction use it. Weights are
  normalised per sample, so a per-window identity that holds for every window (the separated
  stems sum to the mixture) holds for the whole output too.
- `continuation_spans`: windows for generation and accompaniment, where each window after the
  first starts `overlap` samples before the previous one ends and that overlap is inpainted from
  the previous window's output (it is locked context), so the stems run on continuously.
  `continue_windows` runs a sampler over them.

All lengths are in samples; windows are multiples of the network's `length_multiple`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is ≥ n (and ≥ multiple)."""
    return max(multiple, -(-n // multiple) * multiple)


def window_samples(seconds: float, sample_rate: int, multiple: int) -> int:
    """A window of about `seconds`, rounded down to a multiple of `multiple` samples (at least one)."""
    return max(multiple, int(seconds * sample_rate) // multiple * multiple)


def chunk_starts(length: int, window: int, overlap: int) -> list[int]:
    """Starts of full windows covering `length` samples, spread evenly with at least `overlap` shared.

    A signal no longer than the window gives [0]. The last window ends exactly at `length`.
    """
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window), got overlap={overlap}, window={window}")
    if length <= window:
        return [0]
    n = math.ceil((length - window) / (window - overlap)) + 1
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


def _triangle(window: int, device: torch.device) -> torch.Tensor:
    half = window // 2
    w = torch.cat([torch.arange(1, half + 1), torch.arange(window - half, 0, -1)]).to(device, torch.float32)
    return w / w.max()


def overlap_add(
    fn: Callable[[torch.Tensor], torch.Tensor],
    audio: torch.Tensor,
    window: int,
    overlap: int,
    multiple: int = 1,
) -> torch.Tensor:
    """Applies `fn` to cross-faded windows of `audio` and overlap-adds the results.

    Args:
        fn: maps a window [..., W] to an output [..., *extra, W] (e.g. a mixture [B, W] to its
            stems [B, K, W]); called once per window, in order.
        audio: [..., T] input.
        window: W, the window in samples (a multiple of `multiple`).
        overlap: samples shared by neighbouring windows (at least; they are spread evenly).
        multiple: inputs no longer than a window are zero-padded to a multiple of this.

    Returns:
        [..., *extra, T]: Σ_j w_j(t)·fn(window_j)(t) / Σ_j w_j(t), w_j a triangle over window j.
    """
    if window % multiple:
        raise ValueError(f"window {window} must be a multiple of {multiple}")
    length = audio.shape[-1]
    if length <= window:
        padded = round_up(length, multiple)
        out = fn(F.pad(audio, (0, padded - length)))
        return out[..., :length]
    weight = _triangle(window, audio.device)
    out = total = None
    for start in chunk_starts(length, window, overlap):
        part = fn(audio[..., start:start + window])
        if out is None:
            out = part.new_zeros(*part.shape[:-1], length)
            total = part.new_zeros(length)
        out[..., start:start + window] += part * weight
        total[start:start + window] += weight
    return out / total


def continuation_spans(length: int, window: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """(start, end) windows for continuing generation; each after the first starts `overlap` early.

    Every window is at most `window` samples and a multiple of `multiple`; the last one is only as
    long as it must be, so the final end may pass `length` by less than `multiple` (crop it).
    """
    if window % multiple or overlap % multiple:
        raise ValueError(f"window {window} and overlap {overlap} must be multiples of {multiple}")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window), got overlap={overlap}, window={window}")
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    spans, start = [], 0
    while True:
        end = min(start + window, start + round_up(length - start, multiple))
        spans.append((start, end))
        if end >= length:
            return spans
        start = end - overlap


# (window index, window samples, known [1, N, W] or None, mask [1, N, W] or None) -> [1, N, W]
ContinuationStep = Callable[[int, int, "torch.Tensor | None", "torch.Tensor | None"], torch.Tensor]


def continue_windows(
    sample: ContinuationStep,
    n_rows: int,
    locked: Mapping[int, torch.Tensor],
    length: int,
    window: int,
    overlap: int,
    multiple: int = 1,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, int]:
    """Samples a stack [N, length] window by window (`continuation_spans`), each window continuing the last.

    In each window the locked rows are known values, and so is the overlap of every other row with
    the previous window's output; `sample` inpaints them (`KnownValues`).

    Args:
        sample: runs the sampler on one window; gets None for known and mask when nothing is known.
        n_rows: N.
        locked: row -> [≤ length] known audio (zero-padded); those rows come back equal to it.
        length, window, overlap, multiple: in samples, as `continuation_spans`.

    Returns:
        The stack [N, length] (float32, on `device`), and the number of windows.
    """
    spans = continuation_spans(length, window, overlap, multiple)
    total = spans[-1][1]
    out = torch.zeros(1, n_rows, total, device=device)
    fixed = torch.zeros(1, n_rows, total, device=device)
    for i, a in locked.items():
        fixed[0, i, : len(a)] = a.to(device)
    is_locked = torch.zeros(n_rows, dtype=torch.bool, device=device)
    is_locked[list(locked)] = True
    for j, (a, b) in enumerate(spans):
        w = b - a
        known = torch.where(is_locked[None, :, None], fixed[:, :, a:b], torch.zeros(1, n_rows, w, device=device))
        mask = is_locked[None, :, None].expand(1, n_rows, w).clone()
        if j > 0 and overlap > 0:  # the previous window's tail is context for this one
            known[:, ~is_locked, :overlap] = out[:, ~is_locked, a:a + overlap]
            mask[:, :, :overlap] = True
        any_known = bool(mask.any())
        out[:, :, a:b] = sample(j, w, known if any_known else None, mask if any_known else None)
    return out[0, :, :length].float(), len(spans)
