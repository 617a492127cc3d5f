"""Where along σ a model loses the music: real stems noised to σ_start and sampled back down.

    python benchmarks/renoise.py                                   # the bundled model
    python benchmarks/renoise.py --checkpoint runs/refine-1.safetensors --tag refine-1
    python benchmarks/renoise.py --quick                           # tiny untrained model: checks the script
    python benchmarks/renoise.py --guide runs/mask-1.safetensors --guide-weight 2 --tag mask-2-ag  # autoguidance

A perfect denoiser returns a real stem from any σ_start; the σ at which what comes back stops
looking like it is where the model fails. Two measurements on 4.096 s of `--clips` validation
stems per class (bass, drums, guitar, piano), each scaled to RMS σ_d and prompted with its class:

- **one denoising call** at σ ∈ {0.003, 0.01, 0.03, 0.1}: the error's STFT energy over the added
  noise's, in the *gap* bins (where the clean stem lies below the noise) and in the *signal* bins.
  0 is perfect; 1 is the identity (nothing removed). Gap bins are the silence around partials;
- **re-noise and sample**: stem + σ_start·ε, `--steps` Heun steps down the Karras schedule from
  σ_start to the model's σ_min and a last step to 0, no guidance, for each σ_start in `--starts`.
  Scored by the *gap floor*: the energy the result puts in the bins where the real stem is 60 dB
  below its loudest bin, over the result's energy, in dB
  (the real stem: far below; white noise: about 0 dB); and drawn, real stem first, per σ_start.

With `--guide BAD --guide-weight w` every denoising call is autoguided (Karras et al. 2024, "Guiding a
diffusion model with a bad version of itself"): D_bad + w·(D − D_bad), with a weaker model of the same task.

Writes `benchmarks/results/renoise/<tag>.json` and `runs/renoise/<tag>.png` (not committed), and
`runs/renoise/<tag>-onecall.png`: what one denoising call returns at each σ of `--onecall` (the
posterior mean the sampler follows there), beside the real stem.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gmsdi.data.classes import PAPER_STEMS  # noqa: E402
from gmsdi.fileio import file_sha256, relative_paths, write_json  # noqa: E402
from gmsdi.models import build_model, load_model  # noqa: E402
from gmsdi.models.spectral import Stft  # noqa: E402
from gmsdi.sampling.samplers import get_sigmas_karras, sample_heun  # noqa: E402
from gmsdi.text.registry import build_text_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (0.003, 0.01, 0.03, 0.1)
GAP_DB = 60.0


def _power(stft: Stft, x: torch.Tensor) -> torch.Tensor:
    """[B, T] -> STFT power [B, F, N]."""
    return stft.analyze(x.float()).abs().pow(2)


class AutoGuided(torch.nn.Module):
    """D_bad + w·(D − D_bad): `model` guided by a weaker `bad` model of the same task (autoguidance); w = 1 is
    `model` alone. Call as the models: `(x [B, 1, T], σ, cond) -> [B, 1, T]` (fp32)."""

    def __init__(self, model: torch.nn.Module, bad: torch.nn.Module, weight: float) -> None:
        super().__init__()
        self.model, self.bad, self.weight = model, bad, float(weight)
        self.config, self.model_config = model.config, model.model_config

    def forward(self, x: torch.Tensor, sigma, cond) -> torch.Tensor:
        d = self.model(x, sigma, cond).float()
        return d if self.weight == 1 else torch.lerp(self.bad(x, sigma, cond).float(), d, self.weight)


def one_call(model: torch.nn.Module, clean: torch.Tensor, cond, sigmas: Sequence[float], seed: int
             ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per σ: the noise σ·ε drawn and D(clean + σ·ε; σ), each [B, 1, T], one denoising call."""
    g = torch.Generator().manual_seed(seed)
    outs = []
    for s in sigmas:
        noise = s * torch.randn(clean.shape, generator=g)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs.append((noise, model(clean + noise, s, cond).float()))
    return outs


def denoise_errors(model: torch.nn.Module, clean: torch.Tensor, cond, stft: Stft, seed: int) -> dict:
    """{σ: {"gap": E/N in gap bins, "signal": E/N in signal bins, "gap_share": share of bins}}; clean [B, 1, T]."""
    out = {}
    for s, (noise, d) in zip(SIGMAS, one_call(model, clean, cond, SIGMAS, seed), strict=True):
        c, e, n = _power(stft, clean[:, 0]), _power(stft, (d - clean)[:, 0]), _power(stft, noise[:, 0])
        gap = c < n.mean()
        out[str(s)] = {"gap": round(float(e[gap].sum() / n[gap].sum()), 4),
                       "signal": round(float(e[~gap].sum() / n[~gap].sum()), 4),
                       "gap_share": round(float(gap.float().mean()), 3)}
    return out


def gap_floor_db(result: torch.Tensor, clean: torch.Tensor, stft: Stft) -> list[float]:
    """Per clip: 10·log10(energy of `result` in the bins where `clean` is GAP_DB below its peak ÷ its energy)."""
    c, r = _power(stft, clean), _power(stft, result)
    gap = c < c.amax((1, 2), keepdim=True) * 10 ** (-GAP_DB / 10)
    share = (r * gap).sum((1, 2)) / r.sum((1, 2)).clamp_min(1e-20)
    return [round(10 * math.log10(max(float(v), 1e-12)), 2) for v in share]


def renoise(model: torch.nn.Module, clean: torch.Tensor, cond, starts: list[float], steps: int, seed: int
            ) -> list[torch.Tensor]:
    """Per σ_start: clean [B, 1, T] + σ_start·ε sampled down to σ_min (Heun, no guidance) -> [B, 1, T]."""
    outs = []
    for start in starts:
        g = torch.Generator().manual_seed(seed)
        x = clean + start * torch.randn(clean.shape, generator=g)
        sigmas = get_sigmas_karras(steps, model.config.sigma_min, start)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs.append(sample_heun(lambda x, s, c: model(x, s, c).float(), x, sigmas, extra_args={"c": cond}))
    return outs


def plot(rows: list[np.ndarray], labels: list[str], classes: list[str], sample_rate: int, path: Path,
         title: str) -> None:
    """Columns: the real stem, then one per σ_start; rows: clips."""
    from matplotlib.figure import Figure

    from gmsdi.viz import log_spectrogram

    n = len(classes)
    fig = Figure(figsize=(2.2 * len(rows), 1.5 * n + 0.6))
    axes = fig.subplots(n, len(rows), squeeze=False, sharex=True, sharey=True)
    for j, (clips, label) in enumerate(zip(rows, labels, strict=True)):
        for i in range(n):
            ax, x = axes[i, j], clips[i]
            spec = log_spectrogram(x / max(np.abs(x).max(), 1e-9), sample_rate, floor_db=-70)
            ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=-70, vmax=0,
                      extent=(0, len(x) / sample_rate, 0, sample_rate / 2000))
            ax.set_ylim(0, 4)
            ax.set_xticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
            if j == 0:
                ax.set_ylabel(classes[i], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "assets/gmsdi-synthslakh.safetensors")
    p.add_argument("--tag", default="bundled", help="names the output files")
    p.add_argument("--data", type=Path, default=ROOT / "data/synthslakh")
    p.add_argument("--clips", type=int, default=2, help="validation stems per class")
    p.add_argument("--starts", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0, 3.0])
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--onecall", type=float, nargs="*", default=[0.3, 1.0, 3.0],
                   help="σ values of the one-call picture (none: no picture)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--guide", type=Path, default=None, help="a weaker model of the same task: autoguidance")
    p.add_argument("--guide-weight", type=float, default=2.0, help="w of D_bad + w·(D − D_bad) (with --guide)")
    p.add_argument("--quick", action="store_true", help="tiny untrained model and noise as 'stems': checks the script")
    args = p.parse_args(argv)
    if (args.clips < 1 or args.steps < 1 or not args.starts or min(args.starts) <= 0
            or min(args.onecall, default=1) <= 0):
        p.error("--clips and --steps must be at least 1 and every --starts and --onecall value positive")
    torch.set_num_threads(args.threads)
    classes = [c for c in PAPER_STEMS for _ in range(args.clips)]
    if args.quick:
        model, checkpoint = build_model("tiny", seed=0).eval(), {"path": "tiny (untrained)", "sha256": None}
        seconds = 0.512
        clean = 0.1 * torch.randn(len(classes), 1, int(seconds * model.model_config.sample_rate),
                                  generator=torch.Generator().manual_seed(args.seed))
    else:
        if not args.checkpoint.is_file():
            print(f"error: no checkpoint at {args.checkpoint}; train or export one first (train/RUNS.md)",
                  file=sys.stderr)
            return 2
        from gmsdi.eval.instruments import read_crops

        if not (args.data / "validation").is_dir():
            print(f"error: no validation split under {args.data}; render it first "
                  "(python -m gmsdi.data.synth --preset default --out data/synthslakh) or pass --data", file=sys.stderr)
            return 2
        model = load_model(args.checkpoint).eval()
        checkpoint = {"path": relative_paths(str(args.checkpoint.resolve())), "sha256": file_sha256(args.checkpoint)}
        seconds = 4.096
        crops = [read_crops(args.data, "validation", [c], args.clips, seconds, model.model_config.sample_rate,
                            args.seed)[0] for c in PAPER_STEMS]
        clean = torch.cat(crops)[:, None].float()
    guide = None
    if args.guide is not None:
        if not args.guide.is_file():
            p.error(f"no checkpoint at {args.guide} (--guide)")
        bad = load_model(args.guide).eval()
        mine, theirs = model.model_config, bad.model_config
        for field in ("sample_rate", "text_encoder"):
            if getattr(theirs, field) != getattr(mine, field):
                p.error(f"--guide has {field} {getattr(theirs, field)!r}, the model {getattr(mine, field)!r}: "
                        "autoguidance needs a weaker model of the same task")
        if bad.config.sigma_data != model.config.sigma_data or mine.unet.length_multiple % theirs.unet.length_multiple:
            p.error(f"--guide has σ_d {bad.config.sigma_data:g} and length multiple {theirs.unet.length_multiple}, "
                    f"the model {model.config.sigma_data:g} and {mine.unet.length_multiple}: σ_d must match and "
                    "the model's multiple must be one of the guide's")
        guide = {"path": relative_paths(str(args.guide.resolve())), "sha256": file_sha256(args.guide),
                 "weight": args.guide_weight}
        model = AutoGuided(model, bad, args.guide_weight)
    if getattr(model.config, "emphasis", 0.0):
        print(f"error: {args.checkpoint} diffuses the pre-emphasised waveform (emphasis "
              f"{model.config.emphasis:g}); this benchmark's σ values and gap bins are the waveform's, so it "
              "measures waveform models only (use benchmarks/look.py)", file=sys.stderr)
        return 2
    if min(args.starts) <= model.config.sigma_min:
        p.error(f"every --starts value must lie above the model's σ_min ({model.config.sigma_min:g})")
    sr = model.model_config.sample_rate
    m = model.model_config.unet.length_multiple
    clean = clean[..., : clean.shape[-1] // m * m]
    sigma_data = model.config.sigma_data
    clean = clean / clean.pow(2).mean((1, 2), keepdim=True).sqrt().clamp_min(1e-8) * sigma_data
    cond = build_text_encoder(model.model_config.text_encoder).encode(classes)
    stft = Stft(1024, 256)
    errors = denoise_errors(model, clean, cond, stft, args.seed)
    outs = renoise(model, clean, cond, args.starts, args.steps, args.seed)
    white = sigma_data * torch.randn(clean.shape, generator=torch.Generator().manual_seed(args.seed + 1))
    floors = {"real": gap_floor_db(clean[:, 0], clean[:, 0], stft),
              "white noise": gap_floor_db(white[:, 0], clean[:, 0], stft),
              **{str(s): gap_floor_db(o[:, 0], clean[:, 0], stft) for s, o in zip(args.starts, outs, strict=True)}}
    mean_floor = {k: round(float(np.mean([v for v in vals if v > -120])), 2) if any(v > -120 for v in vals)
                  else None for k, vals in floors.items()}
    print(json.dumps({"denoise_error_over_noise": errors, "gap_floor_db_mean": mean_floor}))
    out = {"checkpoint": checkpoint, "guide": guide, "classes": classes, "seconds": seconds, "steps": args.steps,
           "starts": args.starts, "gap_db": GAP_DB, "denoise_error_over_noise": errors,
           "gap_floor_db": floors, "gap_floor_db_mean": mean_floor,
           "command": "python benchmarks/renoise.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    target = ROOT / ("runs/renoise" if args.quick else "benchmarks/results/renoise") / f"{args.tag}.json"
    write_json(target, out)
    png = ROOT / "runs/renoise" / f"{args.tag}.png"
    plot([clean[:, 0].numpy(), *[o[:, 0].numpy() for o in outs]], ["real", *[f"from σ={s:g}" for s in args.starts]],
         classes, sr, png, f"{args.tag}: validation stems re-noised to σ and sampled back ({args.steps} Heun steps)")
    if args.onecall:
        once = one_call(model, clean, cond, args.onecall, args.seed)
        plot([clean[:, 0].numpy(), *[d[:, 0].numpy() for _, d in once]],
             ["real", *[f"D at σ={s:g}" for s in args.onecall]], classes, sr,
             png.with_name(f"{args.tag}-onecall.png"), f"{args.tag}: one denoising call at σ")
    print(f"wrote {target.relative_to(ROOT)} and {png.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
