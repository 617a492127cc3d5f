"""What the FAD gate penalises: real held-out clips, degraded in known ways, scored like generated ones.

    python benchmarks/fad_degrade.py                       # mix, bass, drums, guitar, piano; 20 clips each
    python benchmarks/fad_degrade.py --sets mix piano --clips 20
    python benchmarks/fad_degrade.py --quick               # clips of a tone: checks the script

The generation gates are FAD on musicnn embeddings (`python -m gmsdi.eval fad`). A generated stem can
be far from a real one in several ways: a noise floor between the partials, coloured noise under the
notes, phase that does not continue from frame to frame, or notes without sharp onsets and ends. Each
row applies one of these to the same real validation clips that make the FAD reference ("real"), with the
same real test statistics (40 tracks, 6 s clips, hop 16 frames), so the rows say how far each defect
alone moves the score:

- `white -30 dB`, `white -20 dB`: white noise at that level below the clip's RMS;
- `coloured -20 dB`, `coloured -10 dB`: noise with the clip's own mean power spectrum (a floor under the notes);
- `random phase`: the clip's STFT magnitudes (1024-point Hann, hop 256) with uniformly random phases,
  resynthesised (overlap-add);
- `smear 9 frames`, `smear 31 frames`: the same after averaging each bin's power over 9 or 31 frames
  (144 or 496 ms): onsets and note ends blurred;
- `noise`: white noise at the clip's RMS (the FAD reference's noise row).

Writes `benchmarks/results/fad_degrade.json`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gmsdi.data.classes import PAPER_STEMS  # noqa: E402
from gmsdi.fileio import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_FFT, HOP = 1024, 256


def _stft(x: np.ndarray) -> torch.Tensor:
    return torch.stft(torch.from_numpy(np.ascontiguousarray(x, np.float32)), N_FFT, HOP,
                      window=torch.hann_window(N_FFT), return_complex=True)


def _istft(spec: torch.Tensor, length: int) -> np.ndarray:
    return torch.istft(spec, N_FFT, HOP, window=torch.hann_window(N_FFT), length=length).numpy()


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def white(x: np.ndarray, db: float, rng: np.random.Generator) -> np.ndarray:
    """x plus white noise `db` below its RMS."""
    return x + (rng.standard_normal(x.shape) * _rms(x) * 10 ** (db / 20)).astype(np.float32)


def coloured(x: np.ndarray, db: float, rng: np.random.Generator) -> np.ndarray:
    """x plus noise with x's mean power spectrum, `db` below its RMS."""
    spec = _stft(x)
    mag = spec.abs().pow(2).mean(-1, keepdim=True).sqrt()
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    phase = torch.exp(2j * torch.pi * torch.rand(spec.shape, generator=gen))
    n = _istft(mag * phase, len(x))
    return x + (n / max(_rms(n), 1e-12) * _rms(x) * 10 ** (db / 20)).astype(np.float32)


def smeared(x: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Each bin's power averaged over `frames` frames (1: unchanged), random phases, resynthesised."""
    spec = _stft(x)
    power = spec.abs().pow(2)
    if frames > 1:
        power = torch.nn.functional.avg_pool1d(power[None], frames, 1, frames // 2,
                                               count_include_pad=False)[0][..., : spec.shape[-1]]
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    phase = torch.exp(2j * torch.pi * torch.rand(spec.shape, generator=gen))
    return _istft(power.sqrt() * phase, len(x)).astype(np.float32)


DEGRADATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "white -30 dB": lambda x, r: white(x, -30, r),
    "white -20 dB": lambda x, r: white(x, -20, r),
    "coloured -20 dB": lambda x, r: coloured(x, -20, r),
    "coloured -10 dB": lambda x, r: coloured(x, -10, r),
    "random phase": lambda x, r: smeared(x, 1, r),
    "smear 9 frames": lambda x, r: smeared(x, 9, r),
    "smear 31 frames": lambda x, r: smeared(x, 31, r),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "data/synthslakh")
    p.add_argument("--sets", nargs="+", default=["mix", *PAPER_STEMS], help="FAD sets: mix and/or stem classes")
    p.add_argument("--clips", type=int, default=20, help="clips per set (the FAD gates use 20)")
    p.add_argument("--real-tracks", type=int, default=40, help="test tracks of the real statistics (the gates' 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tones of random pitch for the real clips: checks the script")
    args = p.parse_args(argv)
    valid = {"mix", *PAPER_STEMS}
    if bad := [s for s in args.sets if s not in valid]:
        p.error(f"unknown set(s) {bad}; valid: {sorted(valid)}")
    if args.clips < 2:
        p.error("--clips must be at least 2 (a Gaussian fit needs two clips)")
    torch.set_num_threads(args.threads)
    from gmsdi.eval.fad import FrechetAudioDistance, GaussianStats
    from gmsdi.eval.runner import clip_dataset, clip_indices, fad_or_nan, real_stats, reference_sets

    fad = FrechetAudioDistance(hop_frames=16)
    rng = np.random.default_rng(args.seed + 1)
    if args.quick:
        # tones of random pitch: enough 6 s clips for more patch embeddings than dimensions (a finite FAD)
        seconds, stems, t = 6.0, list(PAPER_STEMS), np.arange(96000) / 16000
        clips = [(0.1 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in rng.uniform(100, 1000, 2 * args.clips)]
        stats = {s: GaussianStats.from_embeddings(fad.embed(clips[::2])) for s in args.sets}
        sets = {s: clips[1::2] for s in args.sets}
        sets.update({f"noise:{s}": [white(c, 0, rng) for c in clips[1::2]] for s in args.sets})
        counts = None
    else:
        if not (args.data / "test").is_dir():
            print(f"error: no test split under {args.data}; render it first "
                  "(python -m gmsdi.data.synth --preset default --out data/synthslakh) or pass --data", file=sys.stderr)
            return 2
        seconds, stems = 6.0, list(PAPER_STEMS)
        ds = clip_dataset(args.data, "test", stems, seconds)
        indices = clip_indices(ds, args.real_tracks, None)
        key = {"data": str(args.data.resolve()), "split": "test", "seconds": seconds, "tracks": args.real_tracks,
               "stems": stems, "clips": len(indices)}  # the key of `python -m gmsdi.eval fad`: its cache is shared
        stats, counts = real_stats(fad, ds, indices, ROOT / "benchmarks/results/eval/cache", key)
        sets = reference_sets(clip_dataset(args.data, "validation", stems, seconds), args.clips, args.seed)
    rows: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for name in args.sets:
        clips = sets[name]
        scored = {"real": clips, **{k: [f(c, rng) for c in clips] for k, f in DEGRADATIONS.items()},
                  "noise": sets[f"noise:{name}"]}
        rows[name] = {k: round(fad_or_nan(fad, v, stats[name]), 2) for k, v in scored.items()}
        print(name, rows[name], flush=True)
    out = {"sets": rows, "clips": args.clips, "seconds": seconds, "real_tracks": args.real_tracks,
           "real_clips": counts, "embedding": {"network": "musicnn MTT (torch port)", "layer": fad.layer,
                                               "hop_frames": fad.hop_frames},
           "wall_seconds": round(time.perf_counter() - t0, 1),
           "command": " ".join(["python benchmarks/fad_degrade.py", *(argv if argv is not None else sys.argv[1:])])}
    target = ROOT / ("runs/fad_degrade_quick.json" if args.quick else "benchmarks/results/fad_degrade.json")
    write_json(target, out)
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
