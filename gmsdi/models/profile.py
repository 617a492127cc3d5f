"""Model cost: parameters, FLOPs and wall time per forward pass and per training step.

    python -m gmsdi.models.profile --preset default
    python -m gmsdi.models.profile --preset tiny --seconds 1 --train-batch 4

Prints a markdown table. Times are medians over `--repeats` runs on this machine's CPU with
`torch.get_num_threads()` threads; inputs use a random prompt embedding of the model's width.
"""

from __future__ import annotations

import argparse
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
    """

    params: int
    samples: int
    gflops_forward: float
    ms_forward: dict[int, float]
    train_batch: int = 0
    s_train_step: float = float("nan")

    def markdown(self, sample_rate: int, title: str = "") -> str:
        secs = self.samples / sample_rate
        rows = [
            ("parameters", f"{self.params / 1e6:.2f} M"),
            (f"GFLOPs / forward (batch 1, {secs:g} s)", f"{self.gflops_forward:.2f}"),
        ]
        rows += [(f"ms / forward (batch {b}, {secs:g} s)", f"{ms:.0f}") for b, ms in self.ms_forward.items()]
        if self.train_batch:
            step = f"s / training step (batch {self.train_batch} × {self.samples} samples)"
            rows.append((step, f"{self.s_train_step:.3f}"))
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
) -> ProfileReport:
    """Measures `model` on inputs of `samples` samples (see `ProfileReport`).

    The training step (EDM loss, backward, Adam) runs on a deep copy, so `model` is unchanged.
    """
    g = torch.Generator().manual_seed(0)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = count_forward_flops(model, samples)
    model.eval()
    ms = {}
    for b in batches:
        x, sigma, cond = _inputs(model, b, samples, g)
        with torch.no_grad():
            ms[b] = 1e3 * _median_seconds(lambda x=x, sigma=sigma, cond=cond: model(x, sigma, cond), repeats)
    s_train = float("nan")
    if train_batch:
        trained = copy.deepcopy(model).train()
        opt = torch.optim.Adam(trained.parameters(), lr=1e-4)
        x, sigma, cond = _inputs(trained, train_batch, samples, g)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            trained.loss(x, sigma, cond, generator=g).mean().backward()
            opt.step()

        s_train = _median_seconds(step, repeats)
    return ProfileReport(params, samples, flops / 1e9, ms, train_batch, s_train)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="default", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--seconds", type=float, default=None, help="input length (default: the segment)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10], help="forward batch sizes")
    parser.add_argument("--train-batch", type=int, default=16, help="training-step batch (0 to skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser


def main(argv: Sequence[str] | None = None) -> ProfileReport:
    args = get_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = model_config(args.preset)
    samples = config.segment_samples
    if args.seconds is not None:
        m = config.unet.length_multiple
        samples = max(m, round(args.seconds * config.sample_rate / m) * m)
    model = build_model(config, seed=0)
    report = profile_model(model, samples, args.batches, args.train_batch, args.repeats)
    title = f"### `{args.preset}` model, {torch.get_num_threads()} CPU threads"
    print(report.markdown(config.sample_rate, title))
    return report


if __name__ == "__main__":
    main()
