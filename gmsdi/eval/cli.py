"""`python -m gmsdi.eval`: the evaluation, one subcommand per table of docs/RESULTS.md.

    python -m gmsdi.eval separation --method gmsdi-separator msdm irm mixture   # SI-SDRi, MSDM protocol
    python -m gmsdi.eval fad --task generation accompaniment single-source      # FAD, sub-FAD, ablation
    python -m gmsdi.eval sweep                                                  # γ_x / γ_y sweep
    python -m gmsdi.eval steps                                                  # steps vs quality
    python -m gmsdi.eval ensemble-choice                                        # writes assets/ensemble.json
    python -m gmsdi.eval sensitivity                                            # wrong ÷ own prompt error
    python -m gmsdi.eval retrieval                                              # the contrastive encoder
    python -m gmsdi.eval instruments --train --models gmsdi                     # does a stem sound like its prompt?
    python -m gmsdi.eval report                                                 # docs/RESULTS.md + plots
    python -m gmsdi.eval compare A.json B.json                                  # paired B − A, per window

Every subcommand writes a JSON file into --results (default benchmarks/results/eval/) with the
command that made it, the checkpoint's sha256, the data set, the split and its size; `report`
turns them into docs/RESULTS.md. A method whose checkpoint is missing is skipped with a note and
reported as "not trained yet". `--quick` runs on a couple of windows with a tiny untrained model
built in code and few steps (the test suite uses it); its results go to runs/eval-quick/ unless
--results says otherwise, and its report to runs/eval-quick/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gmsdi.cli_common as cli_args  # noqa: E402  (light; after the offline switches, as all gmsdi imports)
from gmsdi.eval.records import QUICK_RESULTS, RESULTS, STEMS  # noqa: E402


def _common(p: argparse.ArgumentParser, split: str = "test") -> None:
    p.add_argument("--data", default="data/synthslakh", help="a Slakh-format data set (default data/synthslakh)")
    p.add_argument("--split", default=split, help=f"the split to evaluate on (default {split})")
    p.add_argument("--stems", nargs="+", default=list(STEMS), help="the stem classes (default bass drums guitar piano)")
    p.add_argument("--results", type=Path, default=None,
                   help=f"where result JSON files go (default {RESULTS}; {QUICK_RESULTS} with --quick)")
    p.add_argument("--checkpoint", nargs="*", default=[], metavar="MODEL=PATH",
                   help="checkpoint of a model (gmsdi, msdm, weak-msdm); default its file in assets/")
    p.add_argument("--quick", action="store_true",
                   help="a couple of windows, a tiny untrained model built in code, few steps (a smoke test)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default torch's)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def get_parser() -> argparse.ArgumentParser:
    """The `python -m gmsdi.eval` argument parser."""
    from gmsdi.eval.methods import MODELS, SEPARATION_METHODS
    from gmsdi.eval.runner import SINGLE_SOURCE_VARIANTS

    fmt = argparse.RawDescriptionHelpFormatter
    parser = cli_args.Parser(prog="python -m gmsdi.eval", description=__doc__.split("\n\n")[0], epilog=__doc__,
                     formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("separation", help="SI-SDRi of separation methods (MSDM protocol)", formatter_class=fmt)
    p.add_argument("--method", nargs="+", default=[m for m in SEPARATION_METHODS if m != "gmsdi-ensemble"],
                   choices=list(SEPARATION_METHODS),
                   help="methods to run (default all but gmsdi-ensemble, which the report derives from the "
                        "separator's and extractor's windows and assets/ensemble.json; name it to run it)")
    p.add_argument("--tracks", type=int, default=None, help="this many tracks spread over the split (default all)")
    p.add_argument("--max-chunks", type=int, default=None, help="at most this many chunks per track (default all)")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="chunk of the references irm / mixture (default: the GMSDI window, else 2.048 s)")
    p.add_argument("--tag", default="", help="suffix of the result file, for variants (e.g. w1)")
    p.add_argument("--ensemble-results", default=None, help="ensemble choice file (default assets/ensemble.json)")
    p.add_argument("--irm-n-fft", type=int, default=1024, help="IRM STFT size in samples (default 1024)")
    p.add_argument("--irm-hop", type=int, default=256, help="IRM STFT hop in samples (default 256)")
    p.add_argument("--irm-power", type=float, default=1.0, help="IRM mask exponent (1 magnitude, 2 power)")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or write per-track scores")
    cli_args.add_sampling_flags(p, per_stem_guidance=False)
    cli_args.add_dirac_flag(p)
    _common(p)

    p = sub.add_parser("fad", help="FAD of generation, sub-FAD of accompaniment, single-source FAD",
                       formatter_class=fmt)
    p.add_argument("--task", nargs="+", default=["reference", "generation", "accompaniment", "single-source"],
                   choices=["reference", "generation", "accompaniment", "single-source"],
                   help="which FADs (default all); reference: real held-out clips and level-matched noise, "
                        "scored with --clips clips like a model, to read the other numbers against")
    p.add_argument("--reference-split", default="validation",
                   help="the held-out split of the reference sets (default validation)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), help="default all")
    p.add_argument("--clips", type=int, default=128,
                   help="generated clips per set (default 128: 256 patches of 6 s clips, > 200 dimensions)")
    p.add_argument("--seconds", type=float, default=6.0,
                   help="clip length (default 6 s = two 3 s musicnn patches)")
    p.add_argument("--subsets", nargs="+", default=list(STEMS), metavar="STEM[+STEM]",
                   help="accompaniment: the generated stems of each sub-FAD, the others given "
                        "(default: each stem given the other three)")
    p.add_argument("--variants", nargs="+", default=list(SINGLE_SOURCE_VARIANTS),
                   choices=list(SINGLE_SOURCE_VARIANTS), help="single-source settings (default all)")
    p.add_argument("--real-tracks", type=int, default=None, help="tracks of the real sets (default all)")
    p.add_argument("--hop-frames", type=int, default=187,
                   help="musicnn patch hop in mel frames (default 187: 3 s patches without overlap)")
    cli_args.add_sampling_flags(p, per_stem_guidance=False)
    cli_args.add_coupling_flags(p)
    p.add_argument("--negative", nargs="+", default=None, metavar="PROMPT",
                   help="generation: one negative prompt per stem, in order ('-' = the default, the other stems' "
                        "prompts; '' = none, guidance against the unconditional model)")
    p.add_argument("--tag", default="", help="suffix of the result files, for variants (e.g. --tag=-wiener)")
    _common(p)

    p = sub.add_parser("sweep", help="γ_x / γ_y sweep: mixture consistency and FAD", formatter_class=fmt)
    p.add_argument("--model", default="gmsdi", choices=[m for m, s in MODELS.items() if s.kind == "gmsdi"])
    p.add_argument("--gammas", nargs="+", type=float, default=[0.5, 1.0, 2.0, 4.0, math.inf],
                   help="relative γ values (γ = g·σ; inf = uncoupled); default 0.5 1 2 4 inf")
    p.add_argument("--axes", nargs="+", default=["x", "y"], choices=["x", "y", "both"],
                   help="vary γ_x (γ_y default), γ_y (γ_x default), or both together (default x y)")
    p.add_argument("--clips", type=int, default=64, help="generated clips per setting (default 64)")
    p.add_argument("--seconds", type=float, default=6.0, help="clip length (default 6 s)")
    p.add_argument("--real-tracks", type=int, default=None, help="tracks of the real set (default all)")
    p.add_argument("--hop-frames", type=int, default=47,
                   help="musicnn patch hop in mel frames (default 47: 4 overlapping patches per 6 s clip, "
                        "so that 64 clips give more patches than the 200 dimensions)")
    cli_args.add_sampling_flags(p, per_stem_guidance=False)
    _common(p)

    p = sub.add_parser("steps", help="steps vs separation quality (and time)", formatter_class=fmt)
    p.add_argument("--method", nargs="+", default=["gmsdi-separator", "msdm"], choices=list(SEPARATION_METHODS),
                   help="default gmsdi-separator msdm")
    p.add_argument("--steps-list", nargs="+", type=int, default=[4, 8, 16, 32, 64, 128], help="step counts")
    p.add_argument("--tracks", type=int, default=10, help="tracks spread over the split (default 10)")
    p.add_argument("--max-chunks", type=int, default=None, help="chunks per track (default all)")
    p.add_argument("--sampler", default=None, help="default: the pipeline's")
    p.add_argument("--churn", type=float, default=None, dest="s_churn")
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--tag", default="", help="suffix of the result file, for variants (e.g. projected)")
    cli_args.add_dirac_flag(p)
    _common(p)

    p = sub.add_parser("ensemble-choice", help="per stem, separator or extractor, chosen on validation",
                       formatter_class=fmt)
    p.add_argument("--tracks", type=int, default=None, help="validation tracks (default all)")
    p.add_argument("--max-chunks", type=int, default=None, help="chunks per track (default all)")
    p.add_argument("--out", type=Path, default=None,
                   help="the file GMSDIPipeline.ensemble reads (default assets/ensemble.json; "
                        f"{QUICK_RESULTS}/ensemble.json with --quick)")
    cli_args.add_sampling_flags(p, per_stem_guidance=False)
    cli_args.add_dirac_flag(p)
    _common(p, split="validation")

    p = sub.add_parser("sensitivity", help="prompt sensitivity on isolated test stems (wrong ÷ own prompt error)",
                       formatter_class=fmt)
    p.add_argument("--models", nargs="*", default=[m for m, s in MODELS.items() if s.kind == "gmsdi"],
                   choices=[m for m, s in MODELS.items() if s.kind == "gmsdi"],
                   help="the text-conditioned models (default all; none: only the reference)")
    p.add_argument("--items", type=int, default=96, help="isolated stems (default 96)")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                   help="also the reference row: a Wiener filter per class from the class's mean spectrum")
    p.add_argument("--spectra-split", default="validation",
                   help="where the reference's class spectra come from (default validation)")
    _common(p)

    p = sub.add_parser("retrieval", help="the contrastive encoder: text/audio retrieval and zero-shot presence",
                       formatter_class=fmt)
    p.add_argument("--encoder", type=Path, default=None,
                   help="a contrastive encoder checkpoint (default assets/contrastive-synthslakh.safetensors)")
    p.add_argument("--crops", type=int, default=1000, help="random 2.048 s crops per split (default 1000)")
    p.add_argument("--fit-split", default="validation",
                   help="split the presence thresholds are fitted on (default validation)")
    _common(p)

    p = sub.add_parser("instruments", help="instrument probe: does each generated stem sound like its prompt?",
                       formatter_class=fmt)
    p.add_argument("--train", action="store_true",
                   help="fit the probe on isolated training stems first (writes --probe) and score it on the "
                        "--split's isolated stems")
    p.add_argument("--probe", type=Path, default=None,
                   help="the probe file (default assets/instrument-probe.safetensors; --quick: in --results)")
    p.add_argument("--models", nargs="*", default=[], choices=list(MODELS),
                   help="generate four-stem songs (--stems as prompts) with these models and classify each stem")
    p.add_argument("--files", nargs="*", default=[], metavar="FILE=CLASS",
                   help="classify audio files, each against the instrument it should sound like")
    p.add_argument("--clips", type=int, default=8, help="songs generated per model (default 8)")
    p.add_argument("--seconds", type=float, default=4.0, help="song length in seconds (default 4)")
    p.add_argument("--prompts", nargs="+", default=None, metavar="PROMPT",
                   help="--models: the prompt of each of the --stems, in order, e.g. \"electric bass\" \"drum kit\" "
                        "\"acoustic guitar\" \"grand piano\" (default the stem classes' names)")
    p.add_argument("--negative", nargs="+", default=None, metavar="PROMPT",
                   help="--models: one negative prompt per stem, in order ('-' = the default, the other stems' "
                        "prompts; '' = none, guidance against the unconditional model)")
    p.add_argument("--noise-crops", type=int, default=0,
                   help="--train: crops of an extra class for what is not an instrument (coloured noise, and "
                        "windows of --noise-files); 0 = no such class")
    p.add_argument("--noise-files", nargs="*", type=Path, default=[],
                   help="--train: model outputs that are noise, for the not-an-instrument class")
    p.add_argument("--test-crops", type=int, default=1000,
                   help="isolated --split crops the trained probe is scored on (default 1000)")
    p.add_argument("--tag", default="", help="suffix of the result files, for variants")
    cli_args.add_sampling_flags(p, per_stem_guidance=False)
    cli_args.add_coupling_flags(p)
    _common(p)

    p = sub.add_parser("report", help="docs/RESULTS.md and its plots from the result files", formatter_class=fmt)
    p.add_argument("--results", type=Path, default=None, help=f"result JSON folder (default {RESULTS})")
    p.add_argument("--out", type=Path, default=None, help="default docs/RESULTS.md (--quick: runs/eval-quick/)")
    p.add_argument("--plots", type=Path, default=None, help="plot folder (default docs/results/)")
    p.add_argument("--quick", action="store_true", help="write the quick report (runs/eval-quick/)")

    p = sub.add_parser("compare", help="paired per-window SI-SDRi difference of two separation records (B − A)",
                       formatter_class=fmt)
    p.add_argument("a", type=Path, help="separation record A (a JSON file the separation command wrote)")
    p.add_argument("b", type=Path, help="separation record B, run over the same split, tracks and chunks")
    return parser





def main(argv: Sequence[str] | None = None) -> int:
    """Runs a subcommand; 0 ok, 2 bad input, 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)

    def report(paths: list[Path]) -> None:
        for p in paths:
            print(f"wrote {p}")

    from gmsdi.eval.commands import COMMANDS

    return cli_args.run(lambda: COMMANDS[args.command](args, argv), report)


__all__ = ["get_parser", "main"]
