"""What every evaluation command shares: the result folders, the run header, the model cache and the JSON writer."""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gmsdi.cli_common as cli_args
from gmsdi.fileio import atomic_write, relative_paths

RESULTS = Path("benchmarks/results/eval")
QUICK_RESULTS = Path("runs/eval-quick")
STEMS = ("bass", "drums", "guitar", "piano")
# separation_steps: MSDM's Dirac form converges for four stems from 14 Euler steps (`min_dirac_steps`)
QUICK = {"steps": 2, "separation_steps": 16, "tracks": 1, "max_chunks": 2, "clips": 2, "seconds": 3.0}


def results_dir(args: argparse.Namespace) -> Path:
    """--results, else the default folder (the quick one with --quick)."""
    return args.results if args.results is not None else (QUICK_RESULTS if args.quick else RESULTS)


def checkpoints_arg(items: Sequence[str]) -> dict[str, str]:
    """--checkpoint MODEL=PATH items as {model: path}."""
    from gmsdi.eval.methods import MODELS

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in MODELS:
            raise ValueError(f"--checkpoint takes MODEL=PATH with MODEL in {sorted(MODELS)}, got {item!r}")
        out[name] = path
    return out


def header(kind: str, args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """The run header every result file starts with: command, date, versions, machine, seed."""
    import torch

    import gmsdi

    return {"kind": kind, "command": "python -m gmsdi.eval " + shlex.join(argv), "quick": bool(args.quick),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "gmsdi_version": gmsdi.__version__,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
            "machine": platform.machine(), "cpu": cpu_name(), "seed": args.seed}


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else `platform.processor()`; "" when unknown.

    Timings depend on it: the same separation gate ran at a real-time factor of 5.4 on an Intel Xeon with
    AMX and 10.0 on an AMD EPYC (train/RUNS.md, session 22), with the same scores."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def data_info(root: str, split: str, stems: Sequence[str], tracks_used: int | None = None) -> dict[str, Any]:
    """The data set a result was measured on: root, split, tracks used and their length."""
    from gmsdi.data.slakh import list_tracks

    tracks = list_tracks(root, split)
    return {"root": str(root), "split": split, "tracks_in_split": len(tracks),
            "tracks_used": tracks_used if tracks_used is not None else len(tracks),
            "seconds_in_split": round(sum(t.duration_s for t in tracks), 1),
            "mixture": "sum of the " + ", ".join(stems) + " stems"}


def sampling_args(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags as pipeline keywords; --quick fills in its few steps."""
    out = cli_args.sampling_settings(args)  # "dirac" only where given: absent keeps older cache keys
    if args.quick and out["steps"] is None:
        separation = getattr(args, "command", None) in ("separation", "ensemble-choice")
        out["steps"] = QUICK["separation_steps"] if separation else QUICK["steps"]
    return out


def write_result(folder: Path, name: str, data: dict[str, Any]) -> Path:
    """Writes `data` to folder/name.json atomically, with no machine-specific paths; returns the path."""
    data = relative_paths(json.loads(json.dumps(data, default=json_default, allow_nan=True)))  # no machine paths
    text = json.dumps(data, indent=1, allow_nan=True) + "\n"
    return atomic_write(folder / f"{name}.json", lambda tmp: tmp.write_text(text))  # a killed run leaves the old file


def json_default(o: Any) -> Any:
    """JSON for numpy values and paths."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def load_named(name: str, args: argparse.Namespace, cache: dict[str, Any]):
    """The loaded model `name`, or None (with a note) when its checkpoint is missing."""
    from gmsdi.eval.methods import CheckpointMissing, load_model

    if name not in cache:
        try:
            cache[name] = load_model(name, checkpoints_arg(args.checkpoint).get(name), quick=args.quick,
                                     device=args.device, stems=args.stems)
        except CheckpointMissing as e:
            print(f"skipped: {e}", file=sys.stderr)
            cache[name] = None
    return cache[name]


def chunk_samples(model: Any, args: argparse.Namespace) -> int:
    """Chunk length in samples: the model's window; for the references --chunk-seconds or the GMSDI
    model's window when it exists (so every method scores the same samples), else 2.048 s."""
    if model is not None:
        return int(model.pipeline.config.window_samples)
    seconds = getattr(args, "chunk_seconds", None)
    if seconds is None:
        from gmsdi.eval.methods import MODELS

        if args.quick:
            from gmsdi.models import model_config

            return model_config("tiny").window_samples
        path = Path(checkpoints_arg(getattr(args, "checkpoint", [])).get("gmsdi") or MODELS["gmsdi"].checkpoint_path)
        if path.is_file():
            from gmsdi.models import load_config

            return int(load_config(path).window_samples)
        seconds = 2.048
    return int(round(seconds * 16000))
