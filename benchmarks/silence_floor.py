"""How much noise the denoiser leaves where the music is silent: the low-σ floor of issue #17.

    python benchmarks/silence_floor.py                                  # the bundled model
    python benchmarks/silence_floor.py --checkpoint runs/mask-1.safetensors --tag mask-1

Two measurements, prompts "bass" and "piano", 4.096 s, seed 0:

- **one denoising call on silence**: D(σ·ε; σ) for white ε; a perfect denoiser returns 0 here, so
  RMS(D) ÷ σ is the fraction of the noise it leaves (1 = none removed, as the identity);
- **sampling from silence**: silence + noise at σ = 0.1, 24 Heun steps to the model's σ_min with no
  guidance; the level of the result (dBFS RMS). Real stems are silent in a fifth to a half of their
  bins; what a model adds there is the floor the look grids show. (The prompt may still make notes
  from σ = 0.1, so this is an upper bound on the floor.)

Writes `benchmarks/results/silence/<tag>.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from gmsdi.fileio import file_sha256, write_json  # noqa: E402
from gmsdi.models import build_model, load_model  # noqa: E402
from gmsdi.sampling.samplers import get_sigmas_karras, sample_heun  # noqa: E402
from gmsdi.text.registry import build_text_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (0.003, 0.01, 0.03)
PROMPTS = ["bass", "piano"]


def silence_floor(model: torch.nn.Module, text_encoder, seconds: float = 4.096, seed: int = 0,
                  steps: int = 24, start_sigma: float = 0.1) -> dict:
    """{"denoise_rms_over_sigma": {σ: RMS(D(σε)) ÷ σ}, "sampled_dbfs": [per prompt]} on silence."""
    sr = model.model_config.sample_rate
    m = model.model_config.unet.length_multiple
    t = max(m, int(seconds * sr) // m * m)
    cond = text_encoder.encode(PROMPTS)
    g = torch.Generator().manual_seed(seed)
    out: dict = {"denoise_rms_over_sigma": {}}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for s in SIGMAS:
            d = model(s * torch.randn(len(PROMPTS), 1, t, generator=g), s, cond).float()
            out["denoise_rms_over_sigma"][str(s)] = round(float(d.pow(2).mean().sqrt()) / s, 4)
        sigmas = get_sigmas_karras(steps, model.config.sigma_min, start_sigma)
        x = start_sigma * torch.randn(len(PROMPTS), 1, t, generator=g)
        y = sample_heun(lambda x, s, c: model(x, s, c).float(), x, sigmas, extra_args={"c": cond})
    out["sampled_dbfs"] = [round(20 * math.log10(max(float(v.pow(2).mean().sqrt()), 1e-12)), 2) for v in y]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "assets/gmsdi-synthslakh.safetensors")
    p.add_argument("--tag", default="bundled", help="names the output file")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny untrained model, 1 s: checks the script")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        model, checkpoint = build_model("tiny", seed=0).eval(), {"path": "tiny (untrained)", "sha256": None}
        figures = silence_floor(model, build_text_encoder(model.model_config.text_encoder), seconds=1.0, steps=4)
    else:
        if not args.checkpoint.is_file():
            print(f"error: no checkpoint at {args.checkpoint}; train or export one first (train/RUNS.md)",
                  file=sys.stderr)
            return 2
        model = load_model(args.checkpoint)
        checkpoint = {"path": str(args.checkpoint), "sha256": file_sha256(args.checkpoint)}
        figures = silence_floor(model, build_text_encoder(model.model_config.text_encoder))
    print(json.dumps(figures))
    out = {"checkpoint": checkpoint, "prompts": PROMPTS, **figures,
           "command": "python benchmarks/silence_floor.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    target = ROOT / ("runs/silence" if args.quick else "benchmarks/results/silence") / f"{args.tag}.json"
    write_json(target, out)
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
