"""The parts table (gmsdi.text.table): prompts encoded by lookup, exactly as the encoder that made it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gmsdi.data.classes import SYNTH_PROGRAMS, program_name
from gmsdi.data.prompts import compose, stem_prompt
from gmsdi.text import HashTextEncoder, build_text_encoder
from gmsdi.text.table import PartsTable, main, training_vocabulary


@pytest.fixture(scope="module")
def parts_encoder():
    return build_text_encoder("minilm-parts")


@pytest.fixture(scope="module")
def table_file(tmp_path_factory, parts_encoder) -> Path:
    path = tmp_path_factory.mktemp("table") / "parts.safetensors"
    PartsTable.from_encoder(parts_encoder, training_vocabulary(), name="minilm-parts").save(path)
    return path


def _training_prompts(n: int, seed: int) -> list[str]:
    """Prompts as MixtureDataset draws them: random classes, granularities and order."""
    rng = np.random.default_rng(seed)
    classes = sorted(SYNTH_PROGRAMS)
    out = []
    for _ in range(n):
        chosen = rng.choice(len(classes), size=int(rng.integers(1, 5)), replace=False)
        parts = []
        for k in chosen:
            c = classes[k]
            program = int(rng.choice(SYNTH_PROGRAMS[c]))
            parts.append(stem_prompt(c, program_name(program, c == "drums"), rng))
        out.append(compose(parts, rng))
    return out


def test_table_encodes_training_prompts_exactly_as_the_encoder(table_file: Path, parts_encoder) -> None:
    table = build_text_encoder(f"table:{table_file}")
    assert isinstance(table, PartsTable) and table.encoder == "minilm-parts" and table.dim == 384
    prompts = [*_training_prompts(64, seed=1), "", "bass, drums, guitar, piano"]
    got, want = table.encode(prompts), parts_encoder.encode(prompts)
    assert torch.equal(got.mask, want.mask)
    assert torch.allclose(got.tokens, want.tokens, atol=1e-6)
    assert torch.allclose(got.pooled, want.pooled, atol=1e-6)
    assert not got.mask[-2].any()  # the null prompt stays null


def test_unknown_part_is_an_error_naming_it(table_file: Path) -> None:
    table = PartsTable.load(table_file)
    with pytest.raises(KeyError, match="warm fretless tuba"):
        table.encode(["bass, warm fretless tuba"])


def test_bad_tables(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m gmsdi.text.table"):
        PartsTable.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a parts table"):
        PartsTable.load(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="one token per part"):  # word tokens, not part tokens
        PartsTable.from_encoder(HashTextEncoder(dim=8), ["electric bass"], name="hash")


def test_cli_writes_the_training_vocabulary(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    assert main(["--out", str(out), "--extra", "warm bass, tuba"]) == 0
    table = PartsTable.load(out)
    assert {"warm bass", "tuba", "bass", "drum beat", "fretless bass", "room kit"} <= set(table.tokens)
    assert len(table.tokens) == len(training_vocabulary(["warm bass, tuba"]))
