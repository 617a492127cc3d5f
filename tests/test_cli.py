"""`python -m gmsdi`: every task end to end on a tiny checkpoint; bad input gives one error line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from gmsdi.cli import get_parser, main
from gmsdi.models import build_model, model_config, save_model

SR = 16000
FAST = ["--steps", "2", "--window-seconds", "0.064", "--seed", "0", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return str(save_model(path, build_model(model_config("tiny", text_encoder="hash"), seed=0)))


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("audio")
    t = np.arange(int(0.1 * SR)) / SR
    bass = 0.3 * np.sin(2 * np.pi * 55 * t)
    sf.write(d / "bass.wav", bass, SR)
    t22 = np.arange(int(0.1 * 22050)) / 22050
    mix = 0.3 * np.sin(2 * np.pi * 55 * t22) + 0.1 * np.sin(2 * np.pi * 440 * t22)
    sf.write(d / "mix.flac", np.stack([mix, mix], axis=1), 22050)  # stereo at another rate
    sf.write(d / "silent.wav", np.zeros(1600), SR)
    return {"bass": str(d / "bass.wav"), "mix": str(d / "mix.flac"), "silent": str(d / "silent.wav")}


def test_help_shows_examples(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "python -m gmsdi generate bass drums piano" in out
    for task in ("generate", "accompany", "separate", "extract", "ensemble"):
        assert "examples:" in get_parser()._subparsers._group_actions[0].choices[task].format_help()


def test_generate(ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "song"
    assert main(["generate", "bass", "drums", "--seconds", "0.1", "--out", str(out), "--checkpoint", ckpt,
                 "--negative", "-", "", "--gamma-x", "inf", *FAST, "--steps", "8"]) == 0  # 2 steps refuse γ_x = ∞
    assert sorted(p.name for p in (out / "stems").iterdir()) == ["bass.wav", "drums.wav"]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["negative_prompts"] == ["drums", ""] and settings["gamma_x"] == float("inf")
    assert sf.info(str(out / "mix.wav")).frames == round(0.1 * SR)
    assert "wrote 4 files" in capsys.readouterr().out


def test_accompany(ckpt, wavs, tmp_path) -> None:
    out = tmp_path / "band"
    assert main(["accompany", "--locked", f"bass={wavs['bass']}", "--prompts", "piano", "--out", str(out),
                 "--checkpoint", ckpt, "--format", "flac", *FAST]) == 0
    locked, _ = sf.read(out / "stems" / "bass.flac")
    gain = 10 ** (json.loads((out / "settings.json").read_text()).get("saved_gain_db", 0.0) / 20)
    np.testing.assert_allclose(locked, gain * sf.read(wavs["bass"])[0], atol=1e-4)  # 24-bit flac, one common gain


@pytest.mark.parametrize("args", [
    ["separate", "MIX", "--prompts", "bass", "drums", "--constrained", "0"],
    ["extract", "MIX", "--prompt", "bass", "--rest", "drums"],
    ["ensemble", "MIX", "--prompts", "bass", "drums"],
    ["separate", "MIX", "--prompts", "bass", "drums", "--dirac", "projected"],
])
def test_separation_tasks(ckpt, wavs, tmp_path, args) -> None:
    out = tmp_path / "parts"
    args = [wavs["mix"] if a == "MIX" else a for a in args]
    assert main([*args, "--out", str(out), "--checkpoint", ckpt, *FAST, "--steps", "12"]) == 0  # MSDM's form converges
    stems = [sf.read(p)[0] for p in sorted((out / "stems").iterdir())]
    mix = sf.read(out / "mix.wav")[0]
    assert len(stems) == 2 and all(len(s) == len(mix) == round(0.1 * SR) for s in stems)
    if args[0] != "ensemble":
        np.testing.assert_allclose(sum(stems), mix, atol=1e-5)


def test_guidance_per_stem(ckpt, wavs, tmp_path) -> None:
    out = tmp_path / "parts"
    assert main(["ensemble", wavs["mix"], "--prompts", "bass", "drums", "--guidance", "5,2", "--out", str(out),
                 "--checkpoint", ckpt, *FAST, "--steps", "12"]) == 0
    assert json.loads((out / "settings.json").read_text())["guidance"] == [5.0, 2.0]


@pytest.mark.parametrize("args,message", [
    (["separate", "missing.wav", "--prompts", "bass", "drums"], "does not exist"),
    (["separate", "SILENT", "--prompts", "bass", "drums"], "is silent"),
    (["separate", "MIX", "--prompts", "bass"], "at least 2 prompts"),
    (["accompany", "--locked", "bass", "--prompts", "piano"], "--locked takes PROMPT=FILE"),
    (["generate", "bass", "--steps", "0"], "steps must be a whole number"),
    (["generate", "bass", "--gamma-y", "-1"], "gamma must be positive"),
    (["generate", "bass", "--guidance", "5,x"], "numbers joined by commas"),
    (["generate", "bass", "drums", "--guidance", "5,2,2"], "one weight or one per stem (2), got 3"),
    (["extract", "MIX", "--prompt", "bass", "--guidance", "5,2"], "extract takes one guidance weight"),
    (["generate", "bass", "--format", "aiff"], "invalid choice"),
    (["generate"], "required"),
    (["dance", "--out", "x"], "invalid choice"),
])
def test_bad_input_is_one_line_and_status_2(ckpt, wavs, tmp_path, capsys, args, message) -> None:
    args = [wavs["mix"] if a == "MIX" else wavs["silent"] if a == "SILENT" else a for a in args]
    if args[0] in ("separate", "extract", "accompany", "generate") and "--out" not in args and len(args) > 1:
        args += ["--out", str(tmp_path / "o"), "--checkpoint", ckpt, "--quiet"]
    try:
        code = main(args)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_missing_bundled_model_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    import gmsdi.pipeline as pipeline_mod

    monkeypatch.setattr(pipeline_mod.guided, "BUNDLED_CHECKPOINT",
                        pipeline_mod.REPO_ROOT / "assets" / "missing.safetensors")
    assert main(["generate", "bass", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.py" in err[0]


def test_module_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "gmsdi", "separate", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "examples:" in proc.stdout
