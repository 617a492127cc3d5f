"""Conditioning commands: prompt sensitivity, the contrastive encoder's retrieval; and the report."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gmsdi.eval.records import (
    QUICK_RESULTS,
    RESULTS,
    chunk_samples,
    data_info,
    header,
    load_named,
    results_dir,
    write_result,
)


def cmd_sensitivity(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    from gmsdi.eval.sensitivity import class_spectra, probe_set, prompt_sensitivity, wiener_sensitivity

    folder, cache, written = results_dir(args), {}, []
    n = 8 if args.quick else args.items
    if args.reference:
        # the same stems and noise as the models get: the evaluated GMSDI model's window (`_chunk`)
        segment, rate = chunk_samples(None, args), 16000
        probe = probe_set(args.data, args.split, n, segment, rate, seed=args.seed + 5)
        spectra = class_spectra(probe_set(args.data, args.spectra_split, 4 * n, segment, rate, seed=args.seed + 6,
                                          every_active=True))
        sens = wiener_sensitivity(spectra, probe)
        data = {**header("sensitivity", args, argv), "model": None, "items": len(probe),
                "reference": f"Wiener filter of each class's mean spectrum, from {4 * n} isolated stems of the "
                             f"{args.spectra_split} split",
                "segment_samples": segment, "data": data_info(args.data, args.split, sorted(set(probe.own))),
                "results": {str(k): v for k, v in sens.items()}}
        written.append(write_result(folder, "sensitivity-wiener", data))
    for name in args.models:
        model = load_named(name, args, cache)
        if model is None:
            continue
        pipe = model.pipeline
        segment = int(pipe.config.segment_samples)
        probe = probe_set(args.data, args.split, n, segment, pipe.sample_rate, seed=args.seed + 5)
        sens = prompt_sensitivity(pipe.model, pipe.text_encoder, probe, device=pipe.device)
        data = {**header("sensitivity", args, argv), "model": model.describe(), "items": len(probe),
                "data": data_info(args.data, args.split, sorted(set(probe.own))),
                "results": {str(k): v for k, v in sens.items()}}
        written.append(write_result(folder, f"sensitivity-{name}", data))
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
    data = {**header("retrieval", args, argv), "encoder": str(path) if path else None, "encoder_sha256": sha,
            "data": data_info(args.data, args.split, args.stems), **result}
    return [write_result(results_dir(args), "retrieval", data)]


NOISE_CLASS = "noise"


def cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    from gmsdi.eval.report import write_report

    results = args.results if args.results is not None else (QUICK_RESULTS if args.quick else RESULTS)
    default = QUICK_RESULTS / "RESULTS.md" if args.quick else Path("docs/RESULTS.md")
    out = args.out if args.out is not None else default
    plots = args.plots if args.plots is not None else (out.parent / "results")
    return write_report(results, out, plots, quick=args.quick)
