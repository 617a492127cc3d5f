"""gmsdi.eval.instruments: the instrument probe learns distinct timbres, scores and classifies clips,
saves and loads, and `python -m gmsdi.eval instruments` writes its result files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from eval_fixtures import make_four_stem_set

from gmsdi.eval import cli
from gmsdi.eval.instruments import InstrumentProbe, ProbeConfig, classify, scores, train_probe
from gmsdi.fileio import relative_paths
from gmsdi.pipeline import GMSDIPipeline

pytestmark = pytest.mark.usefixtures("one_thread")
FOUR = ("bass", "drums", "guitar", "piano")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_four_stem_set(tmp_path_factory.mktemp("four"), splits=("train", "validation", "test"), tracks=2)


@pytest.fixture(scope="module")
def trained(data: Path) -> tuple[InstrumentProbe, dict]:
    cfg = ProbeConfig(classes=FOUR, widths=(16, 16), hidden=32, crops=128, val_crops=32, steps=60, batch_size=32,
                      lr=3e-3)
    return train_probe(data, cfg)


def test_probe_learns_the_four_timbres(trained) -> None:
    probe, fit = trained
    val = fit["validation"]
    # an untrained probe is at chance (0.25); the fixture's four stems have distinct spectra
    assert val["balanced_accuracy"] >= 0.75, val
    assert sum(v["n"] for v in val["per_class"].values()) == 32
    assert len(fit["history"]) == 60 // 50


def test_classify_stems_and_silence(trained, data: Path) -> None:
    probe, _ = trained
    meta_classes = {"S00": "bass", "S01": "drums", "S02": "guitar", "S03": "piano"}
    track = sorted((data / "test").iterdir())[0]
    clips = []
    for stem, cls in meta_classes.items():
        audio, sr = sf.read(track / "stems" / f"{stem}.flac", dtype="float32")
        clips.append((audio[: 3 * sr], sr, cls))
    clips.append((np.zeros(16000, np.float32), 16000, "bass"))
    out = classify(probe, clips)
    assert out["silent"] == 1 and out["clips"][-1]["predicted"] is None
    assert out["accuracy"] >= 0.75 and len(out["clips"]) == 5
    with pytest.raises(ValueError, match="not \\['banjo'\\]"):
        classify(probe, [(clips[0][0], 16000, "banjo")])


def test_windows_drop_silence_and_pad_short_clips() -> None:
    probe = InstrumentProbe(ProbeConfig(classes=FOUR, widths=(8,), hidden=8))
    n = probe.window
    x = np.zeros(3 * n, np.float32)
    x[:n] = np.random.default_rng(0).standard_normal(n)
    w = probe.windows(x, 16000)
    assert w.shape[1] == n and 1 <= len(w) <= 3  # the windows over the silent tail are dropped
    assert len(probe.windows(np.ones(100, np.float32), 16000)) == 1
    assert len(probe.windows(np.zeros(2 * n, np.float32), 16000)) == 0
    assert probe.windows(np.ones(8000, np.float32), 8000).shape == (1, n)  # resampled to 16 kHz


def test_scores_on_a_known_confusion() -> None:
    probs = np.eye(3)[[0, 0, 1, 2, 2, 2]]
    labels = np.array([0, 1, 1, 2, 2, 0])
    s = scores(probs, labels, ("a", "b", "c"))
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["per_class"]["a"] == {"recall": 0.5, "n": 2} and s["per_class"]["b"]["recall"] == 0.5
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert s["confusion"] == [[1, 0, 1], [1, 1, 0], [0, 0, 2]]


def test_report_per_stem_column_with_silent_stems() -> None:
    from gmsdi.eval.report import _per_stem

    clips = [{"named": "bass", "predicted": "bass"}, {"named": "bass", "predicted": "drums"},
             {"named": "bass", "predicted": None}, {"named": "drums", "predicted": None},
             {"named": "synth_lead", "predicted": "guitar"}]
    res = {"clips": clips, "per_class": {"bass": {"recall": 0.5, "n": 2}, "synth_lead": {"recall": 0.0, "n": 1}}}
    # drums: all silent, so no recall (and no KeyError); silent stems never fill the bracket
    assert _per_stem(res) == "bass 0.50 (drums) · drums – · synth lead 0.00 (guitar)"


def test_save_and_load(trained, tmp_path: Path) -> None:
    probe, _ = trained
    path = probe.save(tmp_path / "probe.safetensors")
    again = InstrumentProbe.from_pretrained(path)
    assert again.classes == FOUR and again.config.widths == (16, 16)
    x = torch.randn(2, probe.window, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(again(x), probe.eval()(x))
    with pytest.raises(FileNotFoundError, match="--train"):
        InstrumentProbe.from_pretrained(tmp_path / "none.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an instrument probe"):
        InstrumentProbe.from_pretrained(tmp_path / "other.safetensors")


def test_cli_train_generate_and_files(data: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    common = ["--quick", "--data", str(data), "--results", str(tmp_path), "--quiet"]
    assert cli.main(["instruments", "--train", "--models", "gmsdi", *common]) == 0
    probe = json.loads((tmp_path / "instruments-probe.json").read_text())
    assert probe["results"]["test"]["classes"] == list(FOUR) and probe["probe_sha256"]
    gen = json.loads((tmp_path / "instruments-gmsdi.json").read_text())
    assert [c["named"] for c in gen["results"]["clips"]] == list(FOUR) * 2  # 2 quick songs × 4 stems
    prompts = ["electric bass", "drum kit", "acoustic guitar", "grand piano"]
    assert cli.main(["instruments", "--models", "gmsdi", "--prompts", *prompts, "--tag=-p", *common]) == 0
    worded = json.loads((tmp_path / "instruments-gmsdi-p.json").read_text())
    assert worded["prompts"] == prompts and [c["named"] for c in worded["results"]["clips"]] == list(FOUR) * 2
    negative = ["-", "", "bass, drums, guitar, piano", "-"]
    seen = []  # the negatives each generate() call gets
    generate = GMSDIPipeline.generate
    monkeypatch.setattr(GMSDIPipeline, "generate", lambda self, prompts, negative_prompts=None, **kw: (
        seen.append(negative_prompts), generate(self, prompts, negative_prompts, **kw))[1])
    assert cli.main(["instruments", "--models", "gmsdi", "--negative", *negative, "--tag=-n", *common]) == 0
    negated = json.loads((tmp_path / "instruments-gmsdi-n.json").read_text())
    assert negated["negative_prompts"] == seen[0] == seen[1] == [None, "", "bass, drums, guitar, piano", None]
    assert cli.main(["instruments", "--models", "gmsdi", "--negative", "-", *common]) == 2
    assert "one negative prompt per stem" in capsys.readouterr().err
    assert cli.main(["instruments", "--files", "x.wav=bass", "--negative", *negative, *common]) == 2
    assert "pass --models" in capsys.readouterr().err
    assert cli.main(["instruments", "--models", "gmsdi", "--prompts", "bass", *common]) == 2
    assert "one non-empty prompt per stem" in capsys.readouterr().err
    assert cli.main(["instruments", "--files", "x.wav=bass", "--prompts", *prompts, *common]) == 2
    assert "pass --models" in capsys.readouterr().err
    wav = tmp_path / "x.wav"
    sf.write(wav, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    assert cli.main(["instruments", "--files", f"{wav}=drums", *common]) == 0
    files = json.loads((tmp_path / "instruments-files.json").read_text())
    assert files["results"]["clips"][0]["file"] == relative_paths(str(wav))  # results hold no machine paths
    assert not files["results"]["clips"][0]["file"].startswith("/")
    assert "named drums, sounds like" in capsys.readouterr().out
    report = tmp_path / "RESULTS.md"
    assert cli.main(["report", "--quick", "--results", str(tmp_path), "--out", str(report)]) == 0
    text = report.read_text()
    assert "## Instrument identity" in text and f"| {relative_paths(str(wav))} | drums |" in text
    section = text.split("## Instrument identity")[1]
    row = next(line for line in section.splitlines() if line.startswith("| GMSDI"))
    assert row.endswith("| 2 × 3 s, seeds 0–1 |")
    assert "| electric bass, drum kit, acoustic guitar, grand piano |" in section
    assert "| bass, drums, guitar, piano; negative –, ∅, “bass, drums, guitar, piano”, – |" in section
    assert cli.main(["instruments", *common]) == 2
    assert cli.main(["instruments", "--files", "nofile", *common]) == 2
    assert "FILE=CLASS" in capsys.readouterr().err


def test_noise_class_learns_coloured_noise_and_model_outputs(data: Path, tmp_path: Path) -> None:
    from gmsdi.eval.instruments import noise_crops
    rng = np.random.default_rng(3)
    junk = tmp_path / "junk.wav"  # a "model output" that is noise with clicks
    x = rng.standard_normal(16000 * 4).astype(np.float32) * 0.05
    x[::4000] = 0.9
    sf.write(junk, x, 16000)
    real = torch.from_numpy(rng.standard_normal((4, 8000)).astype(np.float32))
    crops = noise_crops(real, 6, [junk], 16000, seed=0)
    assert crops.shape == (6, 8000) and torch.isfinite(crops).all()
    cfg = ProbeConfig(classes=FOUR, widths=(16, 16), hidden=32, crops=128, val_crops=32, steps=80, batch_size=32,
                      lr=3e-3, noise_class="noise", noise_crops=64, noise_files=(str(junk),))
    probe, fit = train_probe(data, cfg)
    assert probe.classes == (*FOUR, "noise")
    val = fit["validation"]["per_class"]
    assert val["noise"]["n"] == 3 and val["noise"]["recall"] >= 0.66  # held-out coloured noise is "noise"
    assert np.mean([val[c]["recall"] for c in FOUR]) >= 0.75  # and the instruments are still told apart
