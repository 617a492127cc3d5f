"""benchmarks/look.py on a tiny untrained model: songs and single-prompt clips give one generated clip per class
and seed, and the record says which of the two it drew."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from script_loader import load_script
from slakh_fixtures import StemSpec, write_track

from gmsdi.pipeline.settings import GENERATION

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test split with one 4 s track in which bass, drums, guitar and piano all play throughout."""
    root = tmp_path_factory.mktemp("slakh")
    notes = [(0.5 * k, 0.5 * k + 0.45) for k in range(8)]
    write_track(root / "test" / "Track00001", {
        "S00": StemSpec("Bass", 33, notes, 0.1, 4.0),
        "S01": StemSpec("Drums", 0, notes, 0.2, 4.0, is_drum=True),
        "S02": StemSpec("Guitar", 27, notes, 0.15, 4.0),
        "S03": StemSpec("Piano", 0, notes, 0.05, 4.0),
    }, mix_seconds=4.0)
    return root


@pytest.mark.parametrize("single", [False, True])
def test_look_draws_each_class_per_seed(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        single: bool) -> None:
    script = load_script("look", ROOT / "benchmarks/look.py")
    monkeypatch.setattr(script, "ROOT", tmp_path)  # every output lands under tmp_path
    argv = ["--quick", "--data", str(data), "--tag", "t"] + (["--single", "--guidance-sigma-min", "0.05"] if single
                                                            else ["--stem-guidance", "bass=1.5", "--negative",
                                                                  "bass=drums", "--negative", "piano="])
    assert script.main(argv) == 0

    record = json.loads((tmp_path / "runs/look/t.json").read_text())
    assert record["single"] is single
    assert record["prompts"] == ([["bass"], ["drums"], ["guitar"], ["piano"]] if single
                                 else ["bass", "drums", "guitar", "piano"])
    for c in ("bass", "drums", "guitar", "piano"):
        gen = record["tf_contrast"][c]["generated"]["clips"]
        assert len(gen) == 2  # --quick: seeds 0 and 1
        for seed in (0, 1):
            audio, sr = sf.read(tmp_path / f"runs/look/t/seed{seed}_{c}.wav")
            assert sr == 16000 and len(audio) == 16000  # --quick: 1 s
    assert (tmp_path / "runs/look/look_t.png").stat().st_size > 0
    g = GENERATION.guidance
    assert record["settings"]["guidance"] == ([g] if single else [1.5, g, g, g])  # the last call's stems
    assert record["settings"]["negative_prompts"] == ([""] if single else  # "": the null prompt
                                                      ["drums", "bass, guitar, piano", "bass, drums, piano", ""])
    assert record["settings"]["guidance_sigma_min"] == (0.05 if single else GENERATION.guidance_sigma_min)


@pytest.mark.parametrize("flags", [["--stem-guidance", "flute=2"], ["--stem-guidance", "bass=x"],
                                   ["--negative", "bass"]])
def test_look_rejects_a_malformed_per_class_flag(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("look", ROOT / "benchmarks/look.py")
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--quick", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "CLASS=VALUE" in err or "must be a float" in err


def test_look_redraws_the_clips_of_an_earlier_run(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("look", ROOT / "benchmarks/look.py")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    redraw = ["--quick", "--data", str(data), "--tag", "t", "--redraw", "--max-khz", "1.5"]
    with pytest.raises(SystemExit) as exit_info:  # nothing generated yet under this tag
        script.main(redraw)
    assert exit_info.value.code == 2 and "run `python benchmarks/look.py --tag t` first" in capsys.readouterr().err

    assert script.main(["--quick", "--data", str(data), "--tag", "t"]) == 0
    record = (tmp_path / "runs/look/t.json").read_bytes()
    assert script.main(redraw) == 0
    assert (tmp_path / "runs/look/look_t_1.5khz.png").stat().st_size > 0
    assert (tmp_path / "runs/look/t.json").read_bytes() == record  # the figures stay those of the run
