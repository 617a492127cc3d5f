"""The public API: one trained mixture model, four tasks (METHOD.md §3).

    from gmsdi.pipeline import GMSDIPipeline

    pipe = GMSDIPipeline.from_pretrained()              # the bundled model; cuda, mps or cpu
    song = pipe.generate(["bass", "drums", "piano"], seconds=4, seed=0)
    song.save("out/song")                              # stems/*.wav, mix.wav, settings.json
    band = pipe.accompany({"bass": "bass.wav"}, ["drums", "piano"], seed=0)
    parts = pipe.separate("mix.wav", ["bass", "drums", "guitar", "piano"], seed=0)
    bass = pipe.extract("mix.wav", "bass", seed=0)
    best = pipe.ensemble("mix.wav", ["bass", "drums", "guitar", "piano"], seed=0)

Every task returns a `Result` (named stems, the mix, the sample rate and the settings used).
`MSDMPipeline` runs the evaluation's MSDM baseline (one unconditional model over the stacked stems)
with the same results, levels and windows; both build on `BasePipeline`.

Levels. The model was trained on mixtures at their recorded level (SynthSlakh: the median peak
of a 2 s mixture crop is about 0.5). An input mixture is scaled by one gain so that its peak is
`MIX_PEAK`; locked stems are scaled together by one gain so that their sum peaks at
MIX_PEAK·√(L/K) (L locked of K stems: independent stems add in power). Every output is divided by
the same gain, so stems keep their true relative loudness, locked stems come back unchanged and
separated stems sum to the input mix. Generation needs no gain. `Result.save` never normalises a
stem on its own.

Limits (ValueError beyond them): at most `MAX_STEMS` = 8 stems, `MAX_SECONDS` = 600 s of audio,
`MAX_STEPS` = 1000 steps. Audio input conventions (paths, arrays, downmixing, resampling) are in
`gmsdi.audio`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import secrets
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import gmsdi
from gmsdi import audio as audio_io
from gmsdi.audio import AudioSource
from gmsdi.data.classes import PAPER_STEMS
from gmsdi.data.prompts import compose
from gmsdi.inference import ensemble as ensemble_mod
from gmsdi.inference.chunking import chunk_starts, continuation_spans, overlap_add, window_samples
from gmsdi.inference.constraints import (
    DIRAC_MODES,
    GAMMA_MODES,
    LOCKED_NOISE,
    check_coupling,
    check_gamma,
    keep_silence,
)
from gmsdi.inference.guidance import GuidedDenoiser, default_negative_prompts
from gmsdi.inference.msdm import JointDenoiser, msdm_generate, msdm_separate
from gmsdi.inference.tasks import check_dirac_steps, generate_sources, separate_sources
from gmsdi.sampling.samplers import SAMPLERS, Callback, get_sigmas_karras
from gmsdi.text.embedding import PromptEncoder

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CHECKPOINT = REPO_ROOT / "assets" / "gmsdi-synthslakh.safetensors"

MAX_STEMS = 8
MAX_SECONDS = 600.0
MAX_STEPS = 1000
MIX_PEAK = 0.5


@dataclass(frozen=True)
class Settings:
    """Sampling settings of a task; `GENERATION` and `SEPARATION` hold the defaults.

    Attributes:
        sampler: "heun" or "euler" (`gmsdi.sampling.SAMPLERS`).
        steps: number of σ steps (Karras schedule).
        s_churn: stochastic churn (Karras Alg. 2; MSDM separates with 20-40); 0 = deterministic.
        resamples: passes per step (MSDM's correction re-sampling; 1 = none, MSDM used 2).
        guidance: negative-prompt guidance weight w of each source (1 = off).
        mix_guidance: guidance weight of the mixture chain against the null prompt (1 = off).
        gamma_x, gamma_y: the likelihood widths of Eq. (2); None = √(G+1) in relative mode, G the
            number of generated stems: the coupling then closes the mix-vs-sum residual at the
            rate of the steps (c = 1 in `MixtureCoupling`), which keeps Euler and Heun stable for
            any step count. `math.inf` = no coupling.
        gamma_mode: "relative" (γ = g·σ) or "absolute" (γ in waveform units).
        locked_noise: "fixed" or "fresh" ε for locked stems and context (`KnownValues`).
        sigma_min, sigma_max: the σ range; None = the model's (`EDMConfig`).
        rho: Karras schedule exponent.
        window_seconds: model window; None = the model's default window (`ModelConfig.window_samples`).
        overlap: fraction of the window shared by neighbouring windows of long audio.
        constrained: the Dirac separator's constrained source (index or prompt); None = the last.
        dirac: the separator's form: "constrained" (MSDM, METHOD.md §3.3: one source is the mix
            minus the others; few steps or many stems are refused when they would not converge,
            `check_dirac_steps`) or "projected" (all sources on the plane Σx = y; it does not diverge
            at any step count; `ProjectedDirac`).
    """

    sampler: str
    steps: int
    s_churn: float = 0.0
    resamples: int = 1
    guidance: float | tuple[float, ...] = 2.0
    mix_guidance: float = 1.0
    gamma_x: float | None = None
    gamma_y: float | None = None
    gamma_mode: str = "relative"
    locked_noise: str = "fixed"
    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float = 7.0
    window_seconds: float | None = None
    overlap: float = 0.25
    constrained: int | str | None = None
    dirac: str = "constrained"


# Step counts are set for a real-time factor of about 4 for 4 s of 4 stems on a 2-core CPU with
# the default model (benchmarks/speed.py; README has the figures).
GENERATION = Settings(sampler="heun", steps=32, s_churn=0.0, guidance=2.0)
SEPARATION = Settings(sampler="euler", steps=64, s_churn=20.0, guidance=2.0)


@dataclass
class Result:
    """What every task returns.

    Attributes:
        stems: name -> float32 [T] at `sample_rate`, in the order asked for; levels as produced
            (not normalised per stem).
        mix: float32 [T]: the stems' sum (generation, accompaniment) or the input mix (separation,
            extraction, ensemble).
        sample_rate: Hz.
        settings: everything needed to reproduce the result (JSON-serialisable).
        mixture_chain: generation and accompaniment: the mixture chain y of Eq. (2) [T].
    """

    stems: dict[str, np.ndarray]
    mix: np.ndarray
    sample_rate: int
    settings: dict[str, Any] = field(default_factory=dict)
    mixture_chain: np.ndarray | None = None

    @property
    def seconds(self) -> float:
        return len(self.mix) / self.sample_rate

    def _signals(self, format: str) -> tuple[dict[str, np.ndarray], float]:
        """File name -> audio (stems, then "mix"), and the one gain applied for a clipping format."""
        names = _file_names(list(self.stems))
        signals = {f"stems/{n}": a for n, a in zip(names, self.stems.values(), strict=True)}
        signals["mix"] = self.mix
        gain = 1.0
        top = max(audio_io.peak(a) for a in signals.values())
        if format in audio_io.CLIPPING_FORMATS and top > 1.0:
            gain = 0.999 / top  # one gain for all files keeps the relative levels
        return {k: a * gain for k, a in signals.items()}, gain

    def _settings_json(self, gain: float) -> str:
        data = dict(self.settings)
        if gain != 1.0:
            data["saved_gain_db"] = round(20 * math.log10(gain), 3)
        return json.dumps(data, indent=2, default=str)

    def save(self, folder: str | os.PathLike[str], format: str = "wav") -> list[Path]:
        """Writes stems/<name>.<format>, mix.<format> and settings.json into `folder`.

        wav is 32-bit float and keeps levels as they are; for flac, mp3 and ogg, if any signal
        would clip, all files get one common gain (recorded as `saved_gain_db`).

        Returns:
            The paths written.
        """
        audio_io.check_format(format)
        folder = Path(folder)
        signals, gain = self._signals(format)
        paths = [audio_io.write_audio(folder / f"{name}.{format}", a, self.sample_rate, format)
                 for name, a in signals.items()]
        (folder / "settings.json").write_text(self._settings_json(gain))
        return [*paths, folder / "settings.json"]

    def save_zip(self, path: str | os.PathLike[str], format: str = "wav") -> Path:
        """One zip with the files of `save` (stems/, mix, settings.json)."""
        audio_io.check_format(format)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        signals, gain = self._signals(format)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, a in signals.items():
                f = audio_io.write_audio(Path(tmp) / f"{name}.{format}", a, self.sample_rate, format)
                zf.write(f, f"{name}.{format}")
            zf.writestr("settings.json", self._settings_json(gain))
        return path

    def to_bytes(self, format: str = "wav") -> bytes:
        """The zip of `save_zip` in memory (for the app)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return self.save_zip(Path(tmp) / "result.zip", format).read_bytes()


def _file_names(names: Sequence[str]) -> list[str]:
    """Safe, unique file stems: "electric bass" -> "electric_bass"; repeats get _2, _3."""
    out: list[str] = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "stem"
        stem, i = base, 2
        while stem in out:
            stem, i = f"{base}_{i}", i + 1
        out.append(stem)
    return out


def _unique(names: Sequence[str]) -> list[str]:
    """Stem names for a Result: the prompts, with repeats numbered ("piano", "piano (2)")."""
    out: list[str] = []
    for name in names:
        cand, i = name, 2
        while cand in out:
            cand, i = f"{name} ({i})", i + 1
        out.append(cand)
    return out


def _check_prompts(prompts: str | Sequence[str], what: str = "prompts", minimum: int = 1) -> list[str]:
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


def _sampled_chains(names: Sequence[str], constrained: int, dirac: str) -> list[str]:
    """The stems a Dirac separator samples (callback "chains"): all K in the projected form, all but
    the constrained one in MSDM's."""
    return list(names) if dirac == "projected" else [p for i, p in enumerate(names) if i != constrained]


def _check_count(n: int) -> None:
    if n > MAX_STEMS:
        raise ValueError(f"{n} stems requested, more than the limit of {MAX_STEMS}; ask for fewer stems")


def _per_source(value: float | Sequence[float], n: int, name: str) -> list[float]:
    values = [value] * n if isinstance(value, (int, float)) else list(value)
    if len(values) != n:
        raise ValueError(f"{name} needs one value per source ({n}), got {len(values)}")
    for v in values:
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0 (1 = no guidance), got {v!r}")
    return [float(v) for v in values]


def _negatives(prompts: list[str], negative_prompts: Sequence[str | None] | None, n_fixed: int = 0) -> list[str]:
    """Negative prompt per source: the user's where given (None entries = default), else ⊗ of the others.

    The first `n_fixed` sources (locked stems) take no user negatives; `negative_prompts` lists
    one entry per remaining source.
    """
    negatives = default_negative_prompts(prompts)
    if negative_prompts is None:
        return negatives
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
            negatives[n_fixed + i] = neg.strip()
    return negatives


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX-BF16 or AVX-512-BF16; Linux's cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _pick_device(device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    from accelerate import PartialState  # cuda, mps, xpu or cpu, as Accelerate sees the machine

    return PartialState().device


class BasePipeline:
    """What every pipeline over an EDM denoiser shares: device, settings, σ schedule, windows,
    seeds, audio input and the settings record. `GMSDIPipeline` and `MSDMPipeline` build on it.

    Args:
        model: the EDM denoiser, with a `model_config`.
        device: None lets Accelerate choose (cuda, mps or cpu).
        mixed_precision: run the network in bf16 (fp16 where bf16 is unsupported); None = on for
            cuda and for a CPU with bf16 instructions (AMX or AVX-512-BF16), off elsewhere.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device | str | None = None,
        mixed_precision: bool | None = None,
    ) -> None:
        config = getattr(model, "model_config", None)
        if config is None:
            raise ValueError("the model has no model_config; build it with gmsdi.models.build_model or load_model")
        self.device = _pick_device(device)
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
        self.checkpoint: str | None = None

    # -- helpers -------------------------------------------------------------------------------
    def _settings(self, base: Settings, **overrides: Any) -> Settings:
        s = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
        if s.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {s.sampler!r}; valid names are {sorted(SAMPLERS)}")
        if isinstance(s.steps, bool) or not isinstance(s.steps, int) or not 1 <= s.steps <= MAX_STEPS:
            raise ValueError(f"steps must be a whole number from 1 to {MAX_STEPS}, got {s.steps!r}")
        if isinstance(s.resamples, bool) or not isinstance(s.resamples, int) or not 1 <= s.resamples <= 10:
            raise ValueError(f"resamples must be a whole number from 1 (no correction) to 10, got {s.resamples!r}")
        if not (math.isfinite(s.s_churn) and s.s_churn >= 0):
            raise ValueError(f"s_churn must be a finite number >= 0, got {s.s_churn}")
        if s.gamma_mode not in GAMMA_MODES:
            raise ValueError(f"unknown gamma mode {s.gamma_mode!r}; valid names are {sorted(GAMMA_MODES)}")
        if s.locked_noise not in LOCKED_NOISE:
            raise ValueError(f"unknown locked noise {s.locked_noise!r}; valid names are {sorted(LOCKED_NOISE)}")
        if s.dirac not in DIRAC_MODES:
            raise ValueError(f"unknown dirac form {s.dirac!r}; valid names are {list(DIRAC_MODES)}")
        if s.dirac == "projected" and s.constrained is not None:
            raise ValueError(f"constrained={s.constrained!r} names the stem that MSDM's form sets to the mix minus "
                             "the others; the projected form has none: leave constrained out, or use "
                             "dirac='constrained'")
        for name in ("gamma_x", "gamma_y"):
            if getattr(s, name) is not None:
                check_gamma(getattr(s, name), name)
        if not 0 <= s.overlap < 1:
            raise ValueError(f"overlap is a fraction of the window in [0, 1), got {s.overlap}")
        lo, hi = self._sigma_range(s)
        if not 0 < lo < hi:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {lo}, {hi}")
        if s.window_seconds is not None and not s.window_seconds > 0:
            raise ValueError(f"window_seconds must be positive, got {s.window_seconds}")
        guidance = [s.guidance] if isinstance(s.guidance, (int, float)) else list(s.guidance)
        _per_source(guidance, len(guidance), "guidance")
        if not (math.isfinite(s.mix_guidance) and s.mix_guidance >= 0):
            raise ValueError(f"mix_guidance must be a finite number >= 0 (1 = no guidance), got {s.mix_guidance}")
        return s

    def _sigma_range(self, s: Settings) -> tuple[float, float]:
        edm = self.config.edm
        return (s.sigma_min if s.sigma_min is not None else edm.sigma_min,
                s.sigma_max if s.sigma_max is not None else edm.sigma_max)

    def _sigmas(self, s: Settings) -> torch.Tensor:
        lo, hi = self._sigma_range(s)
        return get_sigmas_karras(s.steps, lo, hi, s.rho, device=self.device)

    def _check_dirac(self, s: Settings, n_sources: int) -> None:
        """MSDM's Dirac form diverges with too few steps for its stem count: say so up front."""
        if s.dirac != "constrained":
            return
        lo, hi = self._sigma_range(s)
        check_dirac_steps(s.steps, n_sources, self.config.edm.sigma_data, lo, hi, s.rho, sampler=s.sampler,
                          s_churn=s.s_churn, resamples=s.resamples, max_steps=MAX_STEPS)

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

    def _samples(self, seconds: float) -> int:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise ValueError(f"seconds must be a number, got {seconds!r}")
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds}")
        return max(1, round(seconds * self.sample_rate))

    def _load(self, source: AudioSource, sample_rate: int | None, name: str) -> np.ndarray:
        return audio_io.load_audio(source, self.sample_rate, sample_rate, name, MAX_SECONDS)

    def _base_settings(self, task: str, s: Settings, seed: int | None, window: int, overlap: int) -> dict[str, Any]:
        lo, hi = self._sigma_range(s)
        return {
            "task": task,
            **dataclasses.asdict(s),
            "sigma_min": lo,
            "sigma_max": hi,
            "seed": seed,
            "sample_rate": self.sample_rate,
            "window_samples": window,
            "overlap_samples": overlap,
            "checkpoint": self.checkpoint,
            "device": str(self.device),
            "mixed_precision": str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else "no",
            "gmsdi_version": gmsdi.__version__,
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

    def _constrained(self, constrained: int | str | None, prompts: list[str]) -> int:
        if constrained is None:
            return len(prompts) - 1
        if isinstance(constrained, str):
            if constrained not in prompts:
                raise ValueError(f"constrained={constrained!r} is not one of the prompts {prompts}")
            return prompts.index(constrained)
        if isinstance(constrained, bool) or not isinstance(constrained, int) or not 0 <= constrained < len(prompts):
            raise ValueError(f"constrained must be a prompt or an index in 0..{len(prompts) - 1}, got {constrained!r}")
        return constrained

    def _mix_input(self, mix: AudioSource, sample_rate: int | None) -> tuple[np.ndarray, float]:
        y = self._load(mix, sample_rate, "mix")
        return y, MIX_PEAK / audio_io.peak(y)


class GMSDIPipeline(BasePipeline):
    """Generation, accompaniment, separation and extraction with one text-conditioned mixture model.

    Args:
        model: the EDM denoiser (`gmsdi.models.EDMDenoiser`, or anything with the same call and a
            `model_config`, such as `gmsdi.inference.GaussianDenoiser`).
        text_encoder: the prompt encoder the model was trained with.
        device: None lets Accelerate choose (cuda, mps or cpu).
        mixed_precision: run the network in bf16 (fp16 where bf16 is unsupported); None = on for
            cuda and for a CPU with bf16 instructions (AMX or AVX-512-BF16), off elsewhere.
    """

    def __init__(
        self,
        model: nn.Module,
        text_encoder: PromptEncoder,
        device: torch.device | str | None = None,
        mixed_precision: bool | None = None,
    ) -> None:
        super().__init__(model, device, mixed_precision)
        self.text_encoder = text_encoder.to(self.device) if isinstance(text_encoder, nn.Module) else text_encoder
        self._prompt_check: Any = None
        if text_encoder.dim != self.config.text_dim:
            raise ValueError(f"the text encoder gives {text_encoder.dim}-d embeddings but the model expects "
                             f"{self.config.text_dim}-d; use the encoder the model was trained with")

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: torch.device | str | None = None,
        text_encoder: PromptEncoder | None = None,
        mixed_precision: bool | None = None,
    ) -> GMSDIPipeline:
        """Loads a checkpoint (None = the bundled `assets/gmsdi-synthslakh.safetensors`).

        Raises:
            FileNotFoundError: no checkpoint there (the message says how to train and export one).
        """
        from gmsdi.models.checkpoint import load_model
        from gmsdi.text.encoder import build_text_encoder

        if path is None:
            path = BUNDLED_CHECKPOINT
            if not path.is_file():
                raise FileNotFoundError(
                    f"the bundled model {path.relative_to(REPO_ROOT)} is missing; train and export it with "
                    "`python train/train.py --config train/configs/spectral.yaml` and then "
                    "`python train/train.py --config train/configs/spectral.yaml --export "
                    "assets/gmsdi-synthslakh.safetensors`, or pass the path of another checkpoint"
                )
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {str(path)!r}; pass the path of a .safetensors file "
                                    "written by `train.py --export`")
        model = load_model(path)
        encoder = text_encoder if text_encoder is not None else build_text_encoder(model.model_config.text_encoder)
        pipe = cls(model, encoder, device=device, mixed_precision=mixed_precision)
        pipe.checkpoint = str(path)
        return pipe

    # -- helpers -------------------------------------------------------------------------------
    def prompt_warnings(self, prompts: Sequence[str]) -> list[str]:
        """Sentences for prompt parts far from every instrument the model was trained on
        (`gmsdi.text.vocabulary.PromptCheck`, in this model's prompt embedding); [] when all are known."""
        from gmsdi.text.vocabulary import PromptCheck

        if self._prompt_check is None:
            self._prompt_check = PromptCheck(self.text_encoder)
        return self._prompt_check.warnings(prompts)

    def _add_warnings(self, settings: dict[str, Any]) -> None:
        """settings["warnings"]: `prompt_warnings` of the prompts the settings record."""
        settings["warnings"] = self.prompt_warnings([*settings.get("prompts", []), settings.get("rest_prompt") or ""])

    def _guided(self, prompts: list[str], negatives: list[str], weights: list[float],
                evaluate: list[bool] | None = None) -> GuidedDenoiser:
        return GuidedDenoiser.from_prompts(self.model, self.text_encoder, prompts, negatives, weights, evaluate,
                                           self.autocast_dtype, device=self.device)

    # -- generation and accompaniment ----------------------------------------------------------
    def _multisource(self, prompts: list[str], negatives: list[str], weights: list[float], locked: np.ndarray | None,
                     length: int, s: Settings, generator: torch.Generator, callback: Callback | None,
                     task: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Eq. (2) over K = L locked + G generated sources, window by window.

        locked: [L, T] at model level or None. Returns the sources [K, T], the mixture chain [T]
        and run details. Stack layout: [locked..., generated..., mix].
        """
        k = len(prompts)
        n_locked = 0 if locked is None else locked.shape[0]
        mix_prompt = compose(prompts)
        guided = self._guided(prompts + [mix_prompt], negatives + [""], weights + [s.mix_guidance],
                              evaluate=[False] * n_locked + [True] * (k - n_locked + 1))
        g_auto = math.sqrt(k - n_locked + 1)  # c = G/g² + 1/g² = 1 (MixtureCoupling)
        gamma_x = s.gamma_x if s.gamma_x is not None else (g_auto if s.gamma_mode == "relative" else None)
        gamma_y = s.gamma_y if s.gamma_y is not None else (g_auto if s.gamma_mode == "relative" else None)
        if gamma_x is None or gamma_y is None:
            raise ValueError("with gamma_mode='absolute' give gamma_x and gamma_y (waveform units, e.g. 0.5)")
        sigmas = self._sigmas(s)
        check_coupling(sigmas, gamma_x, gamma_y, s.gamma_mode, k - n_locked, s.sampler, s.s_churn)
        window, overlap = self._window(s)
        spans = continuation_spans(length, window, overlap, self.length_multiple)
        total = spans[-1][1]
        out = torch.zeros(1, k + 1, total, device=self.device)
        locked_t = None
        if locked is not None:
            locked_t = torch.zeros(1, n_locked, total, device=self.device)
            locked_t[0, :, : locked.shape[1]] = torch.from_numpy(locked).to(self.device)
        chains = prompts + ["mix"]
        for j, (a, b) in enumerate(spans):
            w = b - a
            known = torch.zeros(1, k + 1, w, device=self.device)
            mask = torch.zeros(1, k + 1, w, dtype=torch.bool, device=self.device)
            if locked_t is not None:
                known[:, :n_locked] = locked_t[:, :, a:b]
                mask[:, :n_locked] = True
            if j > 0 and overlap > 0:
                known[:, n_locked:, :overlap] = out[:, n_locked:, a:a + overlap]
                mask[:, n_locked:, :overlap] = True
            any_known = bool(mask.any())
            cb = self._part_callback(callback, j, len(spans), {"task": task, "chunk": j, "chunks": len(spans),
                                                               "chains": chains})
            out[:, :, a:b] = generate_sources(
                guided, k, w, sigmas, gamma_x=gamma_x, gamma_y=gamma_y, gamma_mode=s.gamma_mode,
                known=known if any_known else None, mask=mask if any_known else None, locked_noise=s.locked_noise,
                sampler=s.sampler, s_churn=s.s_churn, resamples=s.resamples, callback=cb, generator=generator,
                device=self.device)
        out = out[0, :, :length].float().cpu().numpy()
        details = {"gamma_x": gamma_x, "gamma_y": gamma_y, "mix_prompt": mix_prompt, "chunks": len(spans),
                   "network_calls": guided.calls, "network_rows": guided.rows,
                   "network_samples": guided.samples}
        return out[:k], out[k], details

    def generate(
        self,
        prompts: str | Sequence[str],
        negative_prompts: Sequence[str | None] | None = None,
        *,
        seconds: float = 4.0,
        gamma_x: float | None = None,
        gamma_y: float | None = None,
        gamma_mode: str | None = None,
        guidance: float | Sequence[float] | None = None,
        mix_guidance: float | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        s_churn: float | None = None,
        resamples: int | None = None,
        window_seconds: float | None = None,
        overlap: float | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """Generates K coherent stems and their mix (Eq. 2, METHOD.md §3.1).

        Args:
            prompts: one prompt per stem, e.g. ["bass", "drums", "piano"] (at most `MAX_STEMS`).
            negative_prompts: one per stem; None (or a None entry) = the other stems' prompts
                joined; "" = the null prompt.
            seconds: length; longer than the model window continues window by window, each window
                inpainting its overlap from the previous one.
            gamma_x, gamma_y, gamma_mode: Eq. (2)'s likelihood widths (see `Settings`).
            guidance: weight w per stem (a number or one per stem; 1 = off).
            mix_guidance: guidance of the mixture chain against the null prompt (1 = off).
            steps, sampler, s_churn, resamples, window_seconds, overlap, sigma_min, sigma_max:
                sampling settings; None takes `GENERATION`'s.
            seed: makes the result reproducible (None draws one; it is in `settings`).
            generator: use this torch.Generator instead of `seed`.
            callback: called after each step (`gmsdi.sampling.samplers` contract, plus "task",
                "chunk", "chunks", "chains"; "progress" is overall); return True to cancel, which
                raises `gmsdi.sampling.Cancelled`.

        Returns:
            `Result` with one stem per prompt, mix = Σ stems, and the mixture chain.
        """
        prompts = _check_prompts(prompts)
        _check_count(len(prompts))
        s = self._settings(GENERATION, gamma_x=gamma_x, gamma_y=gamma_y, gamma_mode=gamma_mode, guidance=guidance,
                           mix_guidance=mix_guidance, steps=steps, sampler=sampler, s_churn=s_churn,
                           resamples=resamples, window_seconds=window_seconds, overlap=overlap,
                           sigma_min=sigma_min, sigma_max=sigma_max)
        length = self._samples(seconds)
        weights = _per_source(s.guidance, len(prompts), "guidance")
        negatives = _negatives(prompts, negative_prompts)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        sources, chain, details = self._multisource(prompts, negatives, weights, None, length, s, gen, callback,
                                                    "generate")
        window, overlap_n = self._window(s)
        settings = {**self._base_settings("generate", s, seed, window, overlap_n), "prompts": prompts,
                    "negative_prompts": negatives, "guidance": weights, "seconds": length / self.sample_rate,
                    **details, "wall_seconds": round(time.perf_counter() - t0, 3)}
        stems = dict(zip(_unique(prompts), sources, strict=True))
        self._add_warnings(settings)
        return Result(stems, sources.sum(axis=0), self.sample_rate, settings, mixture_chain=chain)

    def accompany(
        self,
        locked: Mapping[str, AudioSource],
        prompts: str | Sequence[str],
        negative_prompts: Sequence[str | None] | None = None,
        *,
        sample_rate: int | None = None,
        gamma_x: float | None = None,
        gamma_y: float | None = None,
        gamma_mode: str | None = None,
        guidance: float | Sequence[float] | None = None,
        mix_guidance: float | None = None,
        locked_noise: str | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        s_churn: float | None = None,
        resamples: int | None = None,
        window_seconds: float | None = None,
        overlap: float | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """Generates stems that fit the locked ones (METHOD.md §3.2).

        Args:
            locked: prompt -> audio of each stem to keep (path, array, or (array, rate)). They
                enter every step at the current noise level and come back unchanged. Stems of
                different lengths are zero-padded to the longest, which sets the output length.
            prompts: the stems to generate.
            negative_prompts: one per generated stem (None = the other stems' prompts, locked ones
                included).
            sample_rate: the rate of array inputs (None = the model's).
            locked_noise: "fixed" or "fresh" noise on the locked stems (`Settings`).
            others: as `generate`.

        Returns:
            `Result`: the locked stems (unchanged), then the generated ones; mix = their sum.
        """
        if not isinstance(locked, Mapping) or not locked:
            raise ValueError("accompany needs at least one locked stem: locked={'bass': 'bass.wav'}")
        locked_prompts = _check_prompts(list(locked), "locked")
        prompts = _check_prompts(prompts)
        _check_count(len(locked_prompts) + len(prompts))
        s = self._settings(GENERATION, gamma_x=gamma_x, gamma_y=gamma_y, gamma_mode=gamma_mode, guidance=guidance,
                           mix_guidance=mix_guidance, locked_noise=locked_noise, steps=steps, sampler=sampler,
                           s_churn=s_churn, resamples=resamples, window_seconds=window_seconds, overlap=overlap,
                           sigma_min=sigma_min, sigma_max=sigma_max)
        stems_in = [self._load(src, sample_rate, f"locked stem {name!r}") for name, src in locked.items()]
        length = max(len(a) for a in stems_in)
        locked_arr = np.zeros((len(stems_in), length), dtype=np.float32)
        for i, a in enumerate(stems_in):
            locked_arr[i, : len(a)] = a
        all_prompts = locked_prompts + prompts
        k, n_locked = len(all_prompts), len(locked_prompts)
        gain = MIX_PEAK * math.sqrt(n_locked / k) / max(audio_io.peak(locked_arr.sum(axis=0)), audio_io.SILENCE_PEAK)
        weights = _per_source(s.guidance, len(prompts), "guidance")
        negatives = _negatives(all_prompts, negative_prompts, n_fixed=n_locked)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        sources, chain, details = self._multisource(all_prompts, negatives, [1.0] * n_locked + weights,
                                                    locked_arr * gain, length, s, gen, callback, "accompany")
        generated = sources[n_locked:] / gain
        window, overlap_n = self._window(s)
        settings = {**self._base_settings("accompany", s, seed, window, overlap_n), "locked": locked_prompts,
                    "prompts": prompts, "negative_prompts": negatives[n_locked:], "guidance": weights,
                    "input_gain_db": round(20 * math.log10(gain), 3), "seconds": length / self.sample_rate,
                    **details, "wall_seconds": round(time.perf_counter() - t0, 3)}
        names = _unique(all_prompts)
        stems = dict(zip(names, [*locked_arr, *generated], strict=True))
        mix = locked_arr.sum(axis=0) + generated.sum(axis=0)
        self._add_warnings(settings)
        return Result(stems, mix.astype(np.float32), self.sample_rate, settings, mixture_chain=chain / gain)

    # -- separation and extraction --------------------------------------------------------------
    def _dirac(self, mix: np.ndarray, prompts: list[str], negatives: list[str], weights: list[float],
               constrained: int, s: Settings, generator: torch.Generator, callback: Callback | None, task: str,
               part: int = 0, parts: int = 1) -> tuple[np.ndarray, dict[str, Any]]:
        """Dirac separation of a model-level mix [T] into [K, T], overlap-added over windows."""
        k = len(prompts)
        self._check_dirac(s, k)
        guided = self._guided(prompts, negatives, weights)
        window, overlap = self._window(s)
        sigmas = self._sigmas(s)
        length = len(mix)
        n_chunks = 1 if length <= window else len(chunk_starts(length, window, overlap))
        chunk = iter(range(n_chunks))
        chains = _sampled_chains(prompts, constrained, s.dirac)

        def run(segment: torch.Tensor) -> torch.Tensor:
            j = next(chunk)
            cb = self._part_callback(callback, part * n_chunks + j, parts * n_chunks,
                                     {"task": task, "chunk": j, "chunks": n_chunks, "chains": chains})
            return separate_sources(guided, segment, k, sigmas, constrained=constrained, dirac=s.dirac,
                                    sampler=s.sampler, s_churn=s.s_churn, resamples=s.resamples, callback=cb,
                                    generator=generator)

        y = torch.from_numpy(mix).to(self.device)[None]
        out = overlap_add(run, y, window, overlap, self.length_multiple)[0].float()
        out = keep_silence(out, y[0].float(), self.sample_rate).cpu().numpy()
        return out, {"chunks": n_chunks, "network_calls": guided.calls, "network_rows": guided.rows,
                   "network_samples": guided.samples}

    def separate(
        self,
        mix: AudioSource,
        prompts: str | Sequence[str],
        negative_prompts: Sequence[str | None] | None = None,
        *,
        constrained: int | str | None = None,
        dirac: str | None = None,
        sample_rate: int | None = None,
        guidance: float | Sequence[float] | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        s_churn: float | None = None,
        resamples: int | None = None,
        window_seconds: float | None = None,
        overlap: float | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """Separates a mix into the named stems with the Dirac separator (METHOD.md §3.3).

        Args:
            mix: the mixture (path, array or (array, rate)); stereo is downmixed.
            prompts: the K ≥ 2 stems it contains, e.g. ["bass", "drums", "guitar", "piano"].
            negative_prompts: one per stem; None = the other stems' prompts.
            constrained: the stem set to mix − Σ others (prompt or index); None = the last.
            dirac: "constrained" (default, MSDM) or "projected" (no stem singled out; `Settings`).
            sample_rate: the rate of an array `mix` (None = the model's).
            others: as `generate`; defaults from `SEPARATION` (Euler with churn, as MSDM).

        Returns:
            `Result`: one stem per prompt, summing exactly (to float rounding) to `mix`, which is
            the input downmixed and resampled to the model's rate.
        """
        prompts = _check_prompts(prompts, minimum=2)
        _check_count(len(prompts))
        s = self._settings(SEPARATION, constrained=constrained, dirac=dirac, guidance=guidance, steps=steps,
                           sampler=sampler, s_churn=s_churn, resamples=resamples, window_seconds=window_seconds,
                           overlap=overlap, sigma_min=sigma_min, sigma_max=sigma_max)
        c = self._constrained(s.constrained, prompts)
        y, gain = self._mix_input(mix, sample_rate)
        weights = _per_source(s.guidance, len(prompts), "guidance")
        negatives = _negatives(prompts, negative_prompts)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        out, details = self._dirac(y * gain, prompts, negatives, weights, c, s, gen, callback, "separate")
        window, overlap_n = self._window(s)
        settings = {**self._base_settings("separate", s, seed, window, overlap_n), "prompts": prompts,
                    "negative_prompts": negatives, "guidance": weights,
                    "constrained": prompts[c] if s.dirac == "constrained" else None,
                    "input_gain_db": round(20 * math.log10(gain), 3), "seconds": len(y) / self.sample_rate,
                    **details, "wall_seconds": round(time.perf_counter() - t0, 3)}
        self._add_warnings(settings)
        return Result(dict(zip(_unique(prompts), out / gain, strict=True)), y, self.sample_rate, settings)

    def _extract_prompts(self, prompt: str, rest_prompt: str | None) -> tuple[list[str], list[str]]:
        if rest_prompt is None or not rest_prompt.strip():
            # "The rest" as the negative of the target: D(p) + w(D("") − D(p)).
            return [prompt, ""], ["", prompt]
        rest = rest_prompt.strip()
        return [prompt, rest], [rest, prompt]

    def extract(
        self,
        mix: AudioSource,
        prompt: str,
        rest_prompt: str | None = None,
        *,
        dirac: str | None = None,
        sample_rate: int | None = None,
        guidance: float | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        s_churn: float | None = None,
        resamples: int | None = None,
        window_seconds: float | None = None,
        overlap: float | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """Extracts one named stem: the Dirac separator with K = 2, the target and "the rest".

        Args:
            mix: the mixture.
            prompt: the stem to extract, e.g. "bass".
            rest_prompt: what else plays ("drums, guitar, piano"). None = "not the target": the
                rest chain is guided away from `prompt` (null prompt as positive, `prompt` as
                negative) and the target's negative is the null prompt.
            others: as `separate`; the rest is the constrained source (with dirac="constrained").

        Returns:
            `Result` with stems {prompt: target, "rest": mix − target}.
        """
        prompt = _check_prompts(prompt, "prompt")
        if len(prompt) != 1:
            raise ValueError(f"extract takes one prompt, got {len(prompt)}; use separate() for several")
        prompt = prompt[0]
        if rest_prompt is not None and not isinstance(rest_prompt, str):
            raise ValueError(f"rest_prompt must be a string or None, got {type(rest_prompt).__name__}")
        s = self._settings(SEPARATION, dirac=dirac, guidance=guidance, steps=steps, sampler=sampler, s_churn=s_churn,
                           resamples=resamples, window_seconds=window_seconds, overlap=overlap, sigma_min=sigma_min,
                           sigma_max=sigma_max)
        y, gain = self._mix_input(mix, sample_rate)
        chains, negatives = self._extract_prompts(prompt, rest_prompt)
        weights = _per_source(s.guidance, 1, "guidance") * 2
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        out, details = self._dirac(y * gain, chains, negatives, weights, 1, s, gen, callback, "extract")
        window, overlap_n = self._window(s)
        settings = {**self._base_settings("extract", s, seed, window, overlap_n), "prompts": [prompt],
                    "rest_prompt": chains[1], "negative_prompts": negatives, "guidance": weights,
                    "input_gain_db": round(20 * math.log10(gain), 3), "seconds": len(y) / self.sample_rate,
                    **details, "wall_seconds": round(time.perf_counter() - t0, 3)}
        stems = dict(zip(_unique([prompt, "rest"]), out / gain, strict=True))
        self._add_warnings(settings)
        return Result(stems, y, self.sample_rate, settings)

    def ensemble(
        self,
        mix: AudioSource,
        prompts: str | Sequence[str],
        *,
        results: str | os.PathLike[str] | None = None,
        dirac: str | None = None,
        sample_rate: int | None = None,
        guidance: float | Sequence[float] | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        s_churn: float | None = None,
        resamples: int | None = None,
        window_seconds: float | None = None,
        overlap: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """Per stem, the separator's or the extractor's estimate, whichever scored better.

        The choice comes from `results` (default `assets/ensemble.json`, written by the
        evaluation; format in `gmsdi.inference.ensemble`), or, until that exists, from the
        paper's ensemble: separator for drums, extractor otherwise. The separator runs once for
        all stems if any stem uses it; the extractor runs once per stem that uses it, with the
        other prompts as its rest prompt. The stems need not sum exactly to the mix.

        `guidance` is a number or one weight per stem. A stem's weight serves both methods: the
        separator guides each stem's chain with it (all chains run together, so every weight shapes
        every separator output), and a stem's extractor guides both its chains with it. Arguments
        otherwise as `separate`.
        """
        prompts = _check_prompts(prompts, minimum=2)
        _check_count(len(prompts))
        choices, source = ensemble_mod.load_choices(results)
        methods = ensemble_mod.choose(prompts, choices)
        s = self._settings(SEPARATION, dirac=dirac, guidance=guidance, steps=steps, sampler=sampler, s_churn=s_churn,
                           resamples=resamples, window_seconds=window_seconds, overlap=overlap)
        y, gain = self._mix_input(mix, sample_rate)
        gen, seed = self._generator(seed, generator)
        weights = _per_source(s.guidance, len(prompts), "guidance")
        use_sep = "separator" in methods
        extract_idx = [i for i, m in enumerate(methods) if m == "extractor"]
        if use_sep:  # check every part before any runs, so a refusal costs no work
            self._check_dirac(s, len(prompts))
        if extract_idx:
            self._check_dirac(s, 2)
        parts = int(use_sep) + len(extract_idx)
        t0 = time.perf_counter()
        stems: list[np.ndarray | None] = [None] * len(prompts)
        calls = samples = part = 0
        if use_sep:
            sep, d = self._dirac(y * gain, prompts, default_negative_prompts(prompts), weights,
                                 len(prompts) - 1, s, gen, callback, "ensemble", part, parts)
            for i, m in enumerate(methods):
                if m == "separator":
                    stems[i] = sep[i]
            calls, samples, part = calls + d["network_calls"], samples + d["network_samples"], part + 1
        for i in extract_idx:
            rest = compose([p for j, p in enumerate(prompts) if j != i])
            chains, negatives = self._extract_prompts(prompts[i], rest)
            ext, d = self._dirac(y * gain, chains, negatives, [weights[i]] * 2, 1, s, gen, callback, "ensemble",
                                 part, parts)
            stems[i] = ext[0]
            calls, samples, part = calls + d["network_calls"], samples + d["network_samples"], part + 1
        window, overlap_n = self._window(s)
        settings = {**self._base_settings("ensemble", s, seed, window, overlap_n), "prompts": prompts,
                    "methods": dict(zip(prompts, methods, strict=True)), "choices_from": source, "guidance": weights,
                    "input_gain_db": round(20 * math.log10(gain), 3), "seconds": len(y) / self.sample_rate,
                    "network_calls": calls, "network_samples": samples,
                    "wall_seconds": round(time.perf_counter() - t0, 3)}
        out = {n: a / gain for n, a in zip(_unique(prompts), stems, strict=True)}
        self._add_warnings(settings)
        return Result(out, y, self.sample_rate, settings)


class MSDMPipeline(BasePipeline):
    """The MSDM baseline (Mariani et al., ICLR 2024): one unconditional network whose K channels
    are K fixed stems (`gmsdi.inference.msdm`). Same `Result`, levels, windows and settings as
    `GMSDIPipeline`, without prompts: the stems are the model's channels.

        pipe = MSDMPipeline.from_pretrained("assets/msdm-synthslakh.safetensors")
        parts = pipe.separate("mix.wav", seed=0)           # bass, drums, guitar, piano; sum = mix
        song = pipe.generate(seconds=4, seed=0)
        band = pipe.accompany({"bass": "bass.wav"}, seed=0)

    Args:
        model: the EDM denoiser with `model_config.unet.in_channels == len(stems)`.
        stems: the names of the channels, in order (a checkpoint written by `train.py --export`
            stores them).
        device, mixed_precision: as `GMSDIPipeline`.
        mix_peak: the peak an input mixture is scaled to (`MIX_PEAK`; see the module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        stems: Sequence[str] = PAPER_STEMS,
        device: torch.device | str | None = None,
        mixed_precision: bool | None = None,
        mix_peak: float = MIX_PEAK,
    ) -> None:
        super().__init__(model, device, mixed_precision)
        self.stems = _check_prompts(list(stems), "stems")
        if self.config.unet.in_channels != len(self.stems):
            raise ValueError(f"the model has {self.config.unet.in_channels} channels but {len(self.stems)} stem names "
                             f"were given ({self.stems}); an MSDM model needs one name per channel")
        self.mix_peak = float(mix_peak)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        device: torch.device | str | None = None,
        mixed_precision: bool | None = None,
    ) -> MSDMPipeline:
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
        model = load_model(path)
        pipe = cls(model, stems.split(",") if stems else PAPER_STEMS, device=device, mixed_precision=mixed_precision)
        pipe.checkpoint = str(path)
        return pipe

    def _denoiser(self) -> JointDenoiser:
        return JointDenoiser(self.model, self.autocast_dtype)

    def separate(
        self,
        mix: AudioSource,
        *,
        constrained: int | str | None = None,
        dirac: str | None = None,
        sample_rate: int | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        s_churn: float | None = None,
        resamples: int | None = None,
        window_seconds: float | None = None,
        overlap: float | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """MSDM's Dirac separator (METHOD.md §3.3 with the joint score): one stem per channel, summing
        exactly to `mix`. Arguments as `GMSDIPipeline.separate` (defaults from `SEPARATION`)."""
        s = self._settings(MSDM_SEPARATION, constrained=constrained, dirac=dirac, steps=steps, sampler=sampler,
                           s_churn=s_churn,
                           resamples=resamples, window_seconds=window_seconds, overlap=overlap, sigma_min=sigma_min,
                           sigma_max=sigma_max)
        c = self._constrained(s.constrained, self.stems)
        y = self._load(mix, sample_rate, "mix")
        gain = self.mix_peak / audio_io.peak(y)
        gen, seed = self._generator(seed, generator)
        window, overlap_n = self._window(s)
        sigmas = self._sigmas(s)
        denoiser = self._denoiser()
        k = len(self.stems)
        self._check_dirac(s, k)
        chains = _sampled_chains(self.stems, c, s.dirac)
        n_chunks = 1 if len(y) <= window else len(chunk_starts(len(y), window, overlap_n))
        chunk = iter(range(n_chunks))
        t0 = time.perf_counter()

        def run(segment: torch.Tensor) -> torch.Tensor:
            j = next(chunk)
            cb = self._part_callback(callback, j, n_chunks, {"task": "separate", "chunk": j, "chunks": n_chunks,
                                                             "chains": chains})
            return msdm_separate(denoiser, segment, k, sigmas, constrained=c, dirac=s.dirac, sampler=s.sampler,
                                 s_churn=s.s_churn, resamples=s.resamples, callback=cb, generator=gen)

        x = torch.from_numpy(y * gain).to(self.device)[None]
        out = overlap_add(run, x, window, overlap_n, self.length_multiple)[0].float()
        out = keep_silence(out, x[0].float(), self.sample_rate).cpu().numpy()
        settings = {**self._base_settings("separate", s, seed, window, overlap_n), "model": "msdm",
                    "prompts": self.stems, "constrained": self.stems[c] if s.dirac == "constrained" else None,
                    "input_gain_db": round(20 * math.log10(gain), 3), "seconds": len(y) / self.sample_rate,
                    "chunks": n_chunks, "network_calls": denoiser.calls, "network_rows": denoiser.rows,
                    "network_samples": denoiser.samples, "wall_seconds": round(time.perf_counter() - t0, 3)}
        return Result(dict(zip(self.stems, out / gain, strict=True)), y, self.sample_rate, settings)

    def _joint(self, locked: dict[int, np.ndarray], length: int, s: Settings, generator: torch.Generator,
               callback: Callback | None, task: str) -> tuple[np.ndarray, dict[str, Any]]:
        """All K channels, window by window (`continuation_spans`); `locked` channel -> [T] at model level."""
        k = len(self.stems)
        denoiser = self._denoiser()
        window, overlap = self._window(s)
        spans = continuation_spans(length, window, overlap, self.length_multiple)
        total = spans[-1][1]
        out = torch.zeros(1, k, total, device=self.device)
        fixed = torch.zeros(1, k, total, device=self.device)
        for i, a in locked.items():
            fixed[0, i, : len(a)] = torch.from_numpy(a).to(self.device)
        is_locked = torch.zeros(k, dtype=torch.bool, device=self.device)
        is_locked[list(locked)] = True
        sigmas = self._sigmas(s)
        for j, (a, b) in enumerate(spans):
            w = b - a
            known = torch.where(is_locked[None, :, None], fixed[:, :, a:b], torch.zeros(1, k, w, device=self.device))
            mask = is_locked[None, :, None].expand(1, k, w).clone()
            if j > 0 and overlap > 0:
                known[:, ~is_locked, :overlap] = out[:, ~is_locked, a:a + overlap]
                mask[:, :, :overlap] = True
            any_known = bool(mask.any())
            cb = self._part_callback(callback, j, len(spans), {"task": task, "chunk": j, "chunks": len(spans),
                                                               "chains": self.stems})
            out[:, :, a:b] = msdm_generate(denoiser, k, w, sigmas, known=known if any_known else None,
                                           mask=mask if any_known else None, locked_noise=s.locked_noise,
                                           sampler=s.sampler, s_churn=s.s_churn, resamples=s.resamples, callback=cb,
                                           generator=generator, device=self.device)
        details = {"model": "msdm", "chunks": len(spans), "network_calls": denoiser.calls,
                   "network_rows": denoiser.rows, "network_samples": denoiser.samples}
        return out[0, :, :length].float().cpu().numpy(), details

    def generate(
        self,
        *,
        seconds: float = 4.0,
        steps: int | None = None,
        sampler: str | None = None,
        s_churn: float | None = None,
        resamples: int | None = None,
        window_seconds: float | None = None,
        overlap: float | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """All K stems sampled jointly; mix = their sum. Arguments as `GMSDIPipeline.generate`
        (defaults from `GENERATION`)."""
        s = self._settings(MSDM_GENERATION, steps=steps, sampler=sampler, s_churn=s_churn, resamples=resamples,
                           window_seconds=window_seconds, overlap=overlap, sigma_min=sigma_min, sigma_max=sigma_max)
        length = self._samples(seconds)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        out, details = self._joint({}, length, s, gen, callback, "generate")
        window, overlap_n = self._window(s)
        settings = {**self._base_settings("generate", s, seed, window, overlap_n), "prompts": self.stems,
                    "seconds": length / self.sample_rate, **details,
                    "wall_seconds": round(time.perf_counter() - t0, 3)}
        return Result(dict(zip(self.stems, out, strict=True)), out.sum(axis=0), self.sample_rate, settings)

    def accompany(
        self,
        locked: Mapping[str, AudioSource],
        *,
        silent: Sequence[str] = (),
        sample_rate: int | None = None,
        locked_noise: str | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        s_churn: float | None = None,
        resamples: int | None = None,
        window_seconds: float | None = None,
        overlap: float | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Result:
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
        s = self._settings(MSDM_GENERATION, locked_noise=locked_noise, steps=steps, sampler=sampler, s_churn=s_churn,
                           resamples=resamples, window_seconds=window_seconds, overlap=overlap, sigma_min=sigma_min,
                           sigma_max=sigma_max)
        arrays = {self.stems.index(n): self._load(src, sample_rate, f"locked stem {n!r}") for n, src in locked.items()}
        length = max(len(a) for a in arrays.values())
        total = np.zeros(length, dtype=np.float32)
        for a in arrays.values():
            total[: len(a)] += a
        gain = self.mix_peak * math.sqrt(len(arrays) / len(self.stems)) / max(audio_io.peak(total),
                                                                              audio_io.SILENCE_PEAK)
        gen, seed = self._generator(seed, generator)
        t0 = time.perf_counter()
        zeros = {self.stems.index(n): np.zeros(length, dtype=np.float32) for n in silent}
        out, details = self._joint({**{i: a * gain for i, a in arrays.items()}, **zeros}, length, s, gen, callback,
                                   "accompany")
        out = out / gain
        for i, a in [*arrays.items(), *zeros.items()]:  # exactly the input, not the round trip through the gain
            out[i] = 0.0
            out[i, : len(a)] = a
        window, overlap_n = self._window(s)
        settings = {**self._base_settings("accompany", s, seed, window, overlap_n), "prompts": self.stems,
                    "locked": [self.stems[i] for i in sorted(arrays)], "silent": silent,
                    "input_gain_db": round(20 * math.log10(gain), 3),
                    "seconds": length / self.sample_rate, **details,
                    "wall_seconds": round(time.perf_counter() - t0, 3)}
        return Result(dict(zip(self.stems, out, strict=True)), out.sum(axis=0), self.sample_rate, settings)


# MSDM is unconditional: no guidance (1 = off); otherwise the GMSDI defaults.
MSDM_GENERATION = dataclasses.replace(GENERATION, guidance=1.0)
MSDM_SEPARATION = dataclasses.replace(SEPARATION, guidance=1.0)

__all__ = ["BUNDLED_CHECKPOINT", "GENERATION", "MAX_SECONDS", "MAX_STEMS", "MAX_STEPS", "MIX_PEAK", "MSDM_GENERATION",
           "MSDM_SEPARATION", "SEPARATION", "BasePipeline", "GMSDIPipeline", "MSDMPipeline", "Result", "Settings"]
