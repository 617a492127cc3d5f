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

Every subcommand writes a JSON file into --results (default benchmarks/results/eval/) with the
command that made it, the checkpoint's sha256, the data set, the split and its size; `report`
turns them into docs/RESULTS.md. A method whose checkpoint is missing is skipped with a note and
reported as "not trained yet". `--quick` runs on a couple of windows with a tiny untrained model
built in code and few steps (the test suite uses it); its results go to runs/eval-quick/ unless
--results says otherwise, and its report to runs/eval-quick/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gmsdi.cli_common as cli_args  # noqa: E402  (light; after the offline switches, as all gmsdi imports)
from gmsdi.fileio import atomic_write, relative_paths  # noqa: E402  (stdlib only)

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path("benchmarks/results/eval")
QUICK_RESULTS = Path("runs/eval-quick")
STEMS = ("bass", "drums", "guitar", "piano")
# separation_steps: MSDM's Dirac form converges for four stems from 14 Euler steps (`min_dirac_steps`)
QUICK = {"steps": 2, "separation_steps": 16, "tracks": 1, "max_chunks": 2, "clips": 2, "seconds": 3.0}


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
    _common(p)

    p = sub.add_parser("report", help="docs/RESULTS.md and its plots from the result files", formatter_class=fmt)
    p.add_argument("--results", type=Path, default=None, help=f"result JSON folder (default {RESULTS})")
    p.add_argument("--out", type=Path, default=None, help="default docs/RESULTS.md (--quick: runs/eval-quick/)")
    p.add_argument("--plots", type=Path, default=None, help="plot folder (default docs/results/)")
    p.add_argument("--quick", action="store_true", help="write the quick report (runs/eval-quick/)")
    return parser


# -- helpers ----------------------------------------------------------------------------------------------


def _results_dir(args: argparse.Namespace) -> Path:
    return args.results if args.results is not None else (QUICK_RESULTS if args.quick else RESULTS)


def _checkpoints(items: Sequence[str]) -> dict[str, str]:
    from gmsdi.eval.methods import MODELS

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in MODELS:
            raise ValueError(f"--checkpoint takes MODEL=PATH with MODEL in {sorted(MODELS)}, got {item!r}")
        out[name] = path
    return out


def _header(kind: str, args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    import torch

    import gmsdi

    return {"kind": kind, "command": "python -m gmsdi.eval " + shlex.join(argv), "quick": bool(args.quick),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "gmsdi_version": gmsdi.__version__,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
            "machine": platform.machine(), "seed": args.seed}


def _data_info(root: str, split: str, stems: Sequence[str], tracks_used: int | None = None) -> dict[str, Any]:
    from gmsdi.data.slakh import list_tracks

    tracks = list_tracks(root, split)
    return {"root": str(root), "split": split, "tracks_in_split": len(tracks),
            "tracks_used": tracks_used if tracks_used is not None else len(tracks),
            "seconds_in_split": round(sum(t.duration_s for t in tracks), 1),
            "mixture": "sum of the " + ", ".join(stems) + " stems"}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    out = cli_args.sampling_settings(args)  # "dirac" only where given: absent keeps older cache keys
    if args.quick and out["steps"] is None:
        separation = getattr(args, "command", None) in ("separation", "ensemble-choice")
        out["steps"] = QUICK["separation_steps"] if separation else QUICK["steps"]
    return out


def _write(folder: Path, name: str, data: dict[str, Any]) -> Path:
    data = relative_paths(json.loads(json.dumps(data, default=_json_default, allow_nan=True)))  # no machine paths
    text = json.dumps(data, indent=1, allow_nan=True) + "\n"
    return atomic_write(folder / f"{name}.json", lambda tmp: tmp.write_text(text))  # a killed run leaves the old file


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _load(name: str, args: argparse.Namespace, cache: dict[str, Any]):
    """The loaded model `name`, or None (with a note) when its checkpoint is missing."""
    from gmsdi.eval.methods import CheckpointMissing, load_model

    if name not in cache:
        try:
            cache[name] = load_model(name, _checkpoints(args.checkpoint).get(name), quick=args.quick,
                                     device=args.device, stems=args.stems)
        except CheckpointMissing as e:
            print(f"skipped: {e}", file=sys.stderr)
            cache[name] = None
    return cache[name]


def _chunk(model: Any, args: argparse.Namespace) -> int:
    """Chunk length in samples: the model's window; for the references --chunk-seconds or the GMSDI
    model's window when it exists (so every method scores the same samples), else 2.048 s."""
    if model is not None:
        return int(model.pipeline.config.window_samples)
    seconds = getattr(args, "chunk_seconds", None)
    if seconds is None:
        from gmsdi.eval.methods import MODELS

        if args.quick:
            from gmsdi.models import model_config

            return model_config("tiny").window_samples
        path = Path(_checkpoints(getattr(args, "checkpoint", [])).get("gmsdi") or MODELS["gmsdi"].checkpoint_path)
        if path.is_file():
            from gmsdi.models import load_config

            return int(load_config(path).window_samples)
        seconds = 2.048
    return int(round(seconds * 16000))


def _separation(method: str, args: argparse.Namespace, models: dict[str, Any], split: str,
                settings: dict[str, Any], ensemble_results: str | None = None) -> dict[str, Any] | None:
    """Runs one separation method over the split; the JSON-ready result, or None when not trained."""
    from gmsdi.eval.methods import SEPARATION_METHODS, make_separator
    from gmsdi.eval.runner import run_separation, split_dataset

    spec = SEPARATION_METHODS[method]
    model = _load(spec.model, args, models) if spec.model else None
    if spec.model and model is None:
        return None
    irm = {"n_fft": getattr(args, "irm_n_fft", 1024), "hop_length": getattr(args, "irm_hop", 256),
           "power": getattr(args, "irm_power", 1.0)}
    separator = make_separator(method, model, args.stems, settings, ensemble_results, irm)
    sr = model.pipeline.sample_rate if model is not None else 16000
    ds = split_dataset(args.data, split, args.stems, sr)
    chunk = _chunk(model, args)
    tracks = QUICK["tracks"] if args.quick and args.tracks is None else args.tracks
    max_chunks = QUICK["max_chunks"] if args.quick and args.max_chunks is None else args.max_chunks
    key = {"method": method, "sha": model.sha256 if model else None, "quick": args.quick, "settings": settings,
           "irm": irm if method == "irm" else None, "data": str(Path(args.data).resolve()), "split": split,
           "stems": list(args.stems), "ensemble": ensemble_results}
    cache = None if getattr(args, "no_cache", False) else _results_dir(args) / "cache"
    run = run_separation(separator, ds, chunk, tracks=tracks, max_chunks=max_chunks, seed=args.seed,
                         cache_dir=cache, cache_key=key, progress=not args.quiet)
    return {"method": method, "label": spec.label, "model": model.describe() if model else None,
            "settings": {**settings, **({"irm": irm} if method == "irm" else {})}, "chunk_samples": chunk,
            "stems": list(args.stems), "data": _data_info(args.data, split, args.stems, len(run.tracks)),
            "results": run.summary()}


# -- commands ---------------------------------------------------------------------------------------------


def cmd_separation(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    folder, models, written = _results_dir(args), {}, []
    settings = _settings(args)
    for method in args.method:
        t0 = time.perf_counter()
        out = _separation(method, args, models, args.split, settings, args.ensemble_results)
        if out is None:
            continue
        data = {**_header("separation", args, argv), **out, "wall_seconds": round(time.perf_counter() - t0, 2)}
        name = f"separation-{method}" + (f"-{args.tag}" if args.tag else "")
        written.append(_write(folder, name, data))
        s = data["results"]["sisdri"]
        print(f"{method}: SI-SDRi " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()) +
              f" dB over {data['results']['windows']} windows")
    return written


def _real(args: argparse.Namespace, seconds: float, folder: Path, fad: Any) -> dict[str, Any]:
    """The real clips of the split (`clip_dataset`), the ones used, and their FAD statistics per set
    ("mix" and each stem), cached under the results folder."""
    from gmsdi.eval.runner import clip_dataset, clip_indices, real_stats

    tracks = QUICK["tracks"] if args.quick and args.real_tracks is None else args.real_tracks
    ds = clip_dataset(args.data, args.split, args.stems, seconds)
    indices = clip_indices(ds, tracks, 8 if args.quick else None)
    key = {"data": str(Path(args.data).resolve()), "split": args.split, "seconds": seconds, "tracks": tracks,
           "stems": list(args.stems), "clips": len(indices)}
    with warnings.catch_warnings():
        if args.quick:  # a handful of patches: singular covariances are expected
            warnings.simplefilter("ignore")
        stats, counts = real_stats(fad, ds, indices, None if args.quick else folder / "cache", key)
    return {"stats": stats, "counts": counts, "tracks": tracks, "dataset": ds, "indices": indices}


def cmd_fad(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    import numpy as np

    from gmsdi.eval.fad import FrechetAudioDistance
    from gmsdi.eval.runner import (
        SINGLE_SOURCE_VARIANTS,
        accompaniment_clips,
        accompany_mixes,
        clip_dataset,
        fad_or_nan,
        generate_mixes,
        reference_sets,
        single_source_stems,
    )

    folder, models, written = _results_dir(args), {}, []
    settings = _settings(args)
    clips_n = QUICK["clips"] if args.quick else args.clips
    seconds = QUICK["seconds"] if args.quick else args.seconds
    fad = FrechetAudioDistance(hop_frames=args.hop_frames, device=args.device)
    real = _real(args, seconds, folder, fad)
    data = _data_info(args.data, args.split, args.stems, real["tracks"])
    data["real_clips"] = real["counts"]
    progress = not args.quiet
    nan = float("nan")
    embedding = {"network": "musicnn MTT (torch port)", "layer": fad.layer, "hop_frames": fad.hop_frames}
    if "reference" in args.task:
        if args.reference_split == args.split:
            raise ValueError(f"--reference-split must differ from --split ({args.split}): the reference "
                             "clips must be held out from the real statistics")
        t0 = time.perf_counter()
        held = clip_dataset(args.data, args.reference_split, args.stems, seconds)
        sets = reference_sets(held, clips_n, args.seed)
        rows = {}
        for set_name, clips in sets.items():
            target = set_name.removeprefix("noise:")
            ok = clips and target in real["stats"]
            rows[set_name] = {"fad": fad_or_nan(fad, clips, real["stats"][target]) if ok else nan,
                              "clips": len(clips), "against": target}
        written.append(_write(folder, "fad-reference", {
            **_header("fad", args, argv), "task": "reference", "clips": clips_n, "seconds": seconds, "data": data,
            "reference_split": args.reference_split,
            "embedding": embedding,
            "results": {"sets": rows, "wall_seconds": round(time.perf_counter() - t0, 2)}}))
        print("reference FAD: " + ", ".join(f"{k} {v['fad']:.3f}" for k, v in rows.items()))
    model_tasks = {"generation", "accompaniment", "single-source"} & set(args.task)
    for name in args.models if model_tasks else []:
        model = _load(name, args, models)
        if model is None:
            continue
        base = {**_header("fad", args, argv), "model": model.describe(), "label": model.spec.label,
                "settings": settings, "clips": clips_n, "seconds": seconds, "data": data,
                "embedding": embedding}
        if "generation" in args.task:
            t0 = time.perf_counter()
            gen = generate_mixes(model, args.stems, clips_n, seconds, args.seed, settings, progress)
            score = fad_or_nan(fad, [r.mix for r in gen], real["stats"]["mix"]) if "mix" in real["stats"] else nan
            consistency = [float(np.linalg.norm(r.mixture_chain - r.mix) / max(np.linalg.norm(r.mixture_chain), 1e-12))
                           for r in gen if r.mixture_chain is not None]
            out = {**base, "task": "generation", "results": {
                "fad": score, "mixture_consistency": float(np.mean(consistency)) if consistency else None,
                "wall_seconds": round(time.perf_counter() - t0, 2)}}
            written.append(_write(folder, f"fad-generation-{name}", out))
            print(f"{name}: generation FAD {score:.3f} ({clips_n} clips of {seconds:g} s)")
        if "accompaniment" in args.task:
            t0 = time.perf_counter()
            rows = {}
            for subset in args.subsets[:1] if args.quick else args.subsets:
                generated = subset.split("+")
                bad = [s for s in generated if s not in args.stems]
                if bad:
                    raise ValueError(f"--subsets: {bad} are not stems of {args.stems}")
                given = [s for s in args.stems if s not in generated]
                chosen = accompaniment_clips(real["dataset"], real["indices"], given, clips_n)
                if not chosen:
                    rows[subset] = {"sub_fad": nan, "clips": 0, "given": given}
                    continue
                mixes = accompany_mixes(model, chosen, args.stems, generated, args.seed, settings, progress)
                score = fad_or_nan(fad, mixes, real["stats"]["mix"]) if "mix" in real["stats"] else nan
                rows[subset] = {"sub_fad": score, "clips": len(chosen), "given": given}
                print(f"{name}: sub-FAD generating {subset} given {'+'.join(given)}: {score:.3f}")
            written.append(_write(folder, f"fad-accompaniment-{name}", {
                **base, "task": "accompaniment", "results": {"subsets": rows,
                                                             "wall_seconds": round(time.perf_counter() - t0, 2)}}))
        if "single-source" in args.task and model.spec.kind == "gmsdi":
            t0 = time.perf_counter()
            rows = {}
            for stem in args.stems[:1] if args.quick else args.stems:
                others = [s for s in args.stems if s != stem]
                rows[stem] = {}
                for variant in args.variants:
                    gen = single_source_stems(model, stem, others, variant, clips_n, seconds, args.seed, settings,
                                              progress)
                    score = fad_or_nan(fad, gen, real["stats"][stem]) if stem in real["stats"] else nan
                    rows[stem][variant] = score
                    print(f"{name}: single-source FAD {stem}, {variant}: {score:.3f}")
            written.append(_write(folder, f"fad-single-source-{name}", {
                **base, "task": "single-source",
                "variants": {v: {"negative": SINGLE_SOURCE_VARIANTS[v][0] or "(null prompt)",
                                 "guidance": SINGLE_SOURCE_VARIANTS[v][1]} for v in args.variants},
                "results": {"fad": rows, "wall_seconds": round(time.perf_counter() - t0, 2)}}))
    return written


def cmd_sweep(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    """One row per (axis, γ), written as each setting finishes. A rerun with the same model,
    settings, clips and real set keeps the rows it finds (resume, or add an axis or a γ later)."""
    import numpy as np

    from gmsdi.eval.fad import FrechetAudioDistance
    from gmsdi.eval.metrics import mixture_consistency_error
    from gmsdi.eval.runner import fad_or_nan, generate_mixes

    folder, models = _results_dir(args), {}
    model = _load(args.model, args, models)
    if model is None:
        return []
    settings = _settings(args)
    clips_n = QUICK["clips"] if args.quick else args.clips
    seconds = QUICK["seconds"] if args.quick else args.seconds
    gammas = [0.3, 2.0, math.inf] if args.quick else args.gammas
    if args.quick and args.steps is None:
        settings["steps"] = 8  # two steps hold no coupling but the default; 0.3 is refused even at 8
    fad = FrechetAudioDistance(hop_frames=args.hop_frames, device=args.device)
    real = _real(args, seconds, folder, fad)
    key = {"model": model.describe(), "settings": settings, "clips": clips_n, "seconds": seconds, "seed": args.seed,
           "stems": list(args.stems), "hop_frames": args.hop_frames,
           "real": {"split": args.split, "tracks": real["tracks"], "clips": real["counts"]}}
    key = json.loads(json.dumps(key, default=_json_default))  # as it reads back from the file
    path = folder / f"sweep-{args.model}.json"
    rows = []
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("resume_key") == key:
            rows = old["results"]["rows"]
            print(f"resuming {path}: {len(rows)} setting(s) already measured")
    done = {(r["axis"], float(r["gamma"])) for r in rows}
    header = {**_header("sweep", args, argv), "model": model.describe(), "label": model.spec.label,
              "settings": settings, "clips": clips_n, "seconds": seconds,
              "data": {**_data_info(args.data, args.split, args.stems, real["tracks"]), "real_clips": real["counts"]},
              "gamma_mode": "relative", "resume_key": key}
    t0 = time.perf_counter()
    for axis in args.axes:
        for g in gammas:
            if (axis, float(g)) in done:
                continue
            kw = {"gamma_x": g if axis in ("x", "both") else None, "gamma_y": g if axis in ("y", "both") else None}
            t1 = time.perf_counter()
            try:
                gen = generate_mixes(model, args.stems, clips_n, seconds, args.seed, {**settings, **kw},
                                     not args.quiet)
            except ValueError as e:  # too tight for the step count: the pipeline refuses what would diverge
                rows.append({"axis": axis, "gamma": g, "gamma_x": kw["gamma_x"], "gamma_y": kw["gamma_y"],
                             "consistency": math.nan, "consistency_std": math.nan, "fad": math.nan,
                             "refused": str(e)})
                print(f"γ_{axis} = {g:g}: refused ({str(e).split(':')[0]})")
            else:
                err = [float(mixture_consistency_error(r.mixture_chain, np.stack(list(r.stems.values())),
                                                       relative=True)) for r in gen]
                score = (fad_or_nan(fad, [r.mix for r in gen], real["stats"]["mix"]) if "mix" in real["stats"]
                         else math.nan)
                defaults = gen[0].settings
                rows.append({"axis": axis, "gamma": g, "gamma_x": defaults["gamma_x"], "gamma_y": defaults["gamma_y"],
                             "consistency": float(np.mean(err)), "consistency_std": float(np.std(err)), "fad": score,
                             "wall_seconds": round(time.perf_counter() - t1, 2)})
                print(f"γ_{axis} = {g:g}: consistency {np.mean(err):.4f}, FAD {score:.3f}")
            _write(folder, f"sweep-{args.model}", {**header, "results": {
                "rows": rows, "wall_seconds": round(time.perf_counter() - t0, 2)}})
    if not path.is_file():  # nothing to measure and nothing before: still leave the header
        _write(folder, f"sweep-{args.model}", {**header, "results": {"rows": rows, "wall_seconds": 0.0}})
    return [path]


def cmd_steps(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    from gmsdi.inference.tasks import DiracStepsError

    folder, models, written = _results_dir(args), {}, []
    steps_list = [2, QUICK["separation_steps"]] if args.quick else args.steps_list  # 2: refused (constrained)
    if args.quick and args.tracks == 10:
        args.tracks = QUICK["tracks"]
    for method in args.method:
        rows, out = [], None
        for steps in steps_list:
            settings = {"steps": steps, "sampler": args.sampler, "s_churn": args.s_churn, "guidance": args.guidance}
            if args.dirac is not None:
                settings["dirac"] = args.dirac
            args.no_cache = False
            try:
                out = _separation(method, args, models, args.split, settings)
            except DiracStepsError as e:  # a step count the separator refuses (it would not converge)
                rows.append({"steps": steps, "refused": str(e)})
                print(f"{method}, {steps} steps: refused ({str(e).split(':')[0]})")
                continue
            if out is None:
                break
            r = out["results"]
            rows.append({"steps": steps, "sisdri": r["sisdri"], "windows": r["windows"], "seconds": r["seconds"],
                         "wall_seconds": r["wall_seconds"], "real_time_factor": r["real_time_factor"]})
            print(f"{method}, {steps} steps: SI-SDRi All {r['sisdri']['All']:.2f} dB, RTF {r['real_time_factor']}")
        if out is None:
            print(f"{method}: no step count ran, nothing written", file=sys.stderr)
        if rows and out is not None:
            data = {**_header("steps", args, argv), "method": method, "label": out["label"], "model": out["model"],
                    "dirac": args.dirac or "constrained",
                    "stems": list(args.stems), "data": out["data"], "chunk_samples": out["chunk_samples"],
                    "results": {"rows": rows}}
            written.append(_write(folder, f"steps-{method}" + (f"-{args.tag}" if args.tag else ""), data))
    return written


def cmd_ensemble_choice(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    folder, models = _results_dir(args), {}
    settings = _settings(args)
    runs = {}
    for method in ("gmsdi-separator", "gmsdi-extractor"):
        out = _separation(method, args, models, args.split, settings)
        if out is None:
            return []
        runs[method] = out
    sep, ext = runs["gmsdi-separator"]["results"]["sisdri"], runs["gmsdi-extractor"]["results"]["sisdri"]
    stems = [s for s in args.stems if math.isfinite(sep[s]) and math.isfinite(ext[s])]
    if not stems:  # nothing scored: writing an empty choice would replace the documented default
        raise ValueError(f"no window of the {runs['gmsdi-separator']['results']['windows']} scored had two or more "
                         "stems playing, so there is nothing to choose from; use more --tracks or --max-chunks")
    choice = {s: "separator" if sep[s] > ext[s] else "extractor" for s in stems}
    model = runs["gmsdi-separator"]["model"]
    ensemble = {"metric": "si_sdri_db", "separator": {s: round(sep[s], 3) for s in stems},
                "extractor": {s: round(ext[s], 3) for s in stems}, "choice": choice,
                "split": args.split, "data": runs["gmsdi-separator"]["data"],
                "windows": runs["gmsdi-separator"]["results"]["windows"],
                "checkpoint": model["checkpoint"], "checkpoint_sha256": model["checkpoint_sha256"],
                "command": "python -m gmsdi.eval " + shlex.join(argv), "quick": bool(args.quick)}
    out_path = args.out if args.out is not None else (
        folder / "ensemble.json" if args.quick else REPO_ROOT / "assets" / "ensemble.json")
    text = json.dumps(relative_paths(ensemble), indent=1) + "\n"
    atomic_write(out_path, lambda tmp: tmp.write_text(text))  # the pipeline reads it: never a torn file
    print(f"wrote {out_path}: " + ", ".join(f"{s} {m}" for s, m in choice.items()))
    data = {**_header("ensemble-choice", args, argv), "model": model, "ensemble_file": str(out_path),
            "choice": choice, "data": runs["gmsdi-separator"]["data"], "settings": settings,
            "results": {m: r["results"] for m, r in runs.items()}}
    return [out_path, _write(folder, "ensemble-choice", data)]


def cmd_sensitivity(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    from gmsdi.eval.sensitivity import class_spectra, probe_set, prompt_sensitivity, wiener_sensitivity

    folder, cache, written = _results_dir(args), {}, []
    n = 8 if args.quick else args.items
    if args.reference:
        # the same stems and noise as the models get: the evaluated GMSDI model's window (`_chunk`)
        segment, rate = _chunk(None, args), 16000
        probe = probe_set(args.data, args.split, n, segment, rate, seed=args.seed + 5)
        spectra = class_spectra(probe_set(args.data, args.spectra_split, 4 * n, segment, rate, seed=args.seed + 6,
                                          every_active=True))
        sens = wiener_sensitivity(spectra, probe)
        data = {**_header("sensitivity", args, argv), "model": None, "items": len(probe),
                "reference": f"Wiener filter of each class's mean spectrum, from {4 * n} isolated stems of the "
                             f"{args.spectra_split} split",
                "segment_samples": segment, "data": _data_info(args.data, args.split, sorted(set(probe.own))),
                "results": {str(k): v for k, v in sens.items()}}
        written.append(_write(folder, "sensitivity-wiener", data))
    for name in args.models:
        model = _load(name, args, cache)
        if model is None:
            continue
        pipe = model.pipeline
        segment = int(pipe.config.segment_samples)
        probe = probe_set(args.data, args.split, n, segment, pipe.sample_rate, seed=args.seed + 5)
        sens = prompt_sensitivity(pipe.model, pipe.text_encoder, probe, device=pipe.device)
        data = {**_header("sensitivity", args, argv), "model": model.describe(), "items": len(probe),
                "data": _data_info(args.data, args.split, sorted(set(probe.own))),
                "results": {str(k): v for k, v in sens.items()}}
        written.append(_write(folder, f"sensitivity-{name}", data))
    return written


def cmd_retrieval(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    from gmsdi.eval.methods import file_sha256
    from gmsdi.eval.retrieval import evaluate_encoder
    from gmsdi.text.contrastive import BUNDLED_CONTRASTIVE, build_contrastive
    from gmsdi.text.contrastive import ContrastiveEncoder as Encoder

    if args.quick:  # a tiny untrained encoder on a few crops
        encoder, path, sha, crops = build_contrastive("tiny", seed=args.seed).train(False), None, None, 32
    else:
        path = args.encoder if args.encoder is not None else BUNDLED_CONTRASTIVE
        encoder, sha, crops = Encoder.from_pretrained(path, device=args.device), file_sha256(path), args.crops
    result = evaluate_encoder(encoder, args.data, split=args.split, fit_split=args.fit_split, crops=crops,
                              seed=args.seed)
    data = {**_header("retrieval", args, argv), "encoder": str(path) if path else None, "encoder_sha256": sha,
            "data": _data_info(args.data, args.split, args.stems), **result}
    return [_write(_results_dir(args), "retrieval", data)]


NOISE_CLASS = "noise"


def cmd_instruments(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    import numpy as np

    from gmsdi.audio import read_file, to_mono
    from gmsdi.eval.instruments import (
        BUNDLED_PROBE,
        InstrumentProbe,
        ProbeConfig,
        classify,
        evaluate_crops,
        read_crops,
        train_probe,
    )
    from gmsdi.eval.methods import file_sha256
    from gmsdi.eval.runner import generate_mixes

    folder, written = _results_dir(args), []
    if args.probe is not None:
        path = args.probe
    elif args.quick:
        path = folder / "instrument-probe.safetensors"
    else:  # recorded relative to the repository when run from it
        path = BUNDLED_PROBE.relative_to(Path.cwd()) if BUNDLED_PROBE.is_relative_to(Path.cwd()) else BUNDLED_PROBE
    files = []
    for item in args.files:
        name, sep, cls = item.rpartition("=")
        if not sep or not name or not cls:
            raise ValueError(f"--files takes FILE=CLASS, e.g. bass.ogg=bass; got {item!r}")
        files.append((Path(name), cls))
    if not (args.train or args.models or files):
        raise ValueError("nothing to do: pass --train, --models MODEL ... or --files FILE=CLASS ...")
    if args.prompts and not args.models:
        raise ValueError("--prompts words the prompts of generated stems: pass --models MODEL ... too")
    prompts = [p.strip() for p in args.prompts] if args.prompts else [s.replace("_", " ") for s in args.stems]
    if len(prompts) != len(args.stems) or not all(prompts):
        raise ValueError(f"--prompts needs one non-empty prompt per stem ({len(args.stems)}: "
                         f"{' '.join(args.stems)}), got {args.prompts}")
    if args.negative is not None and not args.models:
        raise ValueError("--negative sets the negative prompts of generated stems: pass --models MODEL ... too")
    if args.negative is not None and len(args.negative) != len(args.stems):
        raise ValueError(f"--negative needs one negative prompt per stem ({len(args.stems)}: {' '.join(args.stems)}; "
                         f"'-' = the default), got {len(args.negative)}")
    negatives = cli_args.negatives_arg(args.negative)
    if args.train:
        noise = {"noise_class": NOISE_CLASS, "noise_crops": args.noise_crops,
                 "noise_files": tuple(str(f) for f in args.noise_files)} if args.noise_crops else {}
        cfg = (ProbeConfig(crops=96, val_crops=16, steps=4, widths=(16, 16), hidden=16, **noise) if args.quick
               else ProbeConfig(**noise))
        t0 = time.perf_counter()
        probe, fit = train_probe(args.data, cfg, progress=not args.quiet)
        probe.save(path)
        real_classes = tuple(c for c in cfg.classes if c != cfg.noise_class)
        test_audio, test_labels = read_crops(args.data, args.split, real_classes, 32 if args.quick else args.test_crops,
                                             cfg.crop_seconds, cfg.sample_rate, args.seed + 2)
        test = evaluate_crops(probe, test_audio, test_labels)
        written.append(_write(folder, "instruments-probe", {
            **_header("instruments", args, argv), "probe": str(path), "probe_sha256": file_sha256(path),
            "config": vars(cfg), "history": fit["history"],
            "data": _data_info(args.data, args.split, cfg.classes),
            "results": {"validation": fit["validation"], "test": test,
                        "wall_seconds": round(time.perf_counter() - t0, 2)}}))
        print(f"instrument probe: test accuracy {test['accuracy']:.3f}, balanced {test['balanced_accuracy']:.3f} "
              f"({len(test_labels)} isolated {args.split} crops)")
    probe = InstrumentProbe.from_pretrained(path, device=args.device)
    base = {**_header("instruments", args, argv), "probe": str(path), "probe_sha256": file_sha256(path)}
    settings, models = _settings(args), {}
    clips_n = QUICK["clips"] if args.quick else args.clips
    seconds = QUICK["seconds"] if args.quick else args.seconds
    for name in args.models:
        model = _load(name, args, models)
        if model is None:
            continue
        t0 = time.perf_counter()
        songs = generate_mixes(model, prompts, clips_n, seconds, args.seed, settings, not args.quiet,
                               negative_prompts=negatives)
        clips = []
        for r in songs:
            if model.spec.kind == "msdm":  # MSDM ignores prompts: its stems are its channels, named by class
                audio = [r.stems[stem] for stem in args.stems]
            else:  # GMSDI's stems come back in prompt order, named after the prompts
                audio = list(r.stems.values())
            clips += [(np.asarray(a), r.sample_rate, stem) for a, stem in zip(audio, args.stems, strict=True)]
        result = classify(probe, clips)
        written.append(_write(folder, f"instruments-{name}{args.tag}", {
            **base, "model": model.describe(), "label": model.spec.label, "tag": args.tag, "settings": settings,
            "clips": clips_n,
            "seconds": seconds, "stems": list(args.stems),
            "prompts": None if model.spec.kind == "msdm" else prompts,
            "negative_prompts": None if model.spec.kind == "msdm" else negatives,
            "results": {**result, "wall_seconds": round(time.perf_counter() - t0, 2)}}))
        recall = ", ".join(f"{k} {v['recall']:.2f}" for k, v in result["per_class"].items())
        print(f"{name}: generated stems named correctly {result['accuracy']:.3f} ({recall}; {result['silent']} silent)")
    if files:
        clips = []
        for file, cls in files:
            audio, sr = read_file(file)
            clips.append((to_mono(audio, str(file)), sr, cls))
        result = classify(probe, clips)
        for row, (file, _) in zip(result["clips"], files, strict=True):
            row["file"] = str(file)
        written.append(_write(folder, f"instruments-files{args.tag}", {**base, "tag": args.tag, "results": result}))
        for row in result["clips"]:
            p = "silent" if row["predicted"] is None else f"{row['predicted']} (p[{row['named']}] {row['p_named']:.2f})"
            print(f"{row['file']}: named {row['named']}, sounds like {p}")
    return written


def cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    from gmsdi.eval.report import write_report

    results = args.results if args.results is not None else (QUICK_RESULTS if args.quick else RESULTS)
    default = QUICK_RESULTS / "RESULTS.md" if args.quick else Path("docs/RESULTS.md")
    out = args.out if args.out is not None else default
    plots = args.plots if args.plots is not None else (out.parent / "results")
    return write_report(results, out, plots, quick=args.quick)


COMMANDS = {"separation": cmd_separation, "fad": cmd_fad, "sweep": cmd_sweep, "steps": cmd_steps,
            "ensemble-choice": cmd_ensemble_choice, "sensitivity": cmd_sensitivity,
            "retrieval": cmd_retrieval, "instruments": cmd_instruments, "report": cmd_report}


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

    return cli_args.run(lambda: COMMANDS[args.command](args, argv), report)


__all__ = ["COMMANDS", "get_parser", "main"]
