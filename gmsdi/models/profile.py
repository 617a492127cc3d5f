"""Model cost: parameters, FLOPs and wall time per forward pass and per training step.

    python -m gmsdi.models.profile --preset default
    python -m gmsdi.models.profile --preset spectral --precision bf16 --seconds 4
    python -m gmsdi.models.profile --preset tiny --seconds 1 --train-batch 4

Prints a markdown table. Times are medians over `--repeats` runs on this machine's CPU with
`torch.get_num_threads()` threads; inputs use a random prompt embedding of the model's width.
With `--precision bf16` every pass runs in bf16 autocast, and the table compares the training
step's GFLOP/s (3 × forward FLOPs per example) with a bf16 2048² matmul timed in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from gmsdi.models.edm import EDMDenoiser
from gmsdi.models.factory import MODEL_PRESETS, build_model, model_config
from gmsdi.text.embedding import TextEmbedding


@dataclass
class ProfileReport:
    """Costs for one input length.

    Attributes:
        params: trainable parameters.
        samples: input length T in samples.
        gflops_forward: GFLOPs of one forward pass at batch 1 (multiply-add = 2 FLOPs).
        ms_forward: {batch: milliseconds per forward pass} (no grad).
        train_batch: batch of the timed training step (0 if not timed).
        s_train_step: seconds per training step (loss, backward, Adam update).
        train_samples: input length of the training step (default `samples`).
        precision: "fp32" or "bf16" (autocast).
        matmul_gflops: GFLOP/s of a 2048² matmul in `precision`, timed in the same run (0: not timed).
    """

    params: int
    samples: int
    gflops_forward: float
    ms_forward: dict[int, float]
    train_batch: int = 0
    s_train_step: float = float("nan")
    train_samples: int = 0
    precision: str = "fp32"
    matmul_gflops: float = 0.0
    gflops_train: float = float("nan")

    @property
    def train_gflops_per_s(self) -> float:
        """GFLOP/s of the training step, counting backward as twice the forward pass."""
        return 3 * self.gflops_train * self.train_batch / self.s_train_step

    def markdown(self, sample_rate: int, title: str = "") -> str:
        secs = self.samples / sample_rate
        rows = [
            ("parameters", f"{self.params / 1e6:.2f} M"),
            (f"GFLOPs / forward (batch 1, {secs:g} s)", f"{self.gflops_forward:.2f}"),
        ]
        rows += [(f"ms / forward (batch {b}, {secs:g} s)", f"{ms:.0f}") for b, ms in self.ms_forward.items()]
        if self.train_batch:
            step = f"ms / training step (batch {self.train_batch} × {self.train_samples or self.samples} samples)"
            rows.append((step, f"{1e3 * self.s_train_step:.0f}"))
            rows.append(("training GFLOP/s (3 × forward FLOPs)", f"{self.train_gflops_per_s:.0f}"))
        if self.matmul_gflops:
            rows.append((f"{self.precision} matmul 2048² GFLOP/s, same run", f"{self.matmul_gflops:.0f}"))
            rows.append(("training GFLOP/s ÷ matmul GFLOP/s", f"{self.train_gflops_per_s / self.matmul_gflops:.2f}"))
        head = f"{title}\n\n" if title else ""
        return head + "| quantity | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _inputs(
    model: EDMDenoiser, batch: int, samples: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, TextEmbedding]:
    net = model.net
    channels, dim = net.config.in_channels, net.text_dim
    x = 0.2 * torch.randn(batch, channels, samples, generator=generator)
    sigma = model.sample_training_sigmas(batch, generator=generator)
    tokens = torch.randn(batch, 8, dim, generator=generator)
    pooled = torch.nn.functional.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
    return x, sigma, TextEmbedding(tokens, torch.ones(batch, 8, dtype=torch.bool), pooled)


def _median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _autocast(precision: str) -> contextlib.AbstractContextManager:
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def matmul_gflops(precision: str = "bf16", n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n×n matmul in `precision` on this CPU (the reference rate for the model's)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2 * n**3 / _median_seconds(lambda: a @ b, repeats, warmup=2) / 1e9


def count_forward_flops(model: EDMDenoiser, samples: int, batch: int = 1) -> float:
    """FLOPs of one forward pass of `model` on [batch, C, samples] (torch's flop counter)."""
    x, sigma, cond = _inputs(model, batch, samples, torch.Generator().manual_seed(0))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x, sigma, cond)
    return float(counter.get_total_flops())


def profile_model(
    model: EDMDenoiser,
    samples: int,
    batches: Sequence[int] = (1, 10),
    train_batch: int = 16,
    repeats: int = 3,
    precision: str = "fp32",
    train_samples: int | None = None,
) -> ProfileReport:
    """Measures `model` on inputs of `samples` samples (see `ProfileReport`).

    The training step (EDM loss, backward, Adam) runs on a deep copy, so `model` is unchanged;
    it uses `train_samples` samples per example (default `samples`).
    """
    g = torch.Generator().manual_seed(0)
    train_samples = train_samples or samples
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = count_forward_flops(model, samples)
    flops_train = flops if train_samples == samples else count_forward_flops(model, train_samples)
    model.eval()
    ms = {}
    for b in batches:
        x, sigma, cond = _inputs(model, b, samples, g)
        with torch.no_grad(), _autocast(precision):
            ms[b] = 1e3 * _median_seconds(lambda x=x, sigma=sigma, cond=cond: model(x, sigma, cond), repeats)
    s_train = float("nan")
    if train_batch:
        trained = copy.deepcopy(model).train()
        opt = torch.optim.Adam(trained.parameters(), lr=1e-4)
        x, sigma, cond = _inputs(trained, train_batch, train_samples, g)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with _autocast(precision):
                loss = trained.loss(x, sigma, cond, generator=g).mean()
            loss.backward()
            opt.step()

        s_train = _median_seconds(step, repeats)
    mm = matmul_gflops(precision) if precision == "bf16" else 0.0
    return ProfileReport(params, samples, flops / 1e9, ms, train_batch, s_train, train_samples, precision, mm,
                         flops_train / 1e9)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="default", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--seconds", type=float, default=None, help="input length (default: the segment)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10], help="forward batch sizes")
    parser.add_argument("--train-batch", type=int, default=16, help="training-step batch (0 to skip)")
    parser.add_argument("--train-seconds", type=float, default=None,
                        help="training-step input length (default: the model's training segment)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="bf16 = CPU autocast")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser


def main(argv: Sequence[str] | None = None) -> ProfileReport:
    args = get_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = model_config(args.preset)
    m = config.unet.length_multiple
    samples = config.segment_samples
    if args.seconds is not None:
        samples = max(m, round(args.seconds * config.sample_rate / m) * m)
    train_samples = config.segment_samples
    if args.train_seconds is not None:
        train_samples = max(m, round(args.train_seconds * config.sample_rate / m) * m)
    model = build_model(config, seed=0)
    report = profile_model(model, samples, args.batches, args.train_batch, args.repeats, args.precision,
                           train_samples)
    title = f"### `{args.preset}` model, {args.precision}, {torch.get_num_threads()} CPU threads"
    print(report.markdown(config.sample_rate, title))
    return report


if __name__ == "__main__":
    main()
