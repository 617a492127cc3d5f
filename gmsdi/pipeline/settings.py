"""Sampling settings, their limits and defaults: the one place a setting is checked.

`Settings` checks every field when it is built (also by `dataclasses.replace`), so a value that
gets past it is valid everywhere below. The app's slider ranges and the CLI's flags read the same
constants. Checks that need the model (the σ range, Dirac step counts, γ stability) run in the
engine, once per task.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gmsdi.inference.constraints import DIRAC_MODES, GAMMA_MODES, LOCKED_NOISE, check_coupling_sigma_min
from gmsdi.sampling.samplers import SAMPLERS

MAX_STEMS = 8
MAX_SECONDS = 600.0
# Shortest input clip (a mix or a locked stem): one beat at 120 BPM. Training counted an instrument
# as playing in a crop only with 0.25 s of notes, so a shorter clip may not hold one instrument note.
MIN_INPUT_SECONDS = 0.5
MAX_STEPS = 1000
MAX_RESAMPLES = 10
GUIDANCE_RANGE = (0.0, 20.0)  # 1 = no guidance
CHURN_RANGE = (0.0, 100.0)
MIX_PEAK = 0.5  # an input mix is scaled to this peak (the median of the training crops)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any, name: str, low: int, high: int, what: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low}{what} to {high}, got {value!r}")


def check_guidance(value: Any, name: str = "guidance") -> float:
    """One guidance weight in `GUIDANCE_RANGE` (1 = off); returns it as a float."""
    lo, hi = GUIDANCE_RANGE
    if not _number(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a finite number from {lo:g} to {hi:g} (1 = no guidance), got {value!r}")
    return float(value)


def check_gamma(value: Any, name: str) -> float:
    """A γ of Eq. (2): positive; `math.inf` switches that side of the coupling off."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not value > 0:
        raise ValueError(f"{name} must be positive (or inf to switch the coupling off), got {value!r}")
    return float(value)


def _choice(value: Any, name: str, valid: Any) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid names are {sorted(valid)}")


@dataclass(frozen=True)
class Settings:
    """Sampling settings of a task; `GENERATION` and `SEPARATION` hold the defaults.

    Attributes:
        sampler: "heun" or "euler" (`gmsdi.sampling.SAMPLERS`).
        steps: number of σ steps (Karras schedule), 1..`MAX_STEPS`.
        s_churn: stochastic churn (Karras Alg. 2), in `CHURN_RANGE`; 0 = deterministic.
        s_tmin: the churn applies at σ ≥ s_tmin only (Karras S_tmin); 0 = at every step.
        resamples: passes per step (MSDM's correction re-sampling; 1 = none), 1..`MAX_RESAMPLES`.
        guidance: negative-prompt guidance weight w, one for all stems or one per stem, in
            `GUIDANCE_RANGE` (1 = off).
        mix_guidance: guidance weight of the mixture chain against the null prompt (1 = off).
        guidance_sigma_min, guidance_sigma_max: guidance applies at guidance_sigma_min ≤ σ ≤
            guidance_sigma_max only (None: no upper bound); elsewhere the stems take their positive
            prompt's estimate and no negative pass is made (`GuidedDenoiser`).
        gamma_x, gamma_y: the likelihood widths of Eq. (2), one for all stems; None = √(G+1) in
            the relative and denoised modes (G generated stems), which closes the mix-vs-sum residual
            (`MixtureCoupling`). `math.inf` = no coupling.
        gamma_mode: "wiener" (the chains' denoised estimates projected onto mix = Σ stems, the
            residual shared by each chain's power per time-frequency bin; takes no γ), "denoised"
            (the same with equal shares, γ = g·σ), "relative" (γ = g·σ on the noisy states, Eq. 2
            as written) or "absolute" (Eq. 2, γ in waveform units). See `MixtureCoupling`.
        coupling_sigma_min: the chains are coupled at σ ≥ this only and run uncoupled below it
            (`MixtureCoupling.sigma_min`); 0 = coupled at every step.
        locked_noise: "fixed" or "fresh" ε for locked stems and context (`KnownValues`).
        sigma_min, sigma_max: the σ range; None = the model's (`EDMConfig`).
        rho: Karras schedule exponent.
        window_seconds: model window in seconds; None = the model's (`ModelConfig.window_samples`).
        overlap: fraction of the window shared by neighbouring windows, in [0, 1).
        constrained: the Dirac separator's constrained stem (index or name); None = the last.
        dirac: "constrained" (MSDM, METHOD.md §3.3: one stem is the mix minus the others) or
            "projected" (all stems on the plane Σx = y; `ProjectedDirac`).
        negative_exclude: (class, other) stem-class pairs for the default negative prompts: a
            stem whose prompt names `class` leaves out of its negative the other stems' prompts
            that name `other` (`default_negative_prompts`). Negatives a user gives are used as given.
    """

    sampler: str
    steps: int
    s_churn: float = 0.0
    s_tmin: float = 0.0
    resamples: int = 1
    guidance: float | tuple[float, ...] = 2.0
    mix_guidance: float = 1.0
    guidance_sigma_min: float = 0.0
    guidance_sigma_max: float | None = None
    gamma_x: float | None = None
    gamma_y: float | None = None
    gamma_mode: str = "relative"
    coupling_sigma_min: float = 0.0
    locked_noise: str = "fixed"
    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float = 7.0
    window_seconds: float | None = None
    overlap: float = 0.25
    constrained: int | str | None = None
    dirac: str = "constrained"
    negative_exclude: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _choice(self.sampler, "sampler", SAMPLERS)
        _whole(self.steps, "steps", 1, MAX_STEPS)
        _whole(self.resamples, "resamples", 1, MAX_RESAMPLES, " (no correction)")
        lo, hi = CHURN_RANGE
        if not _number(self.s_churn) or not lo <= self.s_churn <= hi:
            raise ValueError(f"s_churn must be a number from {lo:g} to {hi:g}, got {self.s_churn!r}")
        if not _number(self.s_tmin) or self.s_tmin < 0:
            raise ValueError(f"s_tmin must be a number ≥ 0 (the σ below which the churn stops; 0 = churn at every "
                             f"step), got {self.s_tmin!r}")
        weights = [self.guidance] if isinstance(self.guidance, (int, float)) else self.guidance
        if isinstance(weights, str) or not hasattr(weights, "__iter__"):
            raise ValueError(f"guidance must be a number or one number per stem, got {self.guidance!r}")
        for w in weights:
            check_guidance(w)
        check_guidance(self.mix_guidance, "mix_guidance")
        if not _number(self.guidance_sigma_min) or self.guidance_sigma_min < 0:
            raise ValueError(f"guidance_sigma_min must be a number ≥ 0 (0 = guide down to the last step), got "
                             f"{self.guidance_sigma_min!r}")
        if self.guidance_sigma_max is not None and not (_number(self.guidance_sigma_max)
                                                        and self.guidance_sigma_max >= self.guidance_sigma_min):
            raise ValueError(f"guidance_sigma_max must be a number ≥ guidance_sigma_min ({self.guidance_sigma_min:g}),"
                             f" or None for no upper bound, got {self.guidance_sigma_max!r}")
        for name in ("gamma_x", "gamma_y"):
            if getattr(self, name) is not None:
                check_gamma(getattr(self, name), name)
        _choice(self.gamma_mode, "gamma mode", GAMMA_MODES)
        if self.gamma_mode == "wiener" and (self.gamma_x is not None or self.gamma_y is not None):
            raise ValueError("gamma_mode='wiener' shares the residual by each stem's power and takes no gamma_x / "
                             "gamma_y; leave them out, or use gamma_mode='denoised' for an equal split set by γ")
        check_coupling_sigma_min(self.coupling_sigma_min)
        _choice(self.locked_noise, "locked noise", LOCKED_NOISE)
        _choice(self.dirac, "dirac form", DIRAC_MODES)
        if self.dirac == "projected" and self.constrained is not None:
            raise ValueError(f"constrained={self.constrained!r} names the stem that MSDM's form sets to the mix minus "
                             "the others; the projected form has none: leave constrained out, or use "
                             "dirac='constrained'")
        for name in ("sigma_min", "sigma_max", "window_seconds"):
            value = getattr(self, name)
            if value is not None and not (_number(value) and value > 0):
                raise ValueError(f"{name} must be a positive number (or None for the model's), got {value!r}")
        if not _number(self.rho) or self.rho <= 0:
            raise ValueError(f"rho must be a positive number, got {self.rho!r}")
        if not _number(self.overlap) or not 0 <= self.overlap < 1:
            raise ValueError(f"overlap is a fraction of the window in [0, 1), got {self.overlap!r}")
        def word(w: Any) -> bool:
            return isinstance(w, str) and bool(w) and w == w.strip()

        if not isinstance(self.negative_exclude, tuple) or not all(
                isinstance(pair, tuple) and len(pair) == 2 and all(map(word, pair)) for pair in self.negative_exclude):
            raise ValueError("negative_exclude must be a tuple of (word, other) pairs of non-empty strings without "
                             "outer spaces, e.g. "
                             f"(('bass', 'piano'),), got {self.negative_exclude!r}")

    def replace(self, **overrides: Any) -> Settings:
        """A copy with the overrides that are not None; an unknown name is a TypeError listing the valid ones."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = sorted(f.name for f in dataclasses.fields(self))
            raise TypeError(f"unknown setting(s) {unknown}; valid names are {valid}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def weights(self, n: int) -> list[float]:
        """The guidance weight of each of `n` stems (a single weight applies to all)."""
        if _number(self.guidance):
            return [float(self.guidance)] * n
        weights = [float(w) for w in self.guidance]
        if len(weights) != n:
            raise ValueError(f"guidance needs one value per stem ({n}), got {len(weights)}; give one number for all "
                             "stems or one per stem")
        return weights


# Step counts: a real-time factor of about 4 for 4 s of 4 stems on a 2-core CPU (README, benchmarks/speed.py).
# Generation couples the chains on their denoised estimates with guidance 3 (session 11 "sampler"), at
# σ ≥ 0.1 only: below it the residual is detail no stem explains, and sharing it wrote broadband hiss
# into every stem. On the bundled model that took the instrument probe from 0.625 to 0.938 of stems named
# as their prompt, and four-stem FAD from 41.5 to 48.1 (train/RUNS.md, session 13).
# A bass's default negative without the pitched stems whose partials overlap its own: against "drums, guitar,
# piano" the guidance pushed away the bass's partials above 500 Hz; against "drums" it kept them to about
# 1.5 kHz (on `emph`: tf contrast 5.78 -> 6.95 dB, four-stem FAD 44.87 -> 44.37; train/RUNS.md, sessions 26-27).
# Not yet GENERATION's default: it becomes that with the model it was measured on.
BASS_NEGATIVE_EXCLUDE: tuple[tuple[str, str], ...] = (("bass", "guitar"), ("bass", "piano"))
GENERATION = Settings(sampler="heun", steps=32, s_churn=0.0, guidance=3.0, gamma_mode="denoised",
                      coupling_sigma_min=0.1)
SEPARATION = Settings(sampler="euler", steps=64, s_churn=20.0, guidance=2.0)
# MSDM is unconditional: no guidance (1 = off); otherwise the GMSDI defaults.
MSDM_GENERATION = dataclasses.replace(GENERATION, guidance=1.0)
MSDM_SEPARATION = dataclasses.replace(SEPARATION, guidance=1.0)

__all__ = ["BASS_NEGATIVE_EXCLUDE", "CHURN_RANGE", "GENERATION", "GUIDANCE_RANGE", "MAX_RESAMPLES", "MAX_SECONDS",
           "MAX_STEMS", "MIN_INPUT_SECONDS", "MAX_STEPS", "MIX_PEAK", "MSDM_GENERATION", "MSDM_SEPARATION",
           "SEPARATION", "Settings", "check_gamma", "check_guidance"]
