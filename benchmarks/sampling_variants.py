"""Is it the sampler or the network? Structure of generated stems under three ways of sampling them.

    git show 7af61a3:assets/gmsdi-synthslakh.safetensors > /tmp/step8250.safetensors
    python benchmarks/sampling_variants.py --checkpoint /tmp/step8250.safetensors

For seeds 0 and 1, generates bass, drums, guitar and piano (4 s) with the app's defaults (Eq. 2,
negative-prompt guidance 2), with guidance off, and each stem alone with its prompt and no guidance,
and prints the mean `gmsdi.eval.structure.tf_contrast` (dB) per class and variant. The wavs go to
runs/variants/ (ignored by git).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from gmsdi.data.classes import PAPER_STEMS  # noqa: E402
from gmsdi.eval.structure import tf_contrast  # noqa: E402

VARIANTS = ("default", "no-guidance", "alone")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None, help="model file (default: the bundled one)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", type=Path, default=Path("runs/variants"))
    args = p.parse_args(argv)

    from gmsdi.pipeline import GMSDIPipeline

    pipe = GMSDIPipeline.from_pretrained(args.checkpoint)
    classes = list(PAPER_STEMS)
    args.out.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        t0 = time.perf_counter()
        scores: dict[str, list[float]] = {c: [] for c in classes}
        for seed in args.seeds:
            if variant == "alone":
                stems = {c: pipe.generate([c], [""], seconds=4, seed=seed, guidance=1.0).stems[c] for c in classes}
            else:
                settings = {"guidance": 1.0} if variant == "no-guidance" else {}
                stems = pipe.generate(classes, seconds=4, seed=seed, **settings).stems
            for c in classes:
                scores[c].append(tf_contrast(stems[c]))
                sf.write(args.out / f"{variant}_seed{seed}_{c}.wav", stems[c], pipe.sample_rate)
        means = " / ".join(f"{c} {np.mean(scores[c]):.2f}" for c in classes)
        print(f"{variant}: tf contrast (dB) {means} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
