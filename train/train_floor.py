"""Train the linear floor: per-bin signal spectra from the prompt, a Wiener denoiser (issue #17, Build 5).

    python train/train_floor.py --out assets/floor-synthslakh.safetensors          # ~2 min on 2 cores
    python train/train_floor.py --data /tmp/toy --steps 20 --out /tmp/floor.safetensors

The model (`gmsdi.models.spectral.SpectralWiener`, preset `floor`) sees the same data as GMSDI:
mixture crops and the prompts composed from their tags, 10 % of them dropped to the null prompt.
It maximises the likelihood of the crops' STFT frames as stationary Gaussians whose spectrum is the
sum of the prompt's parts' spectra. The result loads like any checkpoint (`GMSDIPipeline.
from_pretrained(path)`), so every task and every gate runs on it: it is what knowing each class's
average timbre, and nothing of notes or time, is worth.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from gmsdi.data import slakh  # noqa: E402
from gmsdi.models import build_model, model_config, save_model  # noqa: E402
from gmsdi.text import build_text_encoder  # noqa: E402


def train_floor(data: str | Path, steps: int = 200, batch_size: int = 64, lr: float = 0.05, p_uncond: float = 0.1,
                seed: int = 0, crop_seconds: float = 1.024, text_encoder: str | None = None):
    """Fits the floor on `data`'s train split; returns (model, last loss)."""
    config = model_config("floor")
    if text_encoder is not None:
        config = type(config).from_dict({**config.to_dict(), "text_encoder": text_encoder})
    model = build_model(config, seed=seed)
    encoder = build_text_encoder(config.text_encoder)
    ds = slakh.MixtureDataset(data, "train", sample_rate=config.sample_rate, crop_seconds=crop_seconds,
                              crops_per_epoch=steps * batch_size, seed=seed, activity_cache=Path(data) / ".activity")
    loader = DataLoader(ds, batch_size=batch_size, collate_fn=slakh.collate_mixtures, num_workers=1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    net = model.net
    loss = torch.tensor(float("nan"))
    for step, batch in enumerate(loader):
        prompts = ["" if rng.random() < p_uncond else p for p in batch["prompt"]]
        loss = net.gaussian_nll(batch["audio"], encoder.encode(prompts)).mean()
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        opt.step()
        if step % 50 == 0:
            print(f"step {step}: nll {loss.item():.4f}", flush=True)
    return model, loss.item()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthslakh", help="a SynthSlakh / Slakh2100 root with a train split")
    p.add_argument("--out", type=Path, required=True, help="where the checkpoint goes (.safetensors)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-encoder", default=None, help="prompt encoder (default: the floor preset's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 beside a training run)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, loss = train_floor(args.data, args.steps, args.batch_size, seed=args.seed,
                                  text_encoder=args.text_encoder)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_model(args.out, model, metadata={"step": str(args.steps), "run": "floor", "nll": f"{loss:.5f}"})
    print(f"wrote {args.out} (final nll {loss:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
