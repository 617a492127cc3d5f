"""The engine every pipeline runs on: device, settings, σ schedule, windows, seeds and the two window loops.

A pipeline is a denoiser provider on top of it: `GMSDIPipeline` turns prompts into a guided
denoiser, `MSDMPipeline` wraps its joint network. The engine runs either over long audio:

- `_continue`: generation and accompaniment. A stack [N, T] is sampled window by window
  (`continuation_spans`); locked rows and each window's overlap with the previous one are known
  values that the sampler inpaints.
- `_separate`: separation and extraction. A mix [T] is split into K stems by the Dirac separator
  on cross-faded windows (`overlap_add`); silence in the mix stays silent in every stem.

The sampled variable is the model's `encode` of the audio (the waveform, or its pre-emphasis:
`EDMConfig.emphasis`): both loops encode what they are given and `decode` what they return.

Levels. The model was trained on mixtures at their recorded level. An input mix is scaled by one
gain so its peak is `MIX_PEAK`; locked stems are scaled together so their sum peaks at
MIX_PEAK·√(L/K) (L locked of K stems: independent stems add in power). Outputs are divided by the
same gain, so stems keep their true relative loudness and separated stems sum to the input mix.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import gmsdi
from gmsdi import audio as audio_io
from gmsdi.audio import AudioSource
from gmsdi.fileio import REPO_ROOT
from gmsdi.inference.chunking import (
    chunk_starts,
    continuation_spans,
    continue_windows,
    overlap_add,
    window_samples,
)
from gmsdi.inference.constraints import StackDenoiser, keep_silence
from gmsdi.inference.tasks import check_dirac_steps, separate_sources
from gmsdi.pipeline import settings as limits
from gmsdi.pipeline.settings import Settings
from gmsdi.sampling.samplers import Callback, get_sigmas_karras

# (window samples, known [1, N, W] or None, mask [1, N, W] or None, callback) -> [1, N, W]
WindowSampler = Callable[[int, "torch.Tensor | None", "torch.Tensor | None", "Callback | None"], torch.Tensor]


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX-BF16 or AVX-512-BF16; Linux's cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_device(device: torch.device | str | None) -> torch.device:
    """`device`, or the one Accelerate sees (cuda, mps, xpu or cpu)."""
    if device is not None:
        return torch.device(device)
    from accelerate import PartialState

    return PartialState().device


def checkpoint_record(path: str | Path) -> str:
    """A checkpoint as a settings record names it: relative to the repository when inside it."""
    path = Path(path)
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name if path.is_absolute() else path.as_posix()


class DivergedError(ValueError):
    """The sampler's state left the finite numbers: the settings are unstable for this input."""


def _finite(x: torch.Tensor, s: Settings, task: str) -> torch.Tensor:
    """`x`, or a `DivergedError` that says which settings to change when any value is NaN or infinite."""
    if bool(torch.isfinite(x).all()):
        return x
    advice = ("lower the guidance or the churn, raise s_tmin (churn only above that σ, e.g. 0.05) or "
              "guidance_sigma_min, take more steps")
    if task in ("separate", "extract", "ensemble") and s.dirac == "constrained":
        advice += ", or use dirac='projected'"
    raise DivergedError(f"{task}: the sampler diverged to non-finite audio with guidance {s.guidance}, churn "
                        f"{s.s_churn:g} (s_tmin {s.s_tmin:g}), {s.steps} {s.sampler} steps. To fix it, {advice}")


class BasePipeline:
    """What every pipeline over an EDM denoiser shares (the engine).

    Args:
        model: the EDM denoiser, with a `model_config`.
        device: None lets Accelerate choose (cuda, mps or cpu).
        mixed_precision: run the network in bf16 (fp16 where bf16 is unsupported); None = on for
            cuda and for a CPU with bf16 instructions (AMX or AVX-512-BF16), off elsewhere.
    """

    def __init__(self, model: nn.Module, device: torch.device | str | None = None,
                 mixed_precision: bool | None = None) -> None:
        config = getattr(model, "model_config", None)
        if config is None:
            raise ValueError("the model has no model_config; build it with gmsdi.models.build_model or load_model")
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.sample_rate: int = config.sample_rate
        self.length_multiple: int = config.unet.length_multiple
        if mixed_precision is None:
            mixed_precision = self.device.type == "cuda" or (self.device.type == "cpu" and cpu_has_fast_bf16())
        self.autocast_dtype: torch.dtype | None = None
        if mixed_precision:
            bf16 = self.device.type != "cuda" or torch.cuda.is_bf16_supported()
            self.autocast_dtype = torch.bfloat16 if bf16 else torch.float16
        self.checkpoint: str | None = None  # the path it was loaded from; records name it repo-relative
        self.checkpoint_sha256: str | None = None

    def _set_checkpoint(self, path: str | Path) -> None:
        from gmsdi.fileio import file_sha256

        self.checkpoint = str(path)
        self.checkpoint_sha256 = file_sha256(path)

    # -- settings ------------------------------------------------------------------------------
    def _settings(self, base: Settings, overrides: dict[str, Any]) -> Settings:
        """`base` with the overrides (checked by `Settings`), and the model-dependent σ range checked."""
        s = base.replace(**overrides)
        lo, hi = self._sigma_range(s)
        if not 0 < lo < hi:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {lo}, {hi}")
        return s

    def _sigma_range(self, s: Settings) -> tuple[float, float]:
        edm = self.config.edm
        return (s.sigma_min if s.sigma_min is not None else edm.sigma_min,
                s.sigma_max if s.sigma_max is not None else edm.sigma_max)

    def _sigmas(self, s: Settings) -> torch.Tensor:
        lo, hi = self._sigma_range(s)
        return get_sigmas_karras(s.steps, lo, hi, s.rho, device=self.device)

    def _check_dirac(self, s: Settings, n_stems: int) -> None:
        """MSDM's Dirac form diverges with too few steps for its stem count: say so up front."""
        if s.dirac != "constrained":
            return
        lo, hi = self._sigma_range(s)
        check_dirac_steps(s.steps, n_stems, self.config.edm.sigma_data, lo, hi, s.rho, sampler=s.sampler,
                          s_churn=s.s_churn, resamples=s.resamples, max_steps=limits.MAX_STEPS, s_tmin=s.s_tmin)

    def _window(self, s: Settings) -> tuple[int, int]:
        """Window and overlap in samples, multiples of the network's length multiple."""
        m = self.length_multiple
        window = (window_samples(s.window_seconds, self.sample_rate, m) if s.window_seconds is not None
                  else self.config.window_samples)
        overlap = int(s.overlap * window) // m * m
        return window, min(overlap, window - m)

    def _generator(self, seed: int | None, generator: torch.Generator | None) -> tuple[torch.Generator, int | None]:
        if generator is not None:
            return generator, None
        if seed is None:
            seed = secrets.randbits(63)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
        return torch.Generator(device=self.device).manual_seed(int(seed)), int(seed)

    # -- audio in ------------------------------------------------------------------------------
    def _samples(self, seconds: float) -> int:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise ValueError(f"seconds must be a number, got {seconds!r}")
        if not 0 < seconds <= limits.MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {limits.MAX_SECONDS:g}], got {seconds}")
        return max(1, round(seconds * self.sample_rate))

    def _load(self, source: AudioSource, sample_rate: int | None, name: str) -> np.ndarray:
        audio = audio_io.load_audio(source, self.sample_rate, sample_rate, name, limits.MAX_SECONDS)
        if audio.shape[-1] < limits.MIN_INPUT_SECONDS * self.sample_rate:
            raise ValueError(f"{name} is {audio.shape[-1] / self.sample_rate:.2f} s long, shorter than the "
                             f"{limits.MIN_INPUT_SECONDS:g} s gmsdi needs to hear an instrument; give a longer clip")
        return audio

    def _mix_input(self, mix: AudioSource, sample_rate: int | None) -> tuple[np.ndarray, float]:
        """The mix [T] at the model's rate, and the gain that brings its peak to `MIX_PEAK`."""
        y = self._load(mix, sample_rate, "mix")
        return y, limits.MIX_PEAK / audio_io.peak(y)

    def _locked_gain(self, total: np.ndarray, n_locked: int, n_stems: int) -> float:
        """The one gain of L locked stems whose sum is `total` [T]: their sum peaks at MIX_PEAK·√(L/K)."""
        return limits.MIX_PEAK * math.sqrt(n_locked / n_stems) / max(audio_io.peak(total), audio_io.SILENCE_PEAK)

    # -- the sampled variable --------------------------------------------------------------------
    def _encode(self, audio: np.ndarray) -> np.ndarray:
        """Audio [..., T] -> the variable the sampler runs on (the model's `encode`; a model without one
        samples the waveform)."""
        encode = getattr(self.model, "encode", None)
        return audio if encode is None else encode(audio)

    def _decode(self, z: Any) -> Any:
        """The inverse of `_encode`, for an array or a tensor [..., T]."""
        decode = getattr(self.model, "decode", None)
        return z if decode is None else decode(z)

    # -- the settings record -------------------------------------------------------------------
    def _record(self, task: str, s: Settings, seed: int | None, **details: Any) -> dict[str, Any]:
        """Everything needed to reproduce a result (JSON-serialisable); `details` come last."""
        lo, hi = self._sigma_range(s)
        window, overlap = self._window(s)
        return {
            "task": task,
            **dataclasses.asdict(s),
            "sigma_min": lo,
            "sigma_max": hi,
            "seed": seed,
            "sample_rate": self.sample_rate,
            "window_samples": window,
            "overlap_samples": overlap,
            "checkpoint": checkpoint_record(self.checkpoint) if self.checkpoint is not None else None,
            "checkpoint_sha256": self.checkpoint_sha256,
            "device": str(self.device),
            "mixed_precision": str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else "no",
            "gmsdi_version": gmsdi.__version__,
            **details,
        }

    @staticmethod
    def _part_callback(callback: Callback | None, part: int, parts: int, extra: dict[str, Any]) -> Callback | None:
        """Wraps a user callback for one sampler run among `parts`; progress becomes overall."""
        if callback is None:
            return None

        def cb(info: dict) -> bool | None:
            return callback({**info, **extra, "part": part, "parts": parts,
                             "progress": (part + info["progress"]) / parts})

        return cb

    # -- the two window loops --------------------------------------------------------------------
    def _continue(self, sample: WindowSampler, n_rows: int, locked: dict[int, np.ndarray], length: int, s: Settings,
                  callback: Callback | None, task: str, chains: list[str]) -> tuple[np.ndarray, int]:
        """A stack [N, length] sampled window by window (`continue_windows`); each window continues the last.

        Args:
            sample: runs the sampler on one window (see `WindowSampler`).
            n_rows: N, the rows of the stack (stems, and the mixture chain for GMSDI).
            locked: row -> [≤ length] known audio at model level; those rows come back equal to it.
            chains: the row names the callback reports.

        Returns:
            The stack [N, length] float32, and the number of windows.
        """
        window, overlap = self._window(s)
        n_windows = len(continuation_spans(length, window, overlap, self.length_multiple))

        def run(j: int, w: int, known: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
            cb = self._part_callback(callback, j, n_windows, {"task": task, "chunk": j, "chunks": n_windows,
                                                              "chains": chains})
            return _finite(sample(w, known, mask, cb), s, task)

        fixed = {i: torch.from_numpy(self._encode(a)) for i, a in locked.items()}
        out, _ = continue_windows(run, n_rows, fixed, length, window, overlap, self.length_multiple, self.device)
        return self._decode(out.cpu().numpy()), n_windows

    def _separate(self, denoiser: StackDenoiser, mix: np.ndarray, names: list[str], constrained: int, s: Settings,
                  generator: torch.Generator, callback: Callback | None, task: str, part: int = 0,
                  parts: int = 1) -> tuple[np.ndarray, int]:
        """The Dirac separator (METHOD.md §3.3) on a model-level mix [T] -> stems [K, T], window by window.

        Args:
            denoiser: the stack denoiser over the K stems ([B, K, T] -> [B, K, T]).
            names: the K stem names (callback "chains").
            constrained: the index of MSDM's constrained stem (`Settings.dirac`).
            part, parts: this run's place among several (the ensemble), for overall progress.

        Returns:
            The stems [K, T] float32 (they sum to `mix`), and the number of windows.
        """
        k = len(names)
        self._check_dirac(s, k)
        window, overlap = self._window(s)
        sigmas = self._sigmas(s)
        n_chunks = 1 if len(mix) <= window else len(chunk_starts(len(mix), window, overlap))
        chunk = iter(range(n_chunks))
        sampled = [p for i, p in enumerate(names) if s.dirac == "projected" or i != constrained]

        def run(segment: torch.Tensor) -> torch.Tensor:
            j = next(chunk)
            cb = self._part_callback(callback, part * n_chunks + j, parts * n_chunks,
                                     {"task": task, "chunk": j, "chunks": n_chunks, "chains": sampled})
            out = separate_sources(denoiser, segment, k, sigmas, constrained=constrained, dirac=s.dirac,
                                   sampler=s.sampler, s_churn=s.s_churn, s_tmin=s.s_tmin, resamples=s.resamples,
                                   callback=cb, generator=generator)
            return _finite(out, s, task)

        z = torch.from_numpy(self._encode(mix)).to(self.device)[None]
        out = self._decode(overlap_add(run, z, window, overlap, self.length_multiple)[0].float())
        y = torch.from_numpy(mix).to(out.device)
        return keep_silence(out, y.float(), self.sample_rate).cpu().numpy(), n_chunks

    @staticmethod
    def _counts(denoiser: Any) -> dict[str, int]:
        """The network-call counters of a guided or joint denoiser (for the speed figures)."""
        return {"network_calls": denoiser.calls, "network_rows": denoiser.rows, "network_samples": denoiser.samples}


Engine = BasePipeline

__all__ = ["REPO_ROOT", "BasePipeline", "DivergedError", "Engine", "WindowSampler", "checkpoint_record",
           "cpu_has_fast_bf16", "pick_device"]
