"""Variants of a training step of `BandUNet2d`, interleaved in one process so that all see the same machine.

    python benchmarks/train_step_ab.py                       # the bundled model, batch 16 × 1.024 s
    python benchmarks/train_step_ab.py --repeats 12 --layouts   # also channels-last activations
    python benchmarks/train_step_ab.py --precision fp32      # fp32: contiguous against channels-last

With `--precision bf16` (autocast, as on a CPU with AMX-BF16 or AVX-512-BF16): the residual stream in bf16
(`BandUNet2d._stream_dtype`, the default) against the fp32 stream (before session 14), and with `--layouts`
channels-last activations too. With `--precision fp32` (what `train.py` runs on a CPU without bf16
instructions): contiguous activations against channels-last (`BandUNet2d._layout`'s fp32 choice, session 29).
Each repeat times one step (EDM loss and backward; no optimizer) of every variant in turn, after one
untimed step; the table gives the medians. This CPU's speed drifts by 10-40 % within
minutes, which is why the variants alternate instead of running one after the other. Pause a training
run first (`kill -STOP <pid>`, then `kill -CONT`): a busy core halves every figure. Writes
`benchmarks/results/train_step_ab.json` (bf16) or `train_step_ab-fp32.json`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gmsdi.eval.records import cpu_name
from gmsdi.fileio import file_sha256, write_json
from gmsdi.models import bandunet, build_model, load_model
from gmsdi.models.edm import EDMDenoiser
from gmsdi.models.profile import _inputs

ROOT = Path(__file__).resolve().parents[1]


def _variants(layouts: bool, precision: str) -> dict[str, tuple[Callable | None, Callable | None]]:
    """name -> (`_stream_dtype` replacement or None = the class's own, `_layout` replacement or None)."""
    channels_last = lambda self, device: torch.channels_last  # noqa: E731
    if precision == "fp32":
        return {"fp32, contiguous": (None, lambda self, device: torch.contiguous_format),
                "fp32, channels-last": (None, channels_last)}
    fp32 = lambda self, device: None  # noqa: E731
    out = {"fp32 stream": (fp32, None), "bf16 stream": (None, None)}
    if layouts:
        out["bf16 stream, channels-last"] = (None, channels_last)
    return out


def time_steps(model: EDMDenoiser, batch: int, samples: int, repeats: int,
               layouts: bool = False, precision: str = "bf16") -> dict[str, dict[str, float | list[float]]]:
    """{variant: {"median_ms", "ms": [per repeat], "loss"}} for one training step of `model` on
    [batch, 1, samples] of white noise at the model's training σ, in bf16 autocast or in fp32
    (`precision`); the model is left as it was."""
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'bf16' or 'fp32', got {precision!r}")
    cls = bandunet.BandUNet2d
    own = {"_stream_dtype": cls._stream_dtype, "_layout": cls._layout}
    model.train()
    x, sigma, cond = _inputs(model, batch, samples, torch.Generator().manual_seed(0))

    def step() -> float:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model.loss(x, sigma, cond, generator=torch.Generator().manual_seed(1)).mean()
        loss.backward()
        return loss.item()

    variants = _variants(layouts, precision)
    times: dict[str, list[float]] = {name: [] for name in variants}
    losses: dict[str, float] = {}
    try:
        for rep in range(repeats + 1):
            for name, (stream, layout) in variants.items():
                cls._stream_dtype = stream or own["_stream_dtype"]
                cls._layout = layout or own["_layout"]
                t0 = time.perf_counter()
                losses[name] = step()
                if rep:  # the first round warms up every variant
                    times[name].append(1e3 * (time.perf_counter() - t0))
    finally:
        cls._stream_dtype, cls._layout = own["_stream_dtype"], own["_layout"]
        model.zero_grad(set_to_none=True)
    return {name: {"median_ms": round(statistics.median(ms), 1), "ms": [round(t, 1) for t in ms],
                   "loss": losses[name]} for name, ms in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "assets/gmsdi-synthslakh.safetensors")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=1.024, help="crop length (default: training's 1.024 s)")
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--layouts", action="store_true", help="bf16: also time channels-last activations")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                   help="bf16 autocast (stream variants) or fp32 (layout variants); default bf16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true",
                   help="an untrained model of the bands preset (no checkpoint): checks the script")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        model, checkpoint = build_model("bands", seed=0), {"path": "bands (untrained)", "sha256": None}
    else:
        if not args.checkpoint.is_file():
            print(f"error: no checkpoint at {args.checkpoint}; pass --checkpoint or --quick", file=sys.stderr)
            return 2
        model = load_model(args.checkpoint).float()
        checkpoint = {"path": str(args.checkpoint), "sha256": file_sha256(args.checkpoint)}
    if model.model_config.network != "bandunet2d":
        print("error: the A/B is of BandUNet2d (model preset 'bands')", file=sys.stderr)
        return 2
    m = model.model_config.unet.length_multiple
    samples = max(m, int(args.seconds * model.model_config.sample_rate) // m * m)
    rows = time_steps(model, args.batch, samples, args.repeats, args.layouts, args.precision)
    for name, r in rows.items():
        print(f"{name:28s} median {r['median_ms']:7.1f} ms  (loss {r['loss']:.5f})")
    out = {"checkpoint": checkpoint, "batch": args.batch, "samples": samples, "threads": args.threads,
           "precision": args.precision, "cpu": cpu_name(),
           "torch": torch.__version__, "variants": rows,
           "command": "python benchmarks/train_step_ab.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    name = "train_step_ab.json" if args.precision == "bf16" else "train_step_ab-fp32.json"
    target = ROOT / ("runs" if args.quick else "benchmarks/results") / name
    write_json(target, out)
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
