"""What the training scripts in train/ share: their command line, CSV logs and atomic checkpoints."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Any

import torch

from gmsdi.fileio import atomic_write, remove_stale_temps


def run_parser(doc: str, export_help: str) -> argparse.ArgumentParser:
    """The command line of a training script: --config YAML, --set KEY=VALUE ..., --export OUT.

    Args:
        doc: the script's docstring (its first paragraph is the description, all of it the epilog).
        export_help: what --export writes.
    """
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="a YAML file in train/configs/")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields")
    p.add_argument("--export", type=Path, metavar="OUT.safetensors", help=export_help)
    return p


def ensure_synthslakh(root: str | os.PathLike[str], split: str, tracks: int, seed: int = 0,
                      seconds: float = 12.0, sample_rate: int = 16000) -> None:
    """Renders `tracks` SynthSlakh tracks into `root` when it has no `split` and `tracks` > 0.

    Raises the loader's error (no tracks) when the folder is empty and `tracks` is 0.
    """
    from gmsdi.data import slakh

    try:
        slakh.list_tracks(root, split)
        return
    except (FileNotFoundError, ValueError):
        if tracks <= 0:
            raise
    from gmsdi.data.synth import SynthConfig, render_dataset

    print(f"rendering {tracks} SynthSlakh tracks into {root}", flush=True)
    render_dataset(root, tracks, seed, SynthConfig(sample_rate=sample_rate, seconds=seconds), progress=False)


def append_csv(path: str | os.PathLike[str], row: dict[str, Any]) -> None:
    """Appends one row to a CSV log, writing the header (the row's keys) when the file is new."""
    path = Path(path)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """torch.save through `gmsdi.fileio.atomic_write`: a kill never leaves a torn file, and the
    temporary file of a save that was killed is removed by the next save (one run writes `path`)."""
    remove_stale_temps(path)
    atomic_write(path, lambda tmp: torch.save(state, tmp))


__all__ = ["append_csv", "ensure_synthslakh", "run_parser", "save_checkpoint"]
