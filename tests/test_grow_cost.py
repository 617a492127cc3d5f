"""benchmarks/grow_cost.py: grown variants compute what the source did, are all timed, and bad --grow is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_fixtures import tiny_bands_config
from script_loader import load_script

from gmsdi.models import build_model
from gmsdi.text import HashTextEncoder

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_variants_start_as_the_source_and_are_all_timed() -> None:
    cost = load_script("grow_cost", ROOT / "benchmarks/grow_cost.py")
    source = build_model(tiny_bands_config(), seed=0).eval()
    with torch.no_grad():
        for p in source.net.unembed.parameters():
            p.normal_(std=0.1)
    models = cost.grown_variants(source, [{"refine_channels": 8}, {"num_blocks": [2, 2]}])
    assert list(models) == ["source", '{"refine_channels": 8}', '{"num_blocks": [2, 2]}']
    x = 0.1 * torch.randn(1, 1, 1024, generator=torch.Generator().manual_seed(0))
    cond = HashTextEncoder(384).encode(["bass"])
    with torch.no_grad():
        for model in models.values():
            assert torch.allclose(model.eval()(x, 0.3, cond), source(x, 0.3, cond), atol=1e-6)
    rows = cost.time_variants(models, 2, 1024, 1, 2048, repeats=1)
    assert set(rows) == set(models) and all(r["train_ms"] > 0 and r["infer_ms"] > 0 for r in rows.values())
    assert rows['{"refine_channels": 8}']["params"] > rows["source"]["params"]


def test_quick_run_writes_its_record_and_bad_grow_is_refused(capsys) -> None:
    cost = load_script("grow_cost", ROOT / "benchmarks/grow_cost.py")
    assert cost.main(["--quick"]) == 0
    record = json.loads((ROOT / "runs/grow_cost.json").read_text())
    assert len(record["variants"]) == 3 and record["command"] == "python benchmarks/grow_cost.py --quick"
    with pytest.raises(SystemExit) as e:
        cost.main(["--quick", "--grow", "refine_channels=8"])
    assert e.value.code == 2 and "is not JSON" in capsys.readouterr().err
    assert cost.main(["--quick", "--grow", '{"channels": [8, 16]}']) == 2
    assert "cannot be built" in capsys.readouterr().err
