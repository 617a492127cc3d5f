"""Generation commands: FAD and sub-FAD, the γ sweep, the instrument probe."""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gmsdi.cli_common as cli_args
from gmsdi.eval.records import (
    QUICK,
    data_info,
    header,
    json_default,
    load_named,
    results_dir,
    sampling_args,
    write_result,
)


def _stem_negatives(values: Sequence[str] | None, stems: Sequence[str]) -> list[str | None] | None:
    """`--negative` as the pipeline takes it (`cli_common.negatives_arg`), checked to give one prompt per stem."""
    if values is not None and len(values) != len(stems):
        raise ValueError(f"--negative needs one negative prompt per stem ({len(stems)}: {' '.join(stems)}; "
                         f"'-' = the default), got {len(values)}")
    return cli_args.negatives_arg(values)


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

    folder, models, written = results_dir(args), {}, []
    settings = sampling_args(args)
    negatives = None
    if args.negative is not None:
        if "generation" not in args.task:
            raise ValueError("--negative sets the negative prompts of the four-stem generation FAD: add "
                             "--task generation (single-source FAD has --variants)")
        negatives = _stem_negatives(args.negative, args.stems)
    clips_n = QUICK["clips"] if args.quick else args.clips
    seconds = QUICK["seconds"] if args.quick else args.seconds
    fad = FrechetAudioDistance(hop_frames=args.hop_frames, device=args.device)
    real = _real(args, seconds, folder, fad)
    data = data_info(args.data, args.split, args.stems, real["tracks"])
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
        written.append(write_result(folder, "fad-reference", {
            **header("fad", args, argv), "task": "reference", "clips": clips_n, "seconds": seconds, "data": data,
            "reference_split": args.reference_split,
            "embedding": embedding,
            "results": {"sets": rows, "wall_seconds": round(time.perf_counter() - t0, 2)}}))
        print("reference FAD: " + ", ".join(f"{k} {v['fad']:.3f}" for k, v in rows.items()))
    model_tasks = {"generation", "accompaniment", "single-source"} & set(args.task)
    for name in args.models if model_tasks else []:
        model = load_named(name, args, models)
        if model is None:
            continue
        base = {**header("fad", args, argv), "model": model.describe(), "label": model.spec.label,
                "settings": settings, "clips": clips_n, "seconds": seconds, "data": data,
                "embedding": embedding}
        if "generation" in args.task:
            t0 = time.perf_counter()
            gen = generate_mixes(model, args.stems, clips_n, seconds, args.seed, settings, progress,
                                 negative_prompts=negatives)
            score = fad_or_nan(fad, [r.mix for r in gen], real["stats"]["mix"]) if "mix" in real["stats"] else nan
            consistency = [float(np.linalg.norm(r.mixture_chain - r.mix) / max(np.linalg.norm(r.mixture_chain), 1e-12))
                           for r in gen if r.mixture_chain is not None]
            used = gen[0].settings.get("negative_prompts") if gen and model.spec.kind != "msdm" else None
            out = {**base, "task": "generation", "negative_prompts": used, "results": {
                "fad": score, "mixture_consistency": float(np.mean(consistency)) if consistency else None,
                "wall_seconds": round(time.perf_counter() - t0, 2)}}
            written.append(write_result(folder, f"fad-generation-{name}{args.tag}", out))
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
            written.append(write_result(folder, f"fad-accompaniment-{name}{args.tag}", {
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
            written.append(write_result(folder, f"fad-single-source-{name}{args.tag}", {
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
    from gmsdi.eval.runner import fad_or_nan, generate_mixes, resolved_generation_settings

    folder, models = results_dir(args), {}
    model = load_named(args.model, args, models)
    if model is None:
        return []
    settings = sampling_args(args)
    clips_n = QUICK["clips"] if args.quick else args.clips
    seconds = QUICK["seconds"] if args.quick else args.seconds
    gammas = [0.3, 2.0, math.inf] if args.quick else args.gammas
    if args.quick and args.steps is None:
        settings["steps"] = 8  # two steps hold no coupling but the default; 0.3 is refused even at 8
    fad = FrechetAudioDistance(hop_frames=args.hop_frames, device=args.device)
    real = _real(args, seconds, folder, fad)
    # resume only rows sampled exactly so: the key holds every setting, defaults included, so a
    # changed pipeline default starts afresh like a changed flag
    resolved = resolved_generation_settings(model, settings)
    key = {"model": model.describe(), "settings": resolved, "clips": clips_n, "seconds": seconds, "seed": args.seed,
           "stems": list(args.stems), "hop_frames": args.hop_frames,
           "real": {"split": args.split, "tracks": real["tracks"], "clips": real["counts"]}}
    key = json.loads(json.dumps(key, default=json_default))  # as it reads back from the file
    path = folder / f"sweep-{args.model}.json"
    rows = []
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("resume_key") == key:
            rows = old["results"]["rows"]
            print(f"resuming {path}: {len(rows)} setting(s) already measured")
    done = {(r["axis"], float(r["gamma"])) for r in rows}
    head = {**header("sweep", args, argv), "model": model.describe(), "label": model.spec.label,
              "settings": settings, "clips": clips_n, "seconds": seconds,
              "data": {**data_info(args.data, args.split, args.stems, real["tracks"]), "real_clips": real["counts"]},
              "gamma_mode": resolved["gamma_mode"], "resume_key": key}
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
            write_result(folder, f"sweep-{args.model}", {**head, "results": {
                "rows": rows, "wall_seconds": round(time.perf_counter() - t0, 2)}})
    if not path.is_file():  # nothing to measure and nothing before: still leave the header
        write_result(folder, f"sweep-{args.model}", {**head, "results": {"rows": rows, "wall_seconds": 0.0}})
    return [path]


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

    folder, written = results_dir(args), []
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
    negatives = _stem_negatives(args.negative, args.stems)
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
        written.append(write_result(folder, "instruments-probe", {
            **header("instruments", args, argv), "probe": str(path), "probe_sha256": file_sha256(path),
            "config": vars(cfg), "history": fit["history"],
            "data": data_info(args.data, args.split, cfg.classes),
            "results": {"validation": fit["validation"], "test": test,
                        "wall_seconds": round(time.perf_counter() - t0, 2)}}))
        print(f"instrument probe: test accuracy {test['accuracy']:.3f}, balanced {test['balanced_accuracy']:.3f} "
              f"({len(test_labels)} isolated {args.split} crops)")
    probe = InstrumentProbe.from_pretrained(path, device=args.device)
    base = {**header("instruments", args, argv), "probe": str(path), "probe_sha256": file_sha256(path)}
    settings, models = sampling_args(args), {}
    clips_n = QUICK["clips"] if args.quick else args.clips
    seconds = QUICK["seconds"] if args.quick else args.seconds
    for name in args.models:
        model = load_named(name, args, models)
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
        written.append(write_result(folder, f"instruments-{name}{args.tag}", {
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
        written.append(write_result(folder, f"instruments-files{args.tag}",
                                    {**base, "tag": args.tag, "results": result}))
        for row in result["clips"]:
            p = "silent" if row["predicted"] is None else f"{row['predicted']} (p[{row['named']}] {row['p_named']:.2f})"
            print(f"{row['file']}: named {row['named']}, sounds like {p}")
    return written
