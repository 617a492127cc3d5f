"""Command line: a thin shell over `gmsdi.pipeline.GMSDIPipeline` (examples in `EXAMPLES`, and `--help`).

Each task writes stems/<name>.<format>, mix.<format> and settings.json into --out. Bad input prints
one line `error: ...` and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from gmsdi.cli_common import (
    Parser,
    add_coupling_flags,
    add_dirac_flag,
    add_sampling_flags,
    negatives_arg,
    run,
    sampling_settings,
    threads_arg,
)
from gmsdi.runtime import set_threads

EXAMPLES = """examples:
  python -m gmsdi generate bass drums piano --seconds 4 --seed 0 --out out/song
  python -m gmsdi accompany --locked bass=bass.wav --prompts drums piano --out out/band
  python -m gmsdi separate mix.wav --prompts bass drums guitar piano --out out/parts
  python -m gmsdi separate mix.wav --prompts bass drums guitar piano --dirac projected --steps 16 --out out/fast
  python -m gmsdi extract mix.wav --prompt bass --out out/bass
  python -m gmsdi ensemble mix.wav --prompts bass drums guitar piano --out out/best
"""


def _gamma(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"gamma must be positive or 'inf', got {text}")
    return value


def _add_common(p: argparse.ArgumentParser, defaults: Any) -> None:
    from gmsdi.audio import AUDIO_FORMATS

    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--format", default="wav", choices=sorted(AUDIO_FORMATS), help="audio format (default wav)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the bundled model)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: Accelerate chooses)")
    p.add_argument("--threads", type=threads_arg, default=None, metavar="N|auto",
                   help="CPU threads (default auto: the cores other processes leave free)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: drawn; saved in settings.json)")
    add_sampling_flags(p, defaults)
    p.add_argument("--window-seconds", type=float, default=None,
                   help="model window in seconds (default: the model's training window)")
    p.add_argument("--overlap", type=float, default=None, help="window overlap fraction (default 0.25)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_coupling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gamma-x", type=_gamma, default=None,
                   help="Eq. (2) width for the stems (default √(G+1) for G generated stems, relative)")
    p.add_argument("--gamma-y", type=_gamma, default=None, help="Eq. (2) width for the mixture (default √(G+1))")
    add_coupling_flags(p)
    p.add_argument("--mix-guidance", type=float, default=None, help="mixture chain guidance, 1 = off (default 1)")
    p.add_argument("--negative", nargs="+", default=None, metavar="PROMPT",
                   help="one negative prompt per generated stem ('-' = default: the other stems)")


def get_parser() -> argparse.ArgumentParser:
    """The `python -m gmsdi` argument parser."""
    from gmsdi.pipeline import GENERATION, SEPARATION

    parser = Parser(prog="python -m gmsdi", description="Generate, accompany, separate or extract music stems "
                     "with one text-conditioned diffusion model trained on mixtures (GMSDI).",
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("generate", help="generate stems and their mix", epilog=EXAMPLES, formatter_class=fmt)
    p.add_argument("prompts", nargs="+", help="one prompt per stem, e.g. bass drums piano")
    p.add_argument("--seconds", type=float, default=4.0, help="length in seconds (default 4)")
    _add_coupling(p)
    _add_common(p, GENERATION)

    p = sub.add_parser("accompany", help="generate stems that fit locked ones", epilog=EXAMPLES, formatter_class=fmt)
    p.add_argument("--locked", nargs="+", required=True, metavar="PROMPT=FILE",
                   help="stems to keep, e.g. bass=bass.wav")
    p.add_argument("--prompts", nargs="+", required=True, help="stems to generate")
    p.add_argument("--locked-noise", choices=["fixed", "fresh"], default=None, help="noise on locked stems")
    _add_coupling(p)
    _add_common(p, GENERATION)

    p = sub.add_parser("separate", help="separate a mix into named stems", epilog=EXAMPLES, formatter_class=fmt)
    p.add_argument("mix", help="the mixture (wav, flac, mp3, ...; stereo is downmixed)")
    p.add_argument("--prompts", nargs="+", required=True, help="the stems in the mix")
    p.add_argument("--constrained", default=None, help="the stem set to mix − others (default: the last)")
    add_dirac_flag(p)
    _add_common(p, SEPARATION)

    p = sub.add_parser("extract", help="extract one named stem from a mix", epilog=EXAMPLES, formatter_class=fmt)
    p.add_argument("mix", help="the mixture")
    p.add_argument("--prompt", required=True, help="the stem to extract, e.g. bass")
    p.add_argument("--rest", default=None, help="what else plays (default: 'not the target')")
    add_dirac_flag(p)
    _add_common(p, SEPARATION)

    p = sub.add_parser("ensemble", help="best of separator and extractor per stem", epilog=EXAMPLES,
                       formatter_class=fmt)
    p.add_argument("mix", help="the mixture")
    p.add_argument("--prompts", nargs="+", required=True, help="the stems in the mix")
    p.add_argument("--results", default=None, help="ensemble results JSON (default assets/ensemble.json)")
    add_dirac_flag(p)
    _add_common(p, SEPARATION)
    return parser


def _locked(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        prompt, sep, path = item.partition("=")
        if not sep or not prompt.strip() or not path:
            raise ValueError(f"--locked takes PROMPT=FILE, e.g. bass=bass.wav; got {item!r}")
        out[prompt.strip()] = path
    return out


class _Progress:
    """A tqdm bar in percent fed by the pipeline callback (progress is overall, in [0, 1])."""

    def __init__(self, disable: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=100, unit="%", disable=disable,
                        bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]")

    def __call__(self, info: dict) -> None:
        self.bar.set_description(f"{info.get('task', '')} {info.get('chunk', 0) + 1}/{info.get('chunks', 1)}")
        self.bar.update(100 * info["progress"] - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _run(args: argparse.Namespace) -> list[str]:
    from gmsdi.pipeline import GMSDIPipeline

    guidance = args.guidance[0] if args.guidance is not None and len(args.guidance) == 1 else args.guidance
    if isinstance(guidance, list):  # checked before the model loads
        n = 1 if args.task == "extract" else len(args.prompts)
        if len(guidance) != n:
            raise ValueError("extract takes one guidance weight" if args.task == "extract" else
                             f"--guidance takes one weight or one per stem ({n}), got {len(guidance)}")
    common = {**sampling_settings(args), "guidance": guidance, "window_seconds": args.window_seconds,
              "overlap": args.overlap, "seed": args.seed}
    if args.task in ("generate", "accompany"):
        negatives = negatives_arg(args.negative)
        common.update(gamma_x=args.gamma_x, gamma_y=args.gamma_y,
                      mix_guidance=args.mix_guidance, negative_prompts=negatives)
    locked = _locked(args.locked) if args.task == "accompany" else None
    pipe = GMSDIPipeline.from_pretrained(args.checkpoint, device=args.device)
    set_threads(args.threads)
    progress = _Progress(args.quiet)
    try:
        if args.task == "generate":
            result = pipe.generate(args.prompts, seconds=args.seconds, callback=progress, **common)
        elif args.task == "accompany":
            result = pipe.accompany(locked, args.prompts, locked_noise=args.locked_noise, callback=progress, **common)
        elif args.task == "separate":
            constrained = int(args.constrained) if args.constrained and args.constrained.isdigit() else args.constrained
            result = pipe.separate(args.mix, args.prompts, constrained=constrained, callback=progress, **common)
        elif args.task == "extract":
            result = pipe.extract(args.mix, args.prompt, args.rest, callback=progress, **common)
        else:
            result = pipe.ensemble(args.mix, args.prompts, results=args.results, callback=progress, **common)
    finally:
        progress.close()
    for warning in result.settings.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return [str(p) for p in result.save(args.out, format=args.format)]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    args = get_parser().parse_args(argv)

    def report(paths: list[str]) -> None:
        print(f"wrote {len(paths)} files to {args.out}: " + ", ".join(p.split("/")[-1] for p in paths))

    return run(lambda: _run(args), report)
