"""The checkpoints shipped in assets/ load with no network in a fresh process and run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter, so nothing cached by other tests can help; every Hugging Face lookup offline and
# any network attempt pointed at a closed port.
SCRIPT = """
import json, sys
import numpy as np
import torch
from gmsdi.pipeline import BUNDLED_CHECKPOINT, GMSDIPipeline

torch.set_num_threads(1)
path = sys.argv[1] if len(sys.argv) > 1 else None
pipe = GMSDIPipeline.from_pretrained(path, device="cpu")
r = pipe.generate(["bass", "drums"], seconds=1.0, steps=4, seed=0)
again = pipe.generate(["bass", "drums"], seconds=1.0, steps=4, seed=0)
print(json.dumps({
    "checkpoint": pipe.checkpoint, "bundled": str(BUNDLED_CHECKPOINT), "rate": r.sample_rate,
    "shapes": {k: list(v.shape) for k, v in r.stems.items()},
    "finite": bool(all(np.isfinite(v).all() for v in r.stems.values())),
    "deterministic": bool(all(np.array_equal(r.stems[k], again.stems[k]) for k in r.stems)),
    "rms": float(np.sqrt(np.mean(r.mix.astype(np.float64) ** 2))),
}))
"""


@pytest.mark.parametrize("asset", [None, "assets/floor-synthslakh.safetensors"], ids=["bundled", "floor"])
def test_shipped_model_loads_offline_and_generates(asset: str | None) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", SCRIPT] + ([str(ROOT / asset)] if asset else [])
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["checkpoint"] == (str(ROOT / asset) if asset else out["bundled"])
    assert out["rate"] == 16000 and out["shapes"] == {"bass": [16000], "drums": [16000]}
    assert out["finite"] and out["deterministic"] and out["rms"] > 1e-4


def test_the_bundled_ensemble_choice_was_measured_on_the_bundled_checkpoint() -> None:
    """assets/ensemble.json picks separator or extractor per stem for one model; a new bundled checkpoint
    needs `python -m gmsdi.eval ensemble-choice` again, or the app's ensemble runs on another model's choice."""
    from gmsdi.fileio import file_sha256
    from gmsdi.inference.ensemble import ENSEMBLE_PATH, stale_choice
    from gmsdi.pipeline import BUNDLED_CHECKPOINT

    sha = file_sha256(BUNDLED_CHECKPOINT)
    assert json.loads(ENSEMBLE_PATH.read_text())["checkpoint_sha256"] == sha, \
        "assets/ensemble.json is stale: run `python -m gmsdi.eval ensemble-choice` on the bundled checkpoint"
    assert stale_choice(None, sha) is None


WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".npz", ".npy", ".onnx")


def test_the_weights_git_tracks_stay_within_60_mb() -> None:
    """Issue #17: every weight file in git together (the bundled model, the floor, the probe, the tagger, a run's
    export in train/resume/) stays at or below 60 MB, so a clone stays small."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    weights = [ROOT / name for name in listed.decode().split("\0") if name.endswith(WEIGHT_SUFFIXES)]
    sizes = {p.relative_to(ROOT).as_posix(): p.stat().st_size for p in weights if p.is_file()}
    assert sizes, "git tracks no weights, yet the app loads assets/gmsdi-synthslakh.safetensors"
    assert sum(sizes.values()) <= 60e6, f"tracked weights take {sum(sizes.values()) / 1e6:.1f} MB: {sizes}"
