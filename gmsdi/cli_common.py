"""What `python -m gmsdi` and `python -m gmsdi.eval` share: the parser, the sampling flags, the error handling.

The flags' ranges and defaults come from `gmsdi.pipeline.settings`; the values are checked
once, by `Settings`, when the pipeline builds it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

SAMPLING_KEYS = ("steps", "sampler", "s_churn", "resamples", "guidance")


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line `error: ...` and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def threads_arg(value: str) -> int | None:
    """argparse type of --threads: a whole number >= 1, or "auto" (None)."""
    from gmsdi.runtime import parse_threads

    try:
        return parse_threads(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def negatives_arg(values: Sequence[str] | None) -> list[str | None] | None:
    """`--negative` values as the pipeline takes them: "-" keeps a stem's default (None), "" is no
    negative prompt (guidance against the unconditional model); no option at all is None."""
    return None if values is None else [None if v == "-" else v for v in values]


def _weights(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"guidance takes a number or numbers joined by commas (5 or 5,5,2), "
                                         f"got {text!r}") from None


def add_sampling_flags(p: argparse.ArgumentParser, defaults: Any = None, per_stem_guidance: bool = True) -> None:
    """--steps, --sampler, --churn, --churn-sigma-min, --resamples, --guidance, --guidance-sigma-min/-max
    (dest: the `Settings` field names).

    Args:
        defaults: a `Settings` whose values the help quotes; None says "the pipeline's".
        per_stem_guidance: --guidance takes W or W,W,... (one per stem); else one number.
    """
    from gmsdi.pipeline.settings import GUIDANCE_RANGE, MAX_RESAMPLES, MAX_STEPS
    from gmsdi.sampling import SAMPLERS

    def default(name: str) -> str:
        if defaults is None:
            return "the pipeline's"
        value = getattr(defaults, name)
        return f"{value:g}" if isinstance(value, float) else str(value)

    p.add_argument("--steps", type=int, default=None,
                   help=f"sampler steps, 1..{MAX_STEPS} (default {default('steps')})")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default=None, help=f"default {default('sampler')}")
    p.add_argument("--churn", type=float, default=None, dest="s_churn",
                   help=f"stochastic churn S_churn (default {default('s_churn')})")
    p.add_argument("--churn-sigma-min", type=float, default=None, dest="s_tmin", metavar="SIGMA",
                   help=f"churn at σ ≥ SIGMA only, Karras S_tmin (0 = at every step; default {default('s_tmin')})")
    p.add_argument("--resamples", type=int, default=None,
                   help=f"passes per step, MSDM correction, 1..{MAX_RESAMPLES} (default 1)")
    lo, hi = GUIDANCE_RANGE
    if per_stem_guidance:
        p.add_argument("--guidance", type=_weights, default=None, metavar="W[,W...]",
                       help=f"negative-prompt guidance weight in [{lo:g}, {hi:g}], 1 = off: one for all stems, or one "
                            f"per stem joined by commas, e.g. 5,5,2 (extract: one) (default {default('guidance')})")
    else:
        p.add_argument("--guidance", type=float, default=None,
                       help=f"negative-prompt guidance weight in [{lo:g}, {hi:g}] (default: the method's; 1 = off)")
    p.add_argument("--guidance-sigma-min", type=float, default=None, metavar="SIGMA",
                   help=f"guide at σ ≥ SIGMA only (0 = down to the last step; default "
                        f"{default('guidance_sigma_min')})")
    p.add_argument("--guidance-sigma-max", type=float, default=None, metavar="SIGMA",
                   help="guide at σ ≤ SIGMA only (default: no upper bound)")


def add_dirac_flag(p: argparse.ArgumentParser) -> None:
    """--dirac: the separator's form (`Settings.dirac`)."""
    from gmsdi.inference.constraints import DIRAC_MODES

    p.add_argument("--dirac", choices=list(DIRAC_MODES), default=None,
                   help="the separator's form: constrained (MSDM: one stem is the mix minus the others; default) or "
                        "projected (no stem singled out; does not diverge at any step count)")


def add_coupling_flags(p: argparse.ArgumentParser) -> None:
    """--gamma-mode and --coupling-sigma-min: how Eq. (2) couples the chains (`Settings`; None = the pipeline's)."""
    from gmsdi.inference.constraints import GAMMA_MODES

    p.add_argument("--gamma-mode", choices=list(GAMMA_MODES), default=None,
                   help="denoised: γ = g·σ on the chains' estimates; wiener: the estimates' residual shared by "
                        "each stem's power per time-frequency bin (no γ); relative: γ = g·σ on the noisy states "
                        "(Eq. 2); absolute: γ in waveform units")
    p.add_argument("--coupling-sigma-min", type=float, default=None, metavar="SIGMA",
                   help="couple the chains at σ ≥ SIGMA only, uncoupled below (0 = at every step; default: the "
                        "pipeline's)")


def sampling_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags as pipeline keywords (None = the pipeline's default); --dirac, --gamma-mode,
    --coupling-sigma-min, --churn-sigma-min and --guidance-sigma-min/-max where the command has them and they are
    given (absent, they keep older cache keys)."""
    out = {k: getattr(args, k, None) for k in SAMPLING_KEYS}
    for key in ("dirac", "gamma_mode", "coupling_sigma_min", "guidance_sigma_min", "guidance_sigma_max", "s_tmin"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    return out


def run(command: Callable[[], list[Any]], report: Callable[[list[Any]], None]) -> int:
    """Runs `command`; bad input prints one line `error: ...` (status 2), Ctrl+C status 130, else `report`."""
    try:
        paths = command()
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    report(paths)
    return 0


__all__ = ["SAMPLING_KEYS", "Parser", "add_coupling_flags", "add_dirac_flag", "add_sampling_flags", "negatives_arg",
           "run", "sampling_settings"]
