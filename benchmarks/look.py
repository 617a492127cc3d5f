"""The first quality gate: spectrograms of generated stems beside real stems of the same class.

    python benchmarks/look.py                                    # the bundled model
    python benchmarks/look.py --checkpoint runs/spectral/step4000.safetensors --tag step4000
    python benchmarks/look.py --single --tag bundled-single      # each class from its own prompt
    python benchmarks/look.py --stem-guidance bass=1.5 --negative bass=drums --tag bass-g15
    python benchmarks/look.py --tag bundled --redraw --max-khz 1.5  # the same clips again, 0-1.5 kHz
    python benchmarks/look.py --quick                            # tiny untrained model: checks the script

Generates `--songs` four-stem songs (bass, drums, guitar, piano; seeds 0, 1, ...) at the pipeline's
defaults — what the app's Generate button does — or, with `--single`, `--songs` clips of each class
from its own prompt alone (what the single-source FAD scores), and draws, per class, a row of real test stems
of that class and a row of the generated stems. It also scores every clip with the structure
measure `gmsdi.eval.structure.tf_contrast`, for real stems, for noise coloured to each class's
mean spectrum, and for the generated stems, and writes:

- `docs/look_<tag>.png`: the grid;
- `benchmarks/results/look/<tag>.json`: the structure figures, settings and checkpoint sha256;
- `runs/look/<tag>/*.wav` (ignored by git): the generated stems, for listening and for the
  other gates.

`--redraw` draws the clips a former run left in `runs/look/<tag>/` again, beside the same real stems,
into `docs/look_<tag>_<max-khz>khz.png`: on the default 0-4 kHz axis a bass's partials below 500 Hz
take a few pixels, and a narrower axis shows whether they are there.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from gmsdi.data.classes import PAPER_STEMS  # noqa: E402
from gmsdi.eval.structure import coloured_noise, tf_contrast  # noqa: E402
from gmsdi.fileio import file_sha256, write_json  # noqa: E402
from gmsdi.viz import log_spectrogram  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def real_stems(root: Path, split: str, cls: str, n: int, seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """[n, T] crops of `split` in which `cls` plays (isolated stems, `SingleStemDataset`)."""
    from gmsdi.eval.instruments import read_crops

    audio, _ = read_crops(root, split, [cls], n, seconds, sample_rate, seed)
    return audio.numpy()


def per_class(parser: argparse.ArgumentParser, flag: str, entries: list[str], classes: list[str],
              kind: type = str) -> dict:
    """{class: kind(value)} from CLASS=VALUE entries of a repeatable flag; a malformed entry is a usage error."""
    out = {}
    for entry in entries:
        cls, sep, value = entry.partition("=")
        if not sep or cls not in classes:
            parser.error(f"{flag} takes CLASS=VALUE with CLASS one of {', '.join(classes)}, got {entry!r}")
        try:
            out[cls] = kind(value.strip())
        except ValueError:
            parser.error(f"{flag} {entry!r}: the value must be a {kind.__name__}")
    return out


def relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def plot_grid(rows: dict[str, np.ndarray], sample_rate: int, path: Path, max_khz: float, title: str) -> None:
    """One row of spectrogram panels per entry of `rows` ([n, T] each), on one dB scale."""
    from matplotlib.figure import Figure

    n = max(len(v) for v in rows.values())
    fig = Figure(figsize=(2.0 * n, 1.45 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), n, squeeze=False, sharex=True, sharey=True)
    for r, (label, clips) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            if c >= len(clips):
                ax.axis("off")
                continue
            x = clips[c]
            spec = log_spectrogram(x / max(np.abs(x).max(), 1e-9), sample_rate, floor_db=-70)
            ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=-70, vmax=0,
                      extent=(0, len(x) / sample_rate, 0, sample_rate / 2000))
            ax.set_ylim(0, max_khz)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)


def redraw(parser: argparse.ArgumentParser, args: argparse.Namespace, classes: list[str]) -> int:
    """Draws the clips in runs/look/<tag>/ beside the real stems the run drew, on a 0-`max_khz` axis."""
    wav_dir = ROOT / "runs/look" / args.tag
    generated: dict[str, list[np.ndarray]] = {}
    sr = 0
    for c in classes:
        files = sorted(wav_dir.glob(f"seed*_{c}.wav"), key=lambda f: int(f.name[4:].partition("_")[0]))
        if not files:
            parser.error(f"no {c} clips in {relative(wav_dir)}: run `python benchmarks/look.py --tag {args.tag}` "
                         "first")
        clips = [sf.read(f, dtype="float32") for f in files]
        sr = clips[0][1]
        generated[c] = [x for x, _ in clips]
    length = min(len(x) for v in generated.values() for x in v)
    rows: dict[str, np.ndarray] = {}
    for k, c in enumerate(classes):
        n = len(generated[c])
        rows[f"real {c}"] = real_stems(args.data, args.split, c, max(n, 8), length / sr, sr, seed=k)[:n, :length]
        rows[f"generated {c}"] = np.stack([x[:length] for x in generated[c]])
    png = ROOT / ("runs/look" if args.quick else "docs") / f"look_{args.tag}_{args.max_khz:g}khz.png"
    plot_grid(rows, sr, png, args.max_khz, f"{args.tag}, 0-{args.max_khz:g} kHz: real test stems (odd rows) and "
                                            "generated stems (even rows)")
    print(f"wrote {relative(png)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None, help="model file (default: the bundled one)")
    p.add_argument("--tag", default="bundled", help="names the outputs")
    p.add_argument("--songs", type=int, default=8, help="four-stem songs generated (seeds 0, 1, ...)")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--data", type=Path, default=ROOT / "data/synthslakh", help="SynthSlakh root with a test split")
    p.add_argument("--split", default="test")
    p.add_argument("--max-khz", type=float, default=4.0, help="top of the pictures' frequency axis")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance weight (default: the pipeline's)")
    p.add_argument("--guidance-sigma-min", type=float, default=None,
                   help="guide at σ ≥ this only (a guidance interval; default: the pipeline's)")
    p.add_argument("--guidance-sigma-max", type=float, default=None,
                   help="guide at σ ≤ this only (default: the pipeline's)")
    p.add_argument("--gamma", type=float, default=None, help="γ_x = γ_y (default: the pipeline's)")
    p.add_argument("--gamma-mode", default=None,
                   help="relative, absolute, denoised or wiener (default: the pipeline's)")
    p.add_argument("--coupling-sigma-min", type=float, default=None,
                   help="couple the chains at σ ≥ this only (default: the pipeline's)")
    p.add_argument("--sampler", default=None, help="heun or euler (default: the pipeline's)")
    p.add_argument("--churn", type=float, default=None, help="S_churn (default: the pipeline's)")
    p.add_argument("--sigma-min", type=float, default=None, help="last σ of the schedule (default: the model's)")
    p.add_argument("--sigma-max", type=float, default=None, help="first σ of the schedule (default: the pipeline's)")
    p.add_argument("--rho", type=float, default=None,
                   help="Karras schedule exponent (default: the pipeline's 7; smaller puts more steps at high σ)")
    p.add_argument("--single", action="store_true",
                   help="generate each class from its own prompt alone (what the single-source FAD scores) "
                        "instead of four-stem songs")
    p.add_argument("--stem-guidance", action="append", default=[], metavar="CLASS=W",
                   help="one class's guidance weight (repeatable; the others take --guidance)")
    p.add_argument("--negative", action="append", default=[], metavar="CLASS=TEXT",
                   help="one class's negative prompt (repeatable; '' = the null prompt; default: the pipeline's, "
                        "the other stems' prompts)")
    p.add_argument("--redraw", action="store_true",
                   help="draw the clips of an earlier run with this --tag again (e.g. with another --max-khz); "
                        "generates nothing")
    p.add_argument("--quick", action="store_true", help="tiny untrained model, 2 songs, 4 steps, 1 s")
    args = p.parse_args(argv)
    classes = list(PAPER_STEMS)
    if args.redraw:
        return redraw(p, args, classes)
    stem_guidance = per_class(p, "--stem-guidance", args.stem_guidance, classes, float)
    negative = per_class(p, "--negative", args.negative, classes)

    from gmsdi.pipeline import GMSDIPipeline

    if args.quick:
        from gmsdi.models import build_model
        from gmsdi.text import HashTextEncoder

        pipe = GMSDIPipeline(build_model("tiny", seed=0), HashTextEncoder(384))
        args.songs, args.seconds, args.steps = 2, 1.0, 4
        checkpoint = {"path": "tiny (untrained)", "sha256": None}
    else:
        pipe = GMSDIPipeline.from_pretrained(args.checkpoint)
        path = Path(pipe.checkpoint)
        checkpoint = {"path": relative(path), "sha256": file_sha256(path)}
    sr = pipe.sample_rate

    generated: dict[str, list[np.ndarray]] = {c: [] for c in classes}
    wav_dir = ROOT / "runs/look" / args.tag
    wav_dir.mkdir(parents=True, exist_ok=True)
    settings = None
    guidance = pipe.generation_defaults.guidance if args.guidance is None else args.guidance
    options = dict(seconds=args.seconds, steps=args.steps,
                   guidance_sigma_min=args.guidance_sigma_min, guidance_sigma_max=args.guidance_sigma_max,
                   gamma_x=args.gamma, gamma_y=args.gamma, gamma_mode=args.gamma_mode,
                   coupling_sigma_min=args.coupling_sigma_min,
                   sampler=args.sampler, s_churn=args.churn, sigma_min=args.sigma_min, sigma_max=args.sigma_max,
                   **({} if args.rho is None else {"rho": args.rho}))
    for seed in range(args.songs):
        # A song: the four classes generated together; --single: each class from its own prompt alone.
        for prompts in ([[c] for c in classes] if args.single else [classes]):
            weights = [stem_guidance.get(c, guidance) for c in prompts] if stem_guidance else guidance
            negatives = [negative.get(c) for c in prompts] if negative else None
            result = pipe.generate(prompts, negatives, seed=seed, guidance=weights, **options)
            settings = {**result.settings, "checkpoint": checkpoint["path"]}
            for c in prompts:
                generated[c].append(result.stems[c])
                sf.write(wav_dir / f"seed{seed}_{c}.wav", result.stems[c], sr)
        print(f"{'clips' if args.single else 'song'} {seed}: done", flush=True)

    length = len(generated[classes[0]][0])
    rng = np.random.default_rng(0)
    rows: dict[str, np.ndarray] = {}
    figures: dict[str, dict] = {}
    for k, c in enumerate(classes):
        real = real_stems(args.data, args.split, c, max(args.songs, 8), length / sr, sr, seed=k)[:, :length]
        noise = coloured_noise(real, args.songs, length, rng)
        gen = np.stack(generated[c])
        rows[f"real {c}"] = real[: args.songs]
        rows[f"generated {c}"] = gen
        score = {name: [round(tf_contrast(x), 2) for x in clips] for name, clips in
                 (("real", real[: args.songs]), ("coloured_noise", noise), ("generated", gen))}
        figures[c] = {name: {"mean": round(float(np.nanmean(v)), 2), "clips": v} for name, v in score.items()}
        print(f"{c}: tf contrast real {figures[c]['real']['mean']} dB, coloured noise "
              f"{figures[c]['coloured_noise']['mean']} dB, generated {figures[c]['generated']['mean']} dB")

    what = "each from its own prompt alone" if args.single else "in four-stem songs"
    title = f"{args.tag}: real test stems (odd rows) and generated stems, {what} (even rows)"
    png = ROOT / "docs" / f"look_{args.tag}.png"
    if args.quick:
        png = ROOT / "runs/look" / f"look_{args.tag}.png"
    plot_grid(rows, sr, png, args.max_khz, title)
    out = {"checkpoint": checkpoint, "songs": args.songs, "single": args.single, "seconds": args.seconds,
           "prompts": [[c] for c in classes] if args.single else classes,
           "data": {"root": relative(args.data), "split": args.split},
           "measure": "tf_contrast (dB): gmsdi.eval.structure", "settings": settings, "tf_contrast": figures,
           "picture": relative(png), "command": "python benchmarks/look.py " + " ".join(argv or sys.argv[1:])}
    target = ROOT / "benchmarks/results/look" / f"{args.tag}.json"
    if args.quick:
        target = ROOT / "runs/look" / f"{args.tag}.json"
    write_json(target, out)
    print(f"wrote {relative(png)} and {relative(target)}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
