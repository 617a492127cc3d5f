"""Plot a run's logs for train/RUNS.md: the loss curve (train and validation per σ), the prompt
sensitivity (denoising error on isolated stems under a wrong prompt ÷ under their own prompt), and
for a contrastive encoder's run its validation retrieval recall.

    python train/plot_run.py runs/default --out train/plots/default
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def _rows(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def plot_run(run: str | Path, out_prefix: str | Path) -> list[Path]:
    """Write `<out_prefix>_loss.png` and `<out_prefix>_sensitivity.png`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run, out_prefix = Path(run), Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, kind: str) -> Path:
        path = Path(f"{out_prefix}_{kind}.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return path

    train, val = _rows(run / "train.csv"), _rows(run / "val.csv")
    fig, ax = plt.subplots(figsize=(8, 4))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.6, alpha=0.5, label="train (batch mean)")
    for key in [k for k in (val[0] if val else {}) if k.startswith("loss@")]:
        ax.plot([r["step"] for r in val], [r[key] for r in val], marker="o", ms=3, label=f"val σ={key[5:]}")
    ax.set_xlabel("step")
    ax.set_ylabel("EDM-weighted loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{run.name}: loss")
    written.append(save(fig, "loss"))

    sens = _rows(run / "sensitivity.csv")
    if sens:
        by_sigma: dict[float, list[dict]] = defaultdict(list)
        for r in sens:
            by_sigma[r["sigma"]].append(r)
        fig, ax = plt.subplots(figsize=(8, 4))
        for sigma, rows in sorted(by_sigma.items()):
            ax.plot([r["step"] for r in rows], [r["wrong_over_own"] for r in rows], marker="o", ms=3,
                    label=f"σ={sigma:g}")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xlabel("step")
        ax.set_ylabel("error(wrong prompt) / error(own prompt)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
        ax.set_title(f"{run.name}: prompt sensitivity on isolated validation stems (>1: the prompt matters)")
        written.append(save(fig, "sensitivity"))

    recall = [k for k in (val[0] if val else {}) if "_r@" in k or k == "presence_auc"]
    if recall:  # a contrastive encoder's run (train/train_contrastive.py)
        fig, ax = plt.subplots(figsize=(8, 4))
        for key in recall:
            ax.plot([r["step"] for r in val], [r[key] for r in val], marker="o", ms=3,
                    label=key.replace("_", " ").replace("r@", "recall@"))
        ax.set_xlabel("step")
        ax.set_ylabel("on the validation crops")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(f"{run.name}: retrieval recall and zero-shot presence AUC")
        written.append(save(fig, "retrieval"))
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="prefix of the PNG files")
    args = parser.parse_args()
    for p in plot_run(args.run, args.out):
        print(f"wrote {p}")
