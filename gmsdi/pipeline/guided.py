"""`GMSDIPipeline`: prompts -> a guided denoiser, run by the engine for the four tasks (METHOD.md §3)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gmsdi.audio import AudioSource
from gmsdi.data.prompts import compose
from gmsdi.fileio import REPO_ROOT
from gmsdi.inference.constraints import check_coupling
from gmsdi.inference.guidance import GuidedDenoiser
from gmsdi.inference.tasks import generate_sources
from gmsdi.pipeline import inputs
from gmsdi.pipeline.engine import BasePipeline
from gmsdi.pipeline.result import Result
from gmsdi.pipeline.settings import GENERATION, SEPARATION, Settings
from gmsdi.sampling.samplers import Callback
from gmsdi.text.embedding import PromptEncoder

BUNDLED_CHECKPOINT = REPO_ROOT / "assets" / "gmsdi-synthslakh.safetensors"


def _db(gain: float) -> float:
    return round(20 * math.log10(gain), 3)


class GMSDIPipeline(BasePipeline):
    """Generation, accompaniment, separation and extraction with one text-conditioned mixture model.

    Every task takes its sampling settings as keywords (the fields of `Settings`: steps, sampler,
    s_churn, resamples, guidance, ...); those left out take `generation_defaults` (`GENERATION`:
    generate, accompany) or `separation_defaults` (`SEPARATION`: separate, extract, ensemble).
    `seed` makes a result reproducible (None draws one; it is recorded), `generator` replaces it,
    and `callback` is called after each step (`gmsdi.sampling.samplers` contract plus "task",
    "chunk", "chunks", "chains"; "progress" is overall); returning True cancels
    (`gmsdi.sampling.Cancelled`).

    Args:
        model: the EDM denoiser (`gmsdi.models.EDMDenoiser`, or anything with the same call and a
            `model_config`, such as `gmsdi.inference.GaussianDenoiser`).
        text_encoder: the prompt encoder the model was trained with.
        device, mixed_precision: see `BasePipeline`.
    """

    generation_defaults: Settings = GENERATION  # generate, accompany
    separation_defaults: Settings = SEPARATION  # separate, extract, ensemble

    def __init__(self, model: nn.Module, text_encoder: PromptEncoder, device: torch.device | str | None = None,
                 mixed_precision: bool | None = None) -> None:
        super().__init__(model, device, mixed_precision)
        self.text_encoder = text_encoder.to(self.device) if isinstance(text_encoder, nn.Module) else text_encoder
        self._prompt_check: Any = None
        if text_encoder.dim != self.config.text_dim:
            raise ValueError(f"the text encoder gives {text_encoder.dim}-d embeddings but the model expects "
                             f"{self.config.text_dim}-d; use the encoder the model was trained with")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: torch.device | str | None = None,
                        text_encoder: PromptEncoder | None = None,
                        mixed_precision: bool | None = None) -> GMSDIPipeline:
        """Loads a checkpoint (None = the bundled `assets/gmsdi-synthslakh.safetensors`).

        Raises:
            FileNotFoundError: no checkpoint there (the message says how to train and export one).
        """
        from gmsdi.models.checkpoint import load_model
        from gmsdi.text.registry import build_text_encoder

        if path is None:
            path = BUNDLED_CHECKPOINT
            if not path.is_file():
                raise FileNotFoundError(
                    f"the bundled model {path.relative_to(REPO_ROOT)} is missing; train and export it with "
                    "`python train/train.py --config train/configs/bands.yaml` and then "
                    "`python train/train.py --config train/configs/bands.yaml --export "
                    "assets/gmsdi-synthslakh.safetensors`, or pass the path of another checkpoint")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {str(path)!r}; pass the path of a .safetensors file "
                                    "written by `train.py --export`")
        model = load_model(path)
        encoder = text_encoder if text_encoder is not None else build_text_encoder(model.model_config.text_encoder)
        pipe = cls(model, encoder, device=device, mixed_precision=mixed_precision)
        pipe._set_checkpoint(path)
        return pipe

    # -- the provider ----------------------------------------------------------------------------
    def prompt_warnings(self, prompts: Sequence[str]) -> list[str]:
        """Sentences for prompt parts far from every instrument the model was trained on
        (`gmsdi.text.vocabulary.PromptCheck`); [] when all are known."""
        from gmsdi.text.vocabulary import PromptCheck

        if self._prompt_check is None:
            self._prompt_check = PromptCheck(self.text_encoder)
        return self._prompt_check.warnings(prompts)

    def _result(self, stems: dict[str, np.ndarray], mix: np.ndarray, settings: dict[str, Any],
                chain: np.ndarray | None = None) -> Result:
        prompts = [*settings.get("prompts", []), settings.get("rest_prompt") or ""]
        settings["warnings"] = [*settings.get("warnings", []), *self.prompt_warnings(prompts)]
        return Result(stems, mix.astype(np.float32), self.sample_rate, settings, mixture_chain=chain)

    def _guided(self, prompts: list[str], negatives: list[str], weights: list[float], s: Settings,
                evaluate: list[bool] | None = None) -> GuidedDenoiser:
        return GuidedDenoiser.from_prompts(self.model, self.text_encoder, prompts, negatives, weights, evaluate,
                                           self.autocast_dtype, device=self.device,
                                           sigma_min=s.guidance_sigma_min, sigma_max=s.guidance_sigma_max)

    # -- generation and accompaniment ----------------------------------------------------------
    def _multisource(self, prompts: list[str], negatives: list[str], weights: list[float], locked: np.ndarray | None,
                     length: int, s: Settings, generator: torch.Generator, callback: Callback | None,
                     task: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Eq. (2) over K = L locked + G generated stems and the mixture chain, window by window.

        locked: [L, T] at model level or None. Returns the stems [K, T], the mixture chain [T]
        and run details. Stack layout: [locked..., generated..., mix].
        """
        k = len(prompts)
        n_locked = 0 if locked is None else locked.shape[0]
        mix_prompt = compose(prompts)
        evaluate = [False] * n_locked + [True] * (k - n_locked + 1)  # locked stems need no network call
        guided = self._guided(prompts + [mix_prompt], negatives + [""], weights + [s.mix_guidance], s, evaluate)
        g_auto = math.sqrt(k - n_locked + 1)  # c = G/g² + 1/g² = 1 (MixtureCoupling)
        relative = s.gamma_mode in ("relative", "denoised", "wiener")
        gamma_x = s.gamma_x if s.gamma_x is not None else (g_auto if relative else None)
        gamma_y = s.gamma_y if s.gamma_y is not None else (g_auto if relative else None)
        if gamma_x is None or gamma_y is None:
            raise ValueError("with gamma_mode='absolute' give gamma_x and gamma_y (waveform units, e.g. 0.5)")
        sigmas = self._sigmas(s)
        check_coupling(sigmas, gamma_x, gamma_y, s.gamma_mode, k - n_locked, s.sampler, s.s_churn, s_tmin=s.s_tmin)

        def sample(w: int, known: torch.Tensor | None, mask: torch.Tensor | None, cb: Callback | None) -> torch.Tensor:
            return generate_sources(guided, k, w, sigmas, gamma_x=gamma_x, gamma_y=gamma_y, gamma_mode=s.gamma_mode,
                                    coupling_sigma_min=s.coupling_sigma_min, known=known, mask=mask,
                                    locked_noise=s.locked_noise, sampler=s.sampler, s_churn=s.s_churn,
                                    s_tmin=s.s_tmin, resamples=s.resamples, callback=cb, generator=generator,
                                    device=self.device)

        fixed = {} if locked is None else dict(enumerate(locked))
        out, chunks = self._continue(sample, k + 1, fixed, length, s, callback, task, prompts + ["mix"])
        details = {"gamma_x": gamma_x, "gamma_y": gamma_y, "mix_prompt": mix_prompt, "chunks": chunks,
                   **self._counts(guided)}
        return out[:k], out[k], details

    def generate(self, prompts: str | Sequence[str], negative_prompts: Sequence[str | None] | None = None, *,
                 seconds: float = 4.0, seed: int | None = None, generator: torch.Generator | None = None,
                 callback: Callback | None = None, **settings: Any) -> Result:
        """Generates K coherent stems and their mix (Eq. 2, METHOD.md §3.1).

        Args:
            prompts: one prompt per stem, e.g. ["bass", "drums", "piano"] (at most `MAX_STEMS`).
            negative_prompts: one per stem; None (or a None entry) = the other stems' prompts
                joined (less those `Settings.negative_exclude` names); "" = the null prompt.
            seconds: length; longer than the model window continues window by window.
            seed, generator, callback, settings: see the class docstring (defaults `GENERATION`).

        Returns:
            `Result` with one stem per prompt, mix = Σ stems, and the mixture chain.
        """
        prompts = inputs.check_prompts(prompts)
        inputs.check_count(len(prompts))
        s = self._settings(self.generation_defaults, settings)
        length = self._samples(seconds)
        weights = s.weights(len(prompts))
        negatives = inputs.negatives(prompts, negative_prompts, exclude=s.negative_exclude)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        stems, chain, details = self._multisource(prompts, negatives, weights, None, length, s, gen, callback,
                                                  "generate")
        record = self._record("generate", s, seed, prompts=prompts, negative_prompts=negatives, guidance=weights,
                              seconds=length / self.sample_rate, **details,
                              wall_seconds=round(time.perf_counter() - t0, 3))
        return self._result(dict(zip(inputs.unique_names(prompts), stems, strict=True)), stems.sum(axis=0), record,
                            chain)

    def accompany(self, locked: Mapping[str, AudioSource], prompts: str | Sequence[str],
                  negative_prompts: Sequence[str | None] | None = None, *, sample_rate: int | None = None,
                  seed: int | None = None, generator: torch.Generator | None = None,
                  callback: Callback | None = None, **settings: Any) -> Result:
        """Generates stems that fit the locked ones (METHOD.md §3.2).

        Args:
            locked: prompt -> audio of each stem to keep (path, array, or (array, rate)). They
                enter every step at the current noise level and come back unchanged. Stems of
                different lengths are zero-padded to the longest, which sets the output length.
            prompts: the stems to generate.
            negative_prompts: one per generated stem (None = the other stems' prompts, locked ones
                included).
            sample_rate: the rate of array inputs in Hz (None = the model's).
            seed, generator, callback, settings: see the class docstring (defaults `GENERATION`).

        Returns:
            `Result`: the locked stems (unchanged), then the generated ones; mix = their sum.
        """
        if not isinstance(locked, Mapping) or not locked:
            raise ValueError("accompany needs at least one locked stem: locked={'bass': 'bass.wav'}")
        locked_prompts = inputs.check_prompts(list(locked), "locked")
        prompts = inputs.check_prompts(prompts)
        inputs.check_count(len(locked_prompts) + len(prompts))
        s = self._settings(self.generation_defaults, settings)
        stems_in = [self._load(src, sample_rate, f"locked stem {name!r}") for name, src in locked.items()]
        length = max(len(a) for a in stems_in)
        locked_arr = np.zeros((len(stems_in), length), dtype=np.float32)
        for i, a in enumerate(stems_in):
            locked_arr[i, : len(a)] = a
        all_prompts = locked_prompts + prompts
        n_locked = len(locked_prompts)
        gain = self._locked_gain(locked_arr.sum(axis=0), n_locked, len(all_prompts))
        weights = s.weights(len(prompts))
        negatives = inputs.negatives(all_prompts, negative_prompts, n_fixed=n_locked,
                                     exclude=s.negative_exclude)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        stems, chain, details = self._multisource(all_prompts, negatives, [1.0] * n_locked + weights,
                                                  locked_arr * gain, length, s, gen, callback, "accompany")
        generated = stems[n_locked:] / gain
        record = self._record("accompany", s, seed, locked=locked_prompts, prompts=prompts,
                              negative_prompts=negatives[n_locked:], guidance=weights, input_gain_db=_db(gain),
                              seconds=length / self.sample_rate, **details,
                              wall_seconds=round(time.perf_counter() - t0, 3))
        out = dict(zip(inputs.unique_names(all_prompts), [*locked_arr, *generated], strict=True))
        return self._result(out, locked_arr.sum(axis=0) + generated.sum(axis=0), record, chain / gain)

    # -- separation and extraction --------------------------------------------------------------
    def separate(self, mix: AudioSource, prompts: str | Sequence[str],
                 negative_prompts: Sequence[str | None] | None = None, *, sample_rate: int | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 callback: Callback | None = None, **settings: Any) -> Result:
        """Separates a mix into the named stems with the Dirac separator (METHOD.md §3.3).

        Args:
            mix: the mixture (path, array or (array, rate)); stereo is downmixed.
            prompts: the K ≥ 2 stems it contains, e.g. ["bass", "drums", "guitar", "piano"].
            negative_prompts: one per stem; None = the other stems' prompts.
            sample_rate: the rate of an array `mix` in Hz (None = the model's).
            seed, generator, callback, settings: see the class docstring (defaults `SEPARATION`);
                `constrained` and `dirac` choose the separator's form.

        Returns:
            `Result`: one stem per prompt, summing exactly (to float rounding) to `mix`, which is
            the input downmixed and resampled to the model's rate.
        """
        prompts = inputs.check_prompts(prompts, minimum=2)
        inputs.check_count(len(prompts))
        s = self._settings(self.separation_defaults, settings)
        c = inputs.constrained_index(s.constrained, prompts)
        y, gain = self._mix_input(mix, sample_rate)
        weights = s.weights(len(prompts))
        negatives = inputs.negatives(prompts, negative_prompts, exclude=s.negative_exclude)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        guided = self._guided(prompts, negatives, weights, s)
        out, chunks = self._separate(guided, y * gain, prompts, c, s, gen, callback, "separate")
        record = self._record("separate", s, seed, prompts=prompts, negative_prompts=negatives, guidance=weights,
                              constrained=prompts[c] if s.dirac == "constrained" else None, input_gain_db=_db(gain),
                              seconds=len(y) / self.sample_rate, chunks=chunks, **self._counts(guided),
                              wall_seconds=round(time.perf_counter() - t0, 3))
        return self._result(dict(zip(inputs.unique_names(prompts), out / gain, strict=True)), y, record)

    @staticmethod
    def _extract_prompts(prompt: str, rest_prompt: str | None) -> tuple[list[str], list[str]]:
        if rest_prompt is None or not rest_prompt.strip():
            return [prompt, ""], ["", prompt]  # "the rest" as the negative of the target: D(p) + w(D("") − D(p))
        rest = rest_prompt.strip()
        return [prompt, rest], [rest, prompt]

    def extract(self, mix: AudioSource, prompt: str, rest_prompt: str | None = None, *,
                sample_rate: int | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                callback: Callback | None = None, **settings: Any) -> Result:
        """Extracts one named stem: the Dirac separator with K = 2, the target and "the rest".

        Args:
            mix: the mixture.
            prompt: the stem to extract, e.g. "bass".
            rest_prompt: what else plays ("drums, guitar, piano"). None = "not the target": the
                rest chain is guided away from `prompt` and the target's negative is the null prompt.
            others: as `separate`; `guidance` is one weight for both chains, and the rest is the
                constrained stem.

        Returns:
            `Result` with stems {prompt: target, "rest": mix − target}.
        """
        prompt_list = inputs.check_prompts(prompt, "prompt")
        if len(prompt_list) != 1:
            raise ValueError(f"extract takes one prompt, got {len(prompt_list)}; use separate() for several")
        prompt = prompt_list[0]
        if rest_prompt is not None and not isinstance(rest_prompt, str):
            raise ValueError(f"rest_prompt must be a string or None, got {type(rest_prompt).__name__}")
        s = self._settings(self.separation_defaults, settings)
        y, gain = self._mix_input(mix, sample_rate)
        chains, negatives = self._extract_prompts(prompt, rest_prompt)
        weights = s.weights(1) * 2
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        guided = self._guided(chains, negatives, weights, s)
        out, chunks = self._separate(guided, y * gain, chains, 1, s, gen, callback, "extract")
        record = self._record("extract", s, seed, prompts=[prompt], rest_prompt=chains[1], negative_prompts=negatives,
                              guidance=weights, input_gain_db=_db(gain), seconds=len(y) / self.sample_rate,
                              chunks=chunks, **self._counts(guided), wall_seconds=round(time.perf_counter() - t0, 3))
        return self._result(dict(zip(inputs.unique_names([prompt, "rest"]), out / gain, strict=True)), y, record)

    def ensemble(self, mix: AudioSource, prompts: str | Sequence[str], *,
                 results: str | os.PathLike[str] | None = None, sample_rate: int | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 callback: Callback | None = None, **settings: Any) -> Result:
        """Per stem, the separator's or the extractor's estimate, whichever scored better
        (`gmsdi.pipeline.ensemble.run_ensemble`). Arguments as `separate`; `results` is the choice
        file (default `assets/ensemble.json`)."""
        from gmsdi.pipeline.ensemble import run_ensemble

        return run_ensemble(self, mix, prompts, results=results, sample_rate=sample_rate, seed=seed,
                            generator=generator, callback=callback, **settings)


__all__ = ["BUNDLED_CHECKPOINT", "GMSDIPipeline"]
