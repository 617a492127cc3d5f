"""Prompt sensitivity: does the model's denoising of one instrument depend on naming it?

On isolated stems (one instrument each), the denoising error at a noise level σ is measured under
the stem's own prompt ("bass"), under another instrument's prompt ("piano") and under the null
prompt. The ratio wrong ÷ own is the first sign that a model can stand for one instrument at all,
which every GMSDI task relies on; 1 means the prompt does not matter. Training logs it
on validation stems (`train/train.py`); `python -m gmsdi.eval sensitivity` measures it on the test
split for every model, so models trained differently (tags, no tags, isolated stems) compare on the
same stems, noise and prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmsdi.data.prompts import class_phrase

SIGMAS: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
KINDS: tuple[str, ...] = ("own", "wrong", "null")


@dataclass
class ProbeSet:
    """Isolated stems with their prompts, and fixed noise.

    Attributes:
        stems: [N, 1, T] float audio, one instrument each.
        own, wrong: N prompts: the stem's class and another class present in the split.
        noise: [N, 1, T] standard Gaussian noise (the same for every σ and model).
    """

    stems: torch.Tensor
    own: list[str]
    wrong: list[str]
    noise: torch.Tensor

    def __len__(self) -> int:
        return len(self.stems)


def probe_set(root: str | Path, split: str, n: int, segment: int, sample_rate: int = 16000, seed: int = 5,
              classes: Sequence[str] | None = None, generator: torch.Generator | None = None,
              every_active: bool = False) -> ProbeSet:
    """N isolated stems of `segment` samples from a split, each with a random wrong class.

    Tracks' stems are cut into segments in order; segments are visited in a random order (`seed`)
    and the first active class of each whose peak is at least 0.01 is kept.

    Args:
        root, split: a Slakh-format data set.
        n: how many stems (fewer if the split has fewer).
        segment: T, a length the models accept.
        sample_rate: Hz.
        seed: the order and the wrong prompts (and the noise when `generator` is None).
        classes: the classes used (default all classes of the split).
        generator: draws the noise (default one seeded with `seed`).
        every_active: keep every active class of a segment, not only the first (for `class_spectra`).
    """
    from gmsdi.data import slakh

    if classes is None:
        classes = sorted({c for t in slakh.list_tracks(root, split) for c in t.classes})
    classes = list(classes)
    if len(classes) < 2:
        raise ValueError(f"the prompt-sensitivity probe needs at least two classes, got {classes}")
    crop_s = segment / sample_rate
    stems = slakh.StemsDataset(root, split, classes=classes, sample_rate=sample_rate, crop_seconds=crop_s,
                               hop_seconds=crop_s, seed=0)
    rng = np.random.default_rng(seed)
    xs, own, wrong = [], [], []
    for i in rng.permutation(len(stems)):
        item = stems[int(i)]
        for k in np.flatnonzero(item["active"].numpy()):
            x = item["stems"][k]
            if x.abs().max() < 0.01:
                continue
            others = [c for c in classes if c != classes[k]]
            xs.append(x[None])
            own.append(class_phrase(classes[k]))
            wrong.append(class_phrase(others[int(rng.integers(len(others)))]))
            if not every_active or len(xs) >= n:
                break
        if len(xs) >= n:
            break
    if not xs:
        raise ValueError(f"no active stem found in {root}/{split}")
    x = torch.stack(xs)
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    return ProbeSet(x, own, wrong, torch.randn(x.shape, generator=g))


@torch.no_grad()
def prompt_sensitivity(model: Any, text_encoder: Any, probe: ProbeSet, sigmas: Sequence[float] = SIGMAS,
                       chunk: int = 16, device: torch.device | str | None = None) -> dict[float, dict[str, float]]:
    """Mean denoising MSE on the probe's stems per σ and prompt kind.

    Args:
        model: a denoiser `(x [B, 1, T], sigma [B], cond) -> denoised`.
        text_encoder: its prompt encoder (`encode(prompts) -> TextEmbedding`).
        probe: the stems, prompts and noise.
        sigmas: noise levels.
        chunk: batch size.
        device: where to run (default the model's).

    Returns:
        {σ: {"own": mse, "wrong": mse, "null": mse, "wrong_over_own": ratio, "null_over_own": ratio}}.
    """
    if device is None:
        device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else "cpu"
    conds = {"own": probe.own, "wrong": probe.wrong, "null": [""] * len(probe)}
    conds = {kind: text_encoder.encode(p, device=device) for kind, p in conds.items()}
    out: dict[float, dict[str, float]] = {}
    for s in sigmas:
        row = {}
        for kind, cond in conds.items():
            errs = []
            for i in range(0, len(probe), chunk):
                x = probe.stems[i:i + chunk].to(device)
                x = model.encode(x) if hasattr(model, "encode") else x  # the diffusion variable
                xn = x + s * probe.noise[i:i + chunk].to(device)
                d = model(xn, torch.full((len(x),), s, device=device), cond[i:i + chunk])
                errs.append((d.float() - x).pow(2).flatten(1).mean(1))
            row[kind] = torch.cat(errs).mean().item()
        row["wrong_over_own"] = row["wrong"] / row["own"]
        row["null_over_own"] = row["null"] / row["own"]
        out[float(s)] = row
    return out


def class_spectra(probe: ProbeSet) -> dict[str, torch.Tensor]:
    """Mean power spectrum [T // 2 + 1] per prompt (class phrase) of a probe set's stems, and "" (the
    null prompt) for all stems together: the stationary Gaussian prior of each class."""
    power = torch.fft.rfft(probe.stems[:, 0].double()).abs().square() / probe.stems.shape[-1]
    out = {c: power[[i for i, o in enumerate(probe.own) if o == c]].mean(0) for c in sorted(set(probe.own))}
    out[""] = power.mean(0)
    return out


def wiener_sensitivity(spectra: dict[str, torch.Tensor], probe: ProbeSet,
                       sigmas: Sequence[float] = SIGMAS) -> dict[float, dict[str, float]]:
    """`prompt_sensitivity` of a reference denoiser that knows nothing but each class's mean spectrum:
    the Wiener filter S_c / (S_c + σ²) of the prompt's class c (the exact denoiser if every class were
    a stationary Gaussian). What the prompt is worth to a model that learned only per-class spectra.

    Args:
        spectra: `class_spectra` of *another* probe set (e.g. the training split), with every class
            of `probe`'s own and wrong prompts and "".
        probe: the stems, prompts and noise.

    Returns:
        as `prompt_sensitivity`.
    """
    missing = sorted(set(probe.own + probe.wrong) - set(spectra))
    if missing:
        raise ValueError(f"no spectrum for the prompts {missing}; estimate them on a split that has these classes")
    x = probe.stems[:, 0].double()
    conds = {"own": probe.own, "wrong": probe.wrong, "null": [""] * len(probe)}
    out: dict[float, dict[str, float]] = {}
    for s in sigmas:
        spec = torch.fft.rfft(x + s * probe.noise[:, 0].double())
        row = {}
        for kind, prompts in conds.items():
            prior = torch.stack([spectra[p] for p in prompts])
            d = torch.fft.irfft(prior / (prior + s * s) * spec, n=x.shape[-1])
            row[kind] = (d - x).square().mean().item()
        row["wrong_over_own"] = row["wrong"] / row["own"]
        row["null_over_own"] = row["null"] / row["own"]
        out[float(s)] = row
    return out


__all__ = ["KINDS", "SIGMAS", "ProbeSet", "class_spectra", "probe_set", "prompt_sensitivity", "wiener_sensitivity"]
