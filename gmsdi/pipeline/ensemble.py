"""The ensemble of METHOD.md §3.3 over a `GMSDIPipeline`: per stem, the separator or the extractor."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gmsdi.audio import AudioSource
from gmsdi.data.prompts import compose
from gmsdi.inference import ensemble as ensemble_mod
from gmsdi.inference.guidance import default_negative_prompts
from gmsdi.pipeline import inputs
from gmsdi.pipeline.guided import GMSDIPipeline, _db
from gmsdi.pipeline.result import Result
from gmsdi.sampling.samplers import Callback


def run_ensemble(pipe: GMSDIPipeline, mix: AudioSource, prompts: str | Sequence[str], *,
                 results: str | os.PathLike[str] | None = None, sample_rate: int | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 callback: Callback | None = None, **settings: Any) -> Result:
    """`GMSDIPipeline.ensemble`: per stem, the separator's or the extractor's estimate.

    The choice comes from `results` (default `assets/ensemble.json`, written by the
    evaluation; format in `gmsdi.inference.ensemble`), or, until that exists, from the
    paper's ensemble. The separator runs once for all stems if any stem uses it; the
    extractor runs once per stem that uses it, with the other prompts as its rest prompt.
    The stems need not sum exactly to the mix. A stem's guidance weight serves both methods.
    Arguments otherwise as `separate`.
    """
    prompts = inputs.check_prompts(prompts, minimum=2)
    inputs.check_count(len(prompts))
    choices, source = ensemble_mod.load_choices(results)
    stale = ensemble_mod.stale_choice(results, pipe.checkpoint_sha256)
    methods = ensemble_mod.choose(prompts, choices)
    s = pipe._settings(pipe.separation_defaults, settings)
    y, gain = pipe._mix_input(mix, sample_rate)
    gen, seed = pipe._generator(seed, generator)
    weights = s.weights(len(prompts))
    use_sep = "separator" in methods
    extract_idx = [i for i, m in enumerate(methods) if m == "extractor"]
    if use_sep:  # check every part before any runs, so a refusal costs no work
        pipe._check_dirac(s, len(prompts))
    if extract_idx:
        pipe._check_dirac(s, 2)
    parts = int(use_sep) + len(extract_idx)
    t0 = time.perf_counter()
    stems: list[np.ndarray | None] = [None] * len(prompts)
    calls = samples = part = 0
    if use_sep:
        guided = pipe._guided(prompts, default_negative_prompts(prompts, s.negative_exclude), weights, s)
        sep, _ = pipe._separate(guided, y * gain, prompts, len(prompts) - 1, s, gen, callback, "ensemble",
                                part, parts)
        for i, m in enumerate(methods):
            if m == "separator":
                stems[i] = sep[i]
        calls, samples, part = calls + guided.calls, samples + guided.samples, part + 1
    for i in extract_idx:
        chains, negatives = pipe._extract_prompts(prompts[i], compose([p for j, p in enumerate(prompts) if j != i]))
        guided = pipe._guided(chains, negatives, [weights[i]] * 2, s)
        ext, _ = pipe._separate(guided, y * gain, chains, 1, s, gen, callback, "ensemble", part, parts)
        stems[i] = ext[0]
        calls, samples, part = calls + guided.calls, samples + guided.samples, part + 1
    record = pipe._record("ensemble", s, seed, prompts=prompts, methods=dict(zip(prompts, methods, strict=True)),
                          choices_from=source, guidance=weights, input_gain_db=_db(gain),
                          seconds=len(y) / pipe.sample_rate, network_calls=calls, network_samples=samples,
                          wall_seconds=round(time.perf_counter() - t0, 3))
    if stale:
        record["warnings"] = [stale]
    return pipe._result({n: a / gain for n, a in zip(inputs.unique_names(prompts), stems, strict=True)}, y, record)


__all__ = ["run_ensemble"]
