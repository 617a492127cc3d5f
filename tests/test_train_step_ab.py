"""benchmarks/train_step_ab.py: both streams are timed on the same inputs, and the class is restored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_fixtures import tiny_bands_config
from script_loader import load_script

from gmsdi.models import bandunet, build_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_ab_times_every_variant_and_restores_the_network() -> None:
    ab = load_script("train_step_ab", ROOT / "benchmarks/train_step_ab.py")
    model = build_model(tiny_bands_config(), seed=0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    own = bandunet.BandUNet2d._stream_dtype, bandunet.BandUNet2d._layout
    rows = ab.time_steps(model, batch=2, samples=1024, repeats=2, layouts=True)
    assert set(rows) == {"fp32 stream", "bf16 stream", "bf16 stream, channels-last"}
    assert all(len(r["ms"]) == 2 and r["median_ms"] > 0 for r in rows.values())
    # the same step on the same inputs: the losses differ by bf16 rounding only
    assert rows["bf16 stream"]["loss"] == pytest.approx(rows["fp32 stream"]["loss"], rel=2e-2)
    assert (bandunet.BandUNet2d._stream_dtype, bandunet.BandUNet2d._layout) == own
    assert all(p.grad is None for p in model.parameters())
    rows = ab.time_steps(model, batch=2, samples=1024, repeats=1, precision="fp32")
    assert set(rows) == {"fp32, contiguous", "fp32, channels-last"}
    # fp32 in either layout: the same step to float rounding
    assert rows["fp32, channels-last"]["loss"] == pytest.approx(rows["fp32, contiguous"]["loss"], rel=1e-4)
    assert (bandunet.BandUNet2d._stream_dtype, bandunet.BandUNet2d._layout) == own
    with pytest.raises(ValueError, match="precision"):
        ab.time_steps(model, batch=2, samples=1024, repeats=1, precision="fp16")
