"""What growing the bundled network costs (`gmsdi.models.bandunet.load_grown`): a training step and an
inference call of the source and of each grown variant, interleaved in one process.

    python benchmarks/grow_cost.py \
        --grow '{"refine_channels": 16, "refine_blocks": 2}' \
        --grow '{"num_blocks": [1, 2, 2], "self_attn_bottleneck": true}'
    python benchmarks/grow_cost.py --quick        # the tiny bands model of the tests: checks the script

Each `--grow` is a JSON object of `UNetConfig` fields to change. A training step is the EDM loss in bf16
autocast and its backward (batch 16 × 1.024 s, no optimizer); an inference call denoises 4 × 4.096 s
(`--infer-batch`, `--infer-seconds`) once under bf16 autocast, as the samplers do. Each repeat times every
variant in turn after one untimed round, and the table gives medians: this CPU's speed drifts within
minutes. Pause a training run first (`kill -STOP <pid>`). Writes `benchmarks/results/grow_cost.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from gmsdi.fileio import file_sha256, relative_paths, write_json
from gmsdi.models import build_model, load_model
from gmsdi.models.bandunet import load_grown
from gmsdi.models.edm import EDMDenoiser
from gmsdi.models.profile import _inputs

ROOT = Path(__file__).resolve().parents[1]


def grown_variants(source: EDMDenoiser, grows: list[dict]) -> dict[str, EDMDenoiser]:
    """{"source": source, "<json>": the source grown by those UNetConfig fields, weights loaded}."""
    out = {"source": source}
    cfg = source.model_config
    for fields in grows:
        unet = dataclasses.replace(cfg.unet, **fields)
        model = build_model(dataclasses.replace(cfg, unet=unet), seed=0)
        load_grown(model, source.state_dict())
        out[json.dumps(fields, sort_keys=True)] = model
    return out


def time_variants(models: dict[str, EDMDenoiser], batch: int, samples: int, infer_batch: int,
                  infer_samples: int, repeats: int) -> dict[str, dict]:
    """{name: {"train_ms", "infer_ms" (medians), "params"}}."""
    first = next(iter(models.values()))
    x, sigma, cond = _inputs(first, batch, samples, torch.Generator().manual_seed(0))
    xi, _, cond_i = _inputs(first, infer_batch, infer_samples, torch.Generator().manual_seed(1))
    times = {name: {"train": [], "infer": []} for name in models}
    for rep in range(repeats + 1):
        for name, model in models.items():
            model.train()
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model.loss(x, sigma, cond, generator=torch.Generator().manual_seed(2)).mean()
            loss.backward()
            t1 = time.perf_counter()
            model.eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                model(xi, 0.3, cond_i)
            t2 = time.perf_counter()
            model.zero_grad(set_to_none=True)
            if rep:  # the first round warms every variant up
                times[name]["train"].append(1e3 * (t1 - t0))
                times[name]["infer"].append(1e3 * (t2 - t1))
    return {name: {"train_ms": round(statistics.median(t["train"]), 1),
                   "infer_ms": round(statistics.median(t["infer"]), 1),
                   "params": sum(p.numel() for p in models[name].parameters())} for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "assets/gmsdi-synthslakh.safetensors")
    p.add_argument("--grow", action="append", default=[], metavar="JSON",
                   help='UNetConfig fields of a grown variant, e.g. \'{"refine_channels": 16}\' (repeatable)')
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=1.024, help="training crop (default 1.024 s)")
    p.add_argument("--infer-batch", type=int, default=4)
    p.add_argument("--infer-seconds", type=float, default=4.096)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="the tiny bands model of the tests, one repeat")
    args = p.parse_args(argv)
    if min(args.repeats, args.batch, args.infer_batch) < 1 or min(args.seconds, args.infer_seconds) <= 0:
        p.error("--repeats, --batch and --infer-batch must be at least 1, and --seconds and --infer-seconds positive")
    grows = []
    for text in args.grow:
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as e:
            p.error(f"--grow {text!r} is not JSON ({e}); write e.g. '{{\"refine_channels\": 16}}'")
        if not isinstance(fields, dict) or not fields:
            p.error(f"--grow {text!r} must be a JSON object of UNetConfig fields")
        if fields in grows:
            p.error(f"--grow {text!r} is given twice")
        grows.append(fields)
    torch.set_num_threads(args.threads)
    if args.quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from model_fixtures import tiny_bands_config

        source, checkpoint = build_model(tiny_bands_config(), seed=0), {"path": "tiny bands (untrained)",
                                                                         "sha256": None}
        grows = grows or [{"refine_channels": 8}, {"num_blocks": [1, 2], "self_attn_bottleneck": True}]
        args.repeats, args.batch, args.seconds, args.infer_batch, args.infer_seconds = 1, 2, 0.064, 1, 0.128
    else:
        if not args.checkpoint.is_file():
            print(f"error: no checkpoint at {args.checkpoint}; pass --checkpoint or --quick", file=sys.stderr)
            return 2
        source = load_model(args.checkpoint).float()
        checkpoint = {"path": relative_paths(str(args.checkpoint.resolve())), "sha256": file_sha256(args.checkpoint)}
    if source.model_config.network != "bandunet2d":
        print("error: growing is for BandUNet2d (model preset 'bands')", file=sys.stderr)
        return 2
    try:
        models = grown_variants(source, grows)
    except (TypeError, ValueError) as e:
        print(f"error: a --grow variant cannot be built from {checkpoint['path']}: {e}", file=sys.stderr)
        return 2
    sr, m = source.model_config.sample_rate, source.model_config.unet.length_multiple

    def length(seconds: float) -> int:
        return max(m, int(seconds * sr) // m * m)

    rows = time_variants(models, args.batch, length(args.seconds), args.infer_batch, length(args.infer_seconds),
                         args.repeats)
    for name, r in rows.items():
        print(f"{name:60s} train {r['train_ms']:7.1f} ms  infer {r['infer_ms']:7.1f} ms  {r['params']:,} params")
    out = {"checkpoint": checkpoint, "batch": args.batch, "samples": length(args.seconds),
           "infer_batch": args.infer_batch, "infer_samples": length(args.infer_seconds), "threads": args.threads,
           "torch": torch.__version__, "variants": rows,
           "command": "python benchmarks/grow_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    target = ROOT / ("runs" if args.quick else "benchmarks/results") / "grow_cost.json"
    write_json(target, out)
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
