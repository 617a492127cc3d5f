"""Separation commands: SI-SDRi per method, steps against quality, the ensemble's choice."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gmsdi.eval.records import (
    QUICK,
    RESULTS,
    chunk_samples,
    data_info,
    header,
    load_named,
    results_dir,
    sampling_args,
    write_result,
)
from gmsdi.fileio import REPO_ROOT, atomic_write, relative_paths


def _separation(method: str, args: argparse.Namespace, models: dict[str, Any], split: str,
                settings: dict[str, Any], ensemble_results: str | None = None) -> dict[str, Any] | None:
    """Runs one separation method over the split; the JSON-ready result, or None when not trained."""
    from gmsdi.eval.methods import SEPARATION_METHODS, make_separator
    from gmsdi.eval.runner import run_separation, split_dataset

    spec = SEPARATION_METHODS[method]
    model = load_named(spec.model, args, models) if spec.model else None
    if spec.model and model is None:
        return None
    irm = {"n_fft": getattr(args, "irm_n_fft", 1024), "hop_length": getattr(args, "irm_hop", 256),
           "power": getattr(args, "irm_power", 1.0)}
    separator = make_separator(method, model, args.stems, settings, ensemble_results, irm)
    sr = model.pipeline.sample_rate if model is not None else 16000
    ds = split_dataset(args.data, split, args.stems, sr)
    chunk = chunk_samples(model, args)
    tracks = QUICK["tracks"] if args.quick and args.tracks is None else args.tracks
    max_chunks = QUICK["max_chunks"] if args.quick and args.max_chunks is None else args.max_chunks
    key = {"method": method, "sha": model.sha256 if model else None, "quick": args.quick, "settings": settings,
           "irm": irm if method == "irm" else None, "data": str(Path(args.data).resolve()), "split": split,
           "stems": list(args.stems), "ensemble": ensemble_results}
    cache = None if getattr(args, "no_cache", False) else results_dir(args) / "cache"
    run = run_separation(separator, ds, chunk, tracks=tracks, max_chunks=max_chunks, seed=args.seed,
                         cache_dir=cache, cache_key=key, progress=not args.quiet)
    return {"method": method, "label": spec.label, "model": model.describe() if model else None,
            "settings": {**settings, **({"irm": irm} if method == "irm" else {})}, "chunk_samples": chunk,
            "stems": list(args.stems), "data": data_info(args.data, split, args.stems, len(run.tracks)),
            "results": run.summary()}


def cmd_separation(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    folder, models, written = results_dir(args), {}, []
    settings = sampling_args(args)
    for method in args.method:
        t0 = time.perf_counter()
        out = _separation(method, args, models, args.split, settings, args.ensemble_results)
        if out is None:
            continue
        data = {**header("separation", args, argv), **out, "wall_seconds": round(time.perf_counter() - t0, 2)}
        name = f"separation-{method}" + (f"-{args.tag}" if args.tag else "")
        written.append(write_result(folder, name, data))
        s = data["results"]["sisdri"]
        print(f"{method}: SI-SDRi " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()) +
              f" dB over {data['results']['windows']} windows")
    return written


def cmd_steps(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    from gmsdi.inference.tasks import DiracStepsError

    folder, models, written = results_dir(args), {}, []
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
            data = {**header("steps", args, argv), "method": method, "label": out["label"], "model": out["model"],
                    "dirac": args.dirac or "constrained",
                    "stems": list(args.stems), "data": out["data"], "chunk_samples": out["chunk_samples"],
                    "results": {"rows": rows}}
            written.append(write_result(folder, f"steps-{method}" + (f"-{args.tag}" if args.tag else ""), data))
    return written


def cmd_ensemble_choice(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    folder, models = results_dir(args), {}
    settings = sampling_args(args)
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
    data = {**header("ensemble-choice", args, argv), "model": model, "ensemble_file": str(out_path),
            "choice": choice, "data": runs["gmsdi-separator"]["data"], "settings": settings,
            "results": {m: r["results"] for m, r in runs.items()}}
    return [out_path, write_result(folder, "ensemble-choice", data)]


def cmd_compare(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    """Prints the paired per-window SI-SDRi difference of two separation records (B − A)."""
    from gmsdi.eval.compare import format_difference, paired_difference

    records = []
    for path in (args.a, args.b):
        if not path.is_file():
            raise FileNotFoundError(f"no such record: {path} (separation records are in {RESULTS}/separation-*.json)")
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not a JSON record: {e}") from None
    print(format_difference(paired_difference(*records), str(args.a), str(args.b)))
    return []
