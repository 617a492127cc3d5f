"""`MSDMPipeline`: the MSDM baseline (Mariani et al., ICLR 2024) as a provider on the same engine.

One unconditional network whose K channels are K fixed stems (`gmsdi.inference.msdm`): its stack
is the network's input itself, so the engine's loops, levels and records apply unchanged; only the
denoiser differs (`JointDenoiser` instead of the prompts' `GuidedDenoiser`).

    pipe = MSDMPipeline.from_pretrained("assets/msdm-synthslakh.safetensors")
    parts = pipe.separate("mix.wav", seed=0)           # bass, drums, guitar, piano; sum = mix
    song = pipe.generate(seconds=4, seed=0)
    band = pipe.accompany({"bass": "bass.wav"}, seed=0)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gmsdi.audio import AudioSource
from gmsdi.data.classes import PAPER_STEMS
from gmsdi.inference.msdm import JointDenoiser
from gmsdi.inference.tasks import sample_stack
from gmsdi.pipeline import inputs
from gmsdi.pipeline.engine import BasePipeline
from gmsdi.pipeline.guided import _db
from gmsdi.pipeline.result import Result
from gmsdi.pipeline.settings import MSDM_GENERATION, MSDM_SEPARATION, Settings
from gmsdi.sampling.samplers import Callback


class MSDMPipeline(BasePipeline):
    """MSDM's separation, generation and accompaniment; the stems are the model's channels.

    The tasks take the same keywords as `GMSDIPipeline`'s (defaults `MSDM_GENERATION`,
    `MSDM_SEPARATION`: no guidance, the model is unconditional). Where GMSDI takes prompts, MSDM
    takes the stem names optionally, and they must be its channels in order.

    Args:
        model: the EDM denoiser with `model_config.unet.in_channels == len(stems)`.
        stems: the names of the channels, in order (a checkpoint written by `train.py --export`
            stores them).
        device, mixed_precision: see `BasePipeline`.
    """

    generation_defaults: Settings = MSDM_GENERATION  # generate, accompany
    separation_defaults: Settings = MSDM_SEPARATION  # separate

    def __init__(self, model: nn.Module, stems: Sequence[str] = PAPER_STEMS, device: torch.device | str | None = None,
                 mixed_precision: bool | None = None) -> None:
        super().__init__(model, device, mixed_precision)
        self.stems = inputs.check_prompts(list(stems), "stems")
        if self.config.unet.in_channels != len(self.stems):
            raise ValueError(f"the model has {self.config.unet.in_channels} channels but {len(self.stems)} stem names "
                             f"were given ({self.stems}); an MSDM model needs one name per channel")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], device: torch.device | str | None = None,
                        mixed_precision: bool | None = None) -> MSDMPipeline:
        """Loads an MSDM checkpoint (`train.py --config train/configs/msdm.yaml --export ...`); the stem
        names come from its "stems" metadata (default `PAPER_STEMS`)."""
        from gmsdi.models.checkpoint import load_metadata, load_model

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no checkpoint at {str(path)!r}; train and export MSDM with `python train/train.py --config "
                "train/configs/msdm.yaml` and `python train/train.py --config train/configs/msdm.yaml --export "
                "assets/msdm-synthslakh.safetensors`")
        stems = load_metadata(path).get("stems")
        pipe = cls(load_model(path), stems.split(",") if stems else PAPER_STEMS, device=device,
                   mixed_precision=mixed_precision)
        pipe._set_checkpoint(path)
        return pipe

    def check_stems(self, stems: str | Sequence[str] | None) -> None:
        """`stems` (None = all) must be the model's channels, in order."""
        if stems is not None and inputs.check_prompts(stems, "stems") != self.stems:
            raise ValueError(f"the MSDM model's stems are its channels {self.stems}, not {list(stems)}")

    def _joint(self, locked: dict[int, np.ndarray], length: int, s: Settings, generator: torch.Generator,
               callback: Callback | None, task: str) -> tuple[np.ndarray, dict[str, Any]]:
        """All K channels, window by window; `locked` channel -> [T] at model level."""
        denoiser = JointDenoiser(self.model, self.autocast_dtype)
        sigmas = self._sigmas(s)
        k = len(self.stems)

        def sample(w: int, known: torch.Tensor | None, mask: torch.Tensor | None, cb: Callback | None) -> torch.Tensor:
            return sample_stack(denoiser, k, w, sigmas, known=known, mask=mask, locked_noise=s.locked_noise,
                                sampler=s.sampler, s_churn=s.s_churn, s_tmin=s.s_tmin, resamples=s.resamples,
                                callback=cb, generator=generator, device=self.device)

        out, chunks = self._continue(sample, k, locked, length, s, callback, task, self.stems)
        return out, {"model": "msdm", "chunks": chunks, **self._counts(denoiser)}

    def separate(self, mix: AudioSource, stems: str | Sequence[str] | None = None, *,
                 sample_rate: int | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                 callback: Callback | None = None, **settings: Any) -> Result:
        """MSDM's Dirac separator (METHOD.md §3.3 with the joint score): one stem per channel, summing
        exactly to `mix`. Arguments as `GMSDIPipeline.separate`; `stems`, if given, must be the channels."""
        self.check_stems(stems)
        s = self._settings(self.separation_defaults, settings)
        c = inputs.constrained_index(s.constrained, self.stems)
        y, gain = self._mix_input(mix, sample_rate)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        denoiser = JointDenoiser(self.model, self.autocast_dtype)
        out, chunks = self._separate(denoiser, y * gain, self.stems, c, s, gen, callback, "separate")
        record = self._record("separate", s, seed, model="msdm", prompts=self.stems,
                              constrained=self.stems[c] if s.dirac == "constrained" else None,
                              input_gain_db=_db(gain), seconds=len(y) / self.sample_rate, chunks=chunks,
                              **self._counts(denoiser), wall_seconds=round(time.perf_counter() - t0, 3))
        return Result(dict(zip(self.stems, out / gain, strict=True)), y, self.sample_rate, record)

    def generate(self, stems: str | Sequence[str] | None = None, *, seconds: float = 4.0, seed: int | None = None,
                 generator: torch.Generator | None = None, callback: Callback | None = None,
                 **settings: Any) -> Result:
        """All K stems sampled jointly; mix = their sum. Arguments as `GMSDIPipeline.generate`."""
        self.check_stems(stems)
        s = self._settings(self.generation_defaults, settings)
        length = self._samples(seconds)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        out, details = self._joint({}, length, s, gen, callback, "generate")
        record = self._record("generate", s, seed, prompts=self.stems, seconds=length / self.sample_rate, **details,
                              wall_seconds=round(time.perf_counter() - t0, 3))
        return Result(dict(zip(self.stems, out, strict=True)), out.sum(axis=0), self.sample_rate, record)

    def accompany(self, locked: Mapping[str, AudioSource], *, silent: Sequence[str] = (),
                  sample_rate: int | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                  callback: Callback | None = None, **settings: Any) -> Result:
        """MSDM's partial generation: the channels named in `locked` are given, the others generated.

        Args:
            locked: stem name (one of `stems`) -> audio; they come back unchanged.
            silent: stems known to be absent: locked to silence (a channel of the joint model
                cannot simply be left out, as a GMSDI prompt can).
            others: as `GMSDIPipeline.accompany`.

        Returns:
            `Result` with all K stems in channel order; mix = their sum.
        """
        if not isinstance(locked, Mapping) or not locked:
            raise ValueError(f"accompany needs at least one locked stem, e.g. {{'{self.stems[0]}': 'stem.wav'}}")
        silent = list(silent)
        unknown = [name for name in [*locked, *silent] if name not in self.stems]
        if unknown:
            raise ValueError(f"locked stems {unknown} are not channels of this model; valid names are {self.stems}")
        if set(locked) & set(silent):
            raise ValueError(f"stems {sorted(set(locked) & set(silent))} are both locked and silent")
        if len(locked) + len(silent) >= len(self.stems):
            raise ValueError("every stem is locked; leave at least one to generate")
        s = self._settings(self.generation_defaults, settings)
        arrays = {self.stems.index(n): self._load(src, sample_rate, f"locked stem {n!r}") for n, src in locked.items()}
        length = max(len(a) for a in arrays.values())
        total = np.zeros(length, dtype=np.float32)
        for a in arrays.values():
            total[: len(a)] += a
        gain = self._locked_gain(total, len(arrays), len(self.stems))
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        zeros = {self.stems.index(n): np.zeros(length, dtype=np.float32) for n in silent}
        out, details = self._joint({**{i: a * gain for i, a in arrays.items()}, **zeros}, length, s, gen, callback,
                                   "accompany")
        out = out / gain
        for i, a in [*arrays.items(), *zeros.items()]:  # exactly the input, not the round trip through the gain
            out[i] = 0.0
            out[i, : len(a)] = a
        record = self._record("accompany", s, seed, prompts=self.stems, locked=[self.stems[i] for i in sorted(arrays)],
                              silent=silent, input_gain_db=_db(gain), seconds=length / self.sample_rate, **details,
                              wall_seconds=round(time.perf_counter() - t0, 3))
        return Result(dict(zip(self.stems, out, strict=True)), out.sum(axis=0), self.sample_rate, record)


__all__ = ["MSDMPipeline"]
