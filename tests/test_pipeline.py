"""GMSDIPipeline on a tiny model built in code: shapes, levels, determinism, saving, every error."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

import gmsdi.pipeline as pipeline_mod
from gmsdi.audio import load_audio
from gmsdi.fileio import file_sha256
from gmsdi.models import build_model, model_config, save_model
from gmsdi.pipeline import GMSDIPipeline, Result
from gmsdi.sampling import Cancelled
from gmsdi.text import HashTextEncoder

SR = 16000
FAST = {"steps": 2, "window_seconds": 0.064}  # 1024-sample windows: short inputs still span several
# MSDM's Dirac form refuses fewer steps than converge (`check_dirac_steps`): 12 Euler steps hold up to 4 stems
SEP_FAST = {**FAST, "steps": 12}


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_model():
    model = build_model(model_config("tiny", text_encoder="hash"), seed=0).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def pipe() -> GMSDIPipeline:
    return GMSDIPipeline(_tiny_model(), HashTextEncoder(), device="cpu")


def _tone(seconds: float, freq: float = 220.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _mix(seconds: float = 0.15, sr: int = SR) -> np.ndarray:
    return _tone(seconds, 110, sr) + _tone(seconds, 440, sr, 0.1)


# -- tasks --------------------------------------------------------------------------------------------
def test_generate_shapes_and_settings(pipe) -> None:
    r = pipe.generate(["bass", "drums", "piano"], seconds=0.15, seed=0, **FAST)
    n = round(0.15 * SR)
    assert list(r.stems) == ["bass", "drums", "piano"] and r.sample_rate == SR
    assert all(a.shape == (n,) and a.dtype == np.float32 for a in r.stems.values())
    assert r.mix.shape == (n,) and r.mixture_chain.shape == (n,)
    np.testing.assert_allclose(r.mix, sum(r.stems.values()), atol=1e-6)
    s = r.settings
    assert s["seed"] == 0 and s["chunks"] == 3 and s["negative_prompts"][0] == "drums, piano"
    assert s["mix_prompt"] == "bass, drums, piano" and s["network_calls"] == 3 * (2 * 2 - 1)
    json.dumps(s)  # serialisable


def test_generate_is_deterministic(pipe) -> None:
    a = pipe.generate(["bass", "drums"], seconds=0.1, seed=3, s_churn=10.0, **FAST)
    b = pipe.generate(["bass", "drums"], seconds=0.1, seed=3, s_churn=10.0, **FAST)
    c = pipe.generate(["bass", "drums"], seconds=0.1, seed=4, s_churn=10.0, **FAST)
    assert all(np.array_equal(a.stems[k], b.stems[k]) for k in a.stems)
    assert not np.array_equal(a.stems["bass"], c.stems["bass"])
    drawn = pipe.generate(["bass"], seconds=0.05, steps=1)
    assert isinstance(drawn.settings["seed"], int)


def test_generate_options(pipe) -> None:
    r = pipe.generate(["bass", "drums"], ["", None], seconds=0.05, seed=0, guidance=[1.0, 3.0], mix_guidance=2.0,
                      sampler="euler", resamples=2, gamma_x=float("inf"), gamma_y=3.0, **FAST)
    assert r.settings["negative_prompts"] == ["", "bass"] and r.settings["guidance"] == [1.0, 3.0]
    assert r.settings["network_calls"] == 4


def test_negative_exclude_keeps_pitched_stems_out_of_the_bass_negative(pipe) -> None:
    from gmsdi.pipeline.settings import BASS_NEGATIVE_EXCLUDE

    kw = dict(seconds=0.05, seed=0, steps=1, negative_exclude=BASS_NEGATIVE_EXCLUDE)
    r = pipe.generate(["bass", "drums", "keys"], **kw)
    assert r.settings["negative_prompts"] == ["drums", "bass, keys", "bass, drums"]
    assert pipe.generate(["bass", "drums", "keys"], ["piano", None, None], **kw).settings["negative_prompts"][0] == \
        "piano"  # a user's negative is used as given
    kw.pop("seconds")
    r = pipe.accompany({"piano": _tone(0.05, 440)}, ["bass", "drums"], **kw)  # a locked piano is left out too
    assert r.settings["negative_prompts"] == ["drums", "piano, bass"]



def test_coupling_sigma_min_reaches_the_sampler(pipe) -> None:
    """Above every step's σ the chains run uncoupled: the stems no longer sum to the mixture chain."""
    kw = dict(seconds=0.1, seed=0, steps=4, gamma_mode="denoised")
    coupled = pipe.generate(["bass", "drums"], coupling_sigma_min=0.0, **kw)
    free = pipe.generate(["bass", "drums"], coupling_sigma_min=1e3, **kw)
    assert free.settings["coupling_sigma_min"] == 1e3
    assert pipe.generate(["bass"], seconds=0.05, steps=1).settings["coupling_sigma_min"] == 0.1  # the default
    assert np.abs(coupled.mixture_chain - coupled.mix).max() < 1e-4 * np.abs(coupled.mix).max()
    assert np.abs(free.mixture_chain - free.mix).max() > 1e-2 * np.abs(free.mix).max()


def test_accompany_returns_locked_stems_unchanged(pipe) -> None:
    bass = _tone(0.13, 55)  # 2080 samples: not a multiple of the window
    drums = _tone(0.1, 300, amp=0.2)  # shorter: zero-padded
    r = pipe.accompany({"bass": bass, "drums": drums}, ["piano", "guitar"], seed=0, locked_noise="fresh", **FAST)
    assert list(r.stems) == ["bass", "drums", "piano", "guitar"]
    assert np.array_equal(r.stems["bass"], bass)
    assert np.array_equal(r.stems["drums"][: len(drums)], drums) and not r.stems["drums"][len(drums):].any()
    np.testing.assert_allclose(r.mix, sum(r.stems.values()), atol=1e-6)
    assert r.settings["chunks"] == 3 and r.settings["negative_prompts"][0] == "bass, drums, guitar"


def test_accompany_resamples_locked_input(pipe) -> None:
    bass = _tone(0.1, 55, sr=22050)
    r = pipe.accompany({"bass": (bass, 22050)}, "piano", seed=0, **FAST)
    expected = load_audio((bass, 22050), SR)
    assert np.array_equal(r.stems["bass"], expected) and len(expected) == round(0.1 * SR)


@pytest.mark.parametrize("seconds", [0.05, 0.15])
def test_separate_sums_to_mix(pipe, seconds: float) -> None:
    mix = _mix(seconds)
    r = pipe.separate(mix, ["bass", "drums", "piano"], seed=0, **SEP_FAST)
    assert list(r.stems) == ["bass", "drums", "piano"] and all(a.shape == mix.shape for a in r.stems.values())
    np.testing.assert_array_equal(r.mix, mix)
    np.testing.assert_allclose(sum(r.stems.values()), mix, atol=1e-5)
    assert r.settings["constrained"] == "piano" and r.settings["chunks"] == (1 if seconds < 0.064 else 3)


def test_a_pre_emphasis_model_samples_the_emphasised_audio_and_returns_waveforms() -> None:
    """With `EDMConfig.emphasis` the sampler runs on z = x[n] − a·x[n−1]: the stems still sum to the mix,
    locked stems come back unchanged, and what comes out is the waveform (the inverse filter applied)."""
    import dataclasses

    from gmsdi.models import EDMConfig

    cfg = model_config("tiny", text_encoder="hash")
    cfg = dataclasses.replace(cfg, edm=dataclasses.replace(cfg.edm, emphasis=0.9))
    model = build_model(cfg, seed=0).eval()
    plain = _tiny_model()
    model.load_state_dict(plain.state_dict())
    assert isinstance(model.config, EDMConfig) and model.config.emphasis == 0.9
    emph = GMSDIPipeline(model, HashTextEncoder(), device="cpu")
    mix = _mix(0.15)
    r = emph.separate(mix, ["bass", "drums", "piano"], seed=0, **SEP_FAST)
    np.testing.assert_allclose(sum(r.stems.values()), mix, atol=1e-5)
    bass = _tone(0.13, 55)
    a = emph.accompany({"bass": bass}, ["piano"], seed=0, **FAST)
    assert np.array_equal(a.stems["bass"], bass)
    np.testing.assert_allclose(a.mix, sum(a.stems.values()), atol=1e-6)
    # the same network and seed without emphasis: the sampled z, decoded, is the generated stem
    g_emph = emph.generate(["piano"], seconds=0.128, seed=3, **FAST).stems["piano"]
    g_plain = GMSDIPipeline(plain, HashTextEncoder(), device="cpu").generate(["piano"], seconds=0.128, seed=3,
                                                                            **FAST).stems["piano"]
    np.testing.assert_allclose(model.encode(g_emph), g_plain, atol=1e-4 * max(1.0, np.abs(g_plain).max()))


def test_separate_downmixes_and_resamples(pipe) -> None:
    stereo = np.stack([_mix(0.1, 22050), 0.5 * _mix(0.1, 22050)])  # [C, T]
    r = pipe.separate((stereo.T, 22050), ["bass", "drums"], constrained="bass", seed=0, **SEP_FAST)  # [T, C]
    assert len(r.mix) == round(0.1 * SR)
    np.testing.assert_allclose(r.mix, load_audio(stereo.mean(axis=0), SR, 22050), atol=1e-6)
    np.testing.assert_allclose(sum(r.stems.values()), r.mix, atol=1e-5)


def test_separate_projected_and_the_step_check(pipe, tmp_path) -> None:
    mix = _mix(0.15)
    r = pipe.separate(mix, ["bass", "drums", "piano"], dirac="projected", seed=0, **FAST)  # stable at 2 steps
    np.testing.assert_allclose(sum(r.stems.values()), mix, atol=1e-5)
    assert r.settings["dirac"] == "projected" and r.settings["constrained"] is None
    again = pipe.separate(mix, ["bass", "drums", "piano"], dirac="projected", seed=0, **FAST)
    assert all(np.array_equal(again.stems[k], r.stems[k]) for k in r.stems)
    assert pipe.separate(mix, ["bass", "drums", "piano"], seed=0, **SEP_FAST).settings["dirac"] == "constrained"
    with pytest.raises(ValueError, match=r"2 euler steps \(churn 20\) are too few for MSDM's Dirac separator with 3 "
                                         r"stems.*use steps=\d+ or more, or use dirac='projected'"):
        pipe.separate(mix, ["bass", "drums", "piano"], seed=0, **FAST)
    with pytest.raises(ValueError, match="too few"):
        pipe.extract(mix, "bass", seed=0, steps=1)
    with pytest.raises(ValueError, match="unknown dirac form 'exact'"):
        pipe.separate(mix, ["bass", "drums"], dirac="exact", **SEP_FAST)
    with pytest.raises(ValueError, match="the projected form has none"):
        pipe.separate(mix, ["bass", "drums"], dirac="projected", constrained="bass", **SEP_FAST)
    seen: list[dict] = []
    pipe.separate(mix, ["bass", "drums", "piano"], dirac="projected", seed=0, callback=seen.append, **FAST)
    assert seen[0]["chains"] == ["bass", "drums", "piano"] and seen[0]["x"].shape[1] == 3  # all K are sampled
    # the ensemble checks its parts before running any (here three 2-stem extractors, which need 6 steps)
    f = tmp_path / "ens.json"
    f.write_text(json.dumps({"choice": {"bass": "extractor", "drums": "extractor", "piano": "extractor"}}))
    seen.clear()
    with pytest.raises(ValueError, match="5 euler steps .* with 2 stems"):
        pipe.ensemble(mix, ["drums", "bass", "piano"], results=f, seed=0, steps=5, callback=seen.append)
    assert not seen


def test_extract(pipe) -> None:
    mix = _mix(0.1)
    r = pipe.extract(mix, "bass", seed=0, **SEP_FAST)
    assert list(r.stems) == ["bass", "rest"] and r.settings["rest_prompt"] == ""
    assert r.settings["negative_prompts"] == ["", "bass"]
    np.testing.assert_allclose(r.stems["bass"] + r.stems["rest"], mix, atol=1e-5)
    r = pipe.extract(mix, "bass", "drums, piano", seed=0, **SEP_FAST)
    assert r.settings["negative_prompts"] == ["drums, piano", "bass"]


def test_ensemble(pipe, tmp_path, monkeypatch) -> None:
    from gmsdi.inference import ensemble

    monkeypatch.setattr(ensemble, "ENSEMBLE_PATH", tmp_path / "none.json")
    r = pipe.ensemble(_mix(0.05), ["drums", "bass", "piano"], seed=0, steps=12)
    assert r.settings["methods"] == {"drums": "separator", "bass": "extractor", "piano": "extractor"}
    assert list(r.stems) == ["drums", "bass", "piano"] and all(len(a) == len(r.mix) for a in r.stems.values())
    f = tmp_path / "ens.json"
    f.write_text(json.dumps({"choice": {"bass": "separator", "drums": "separator", "piano": "separator"}}))
    r = pipe.ensemble(_mix(0.05), ["drums", "bass", "piano"], results=f, seed=0, steps=12)
    assert set(r.settings["methods"].values()) == {"separator"}
    np.testing.assert_allclose(sum(r.stems.values()), r.mix, atol=1e-5)
    assert r.settings["warnings"] == []  # the file names no checkpoint: nothing to compare


def test_an_ensemble_choice_made_for_another_checkpoint_is_a_warning(pipe, tmp_path, monkeypatch) -> None:
    f = tmp_path / "ens.json"
    choice = {"choice": {"bass": "separator", "drums": "separator"}}
    monkeypatch.setattr(pipe, "checkpoint_sha256", "a" * 64)
    f.write_text(json.dumps({**choice, "checkpoint_sha256": "b" * 64}))
    r = pipe.ensemble(_mix(0.05), ["drums", "bass"], results=f, seed=0, steps=12)
    [warning] = r.settings["warnings"]
    assert "bbbbbbbbbbbb" in warning and "aaaaaaaaaaaa" in warning and "python -m gmsdi.eval ensemble-choice" in warning
    f.write_text(json.dumps({**choice, "checkpoint_sha256": "a" * 64}))
    assert pipe.ensemble(_mix(0.05), ["drums", "bass"], results=f, seed=0, steps=12).settings["warnings"] == []


def test_ensemble_guidance_per_stem(pipe, tmp_path) -> None:
    f = tmp_path / "ens.json"
    f.write_text(json.dumps({"choice": {"bass": "extractor", "drums": "extractor", "piano": "extractor"}}))
    prompts = ["drums", "bass", "piano"]
    one = pipe.ensemble(_mix(0.05), prompts, results=f, seed=0, steps=12, guidance=2.0)
    per = pipe.ensemble(_mix(0.05), prompts, results=f, seed=0, steps=12, guidance=[2.0, 2.0, 5.0])
    assert one.settings["guidance"] == [2.0, 2.0, 2.0] and per.settings["guidance"] == [2.0, 2.0, 5.0]
    for name in ("drums", "bass"):  # each extractor uses its own stem's weight only
        np.testing.assert_array_equal(one.stems[name], per.stems[name])
    assert not np.allclose(one.stems["piano"], per.stems["piano"])
    with pytest.raises(ValueError, match="one value per stem"):
        pipe.ensemble(_mix(0.05), prompts, results=f, seed=0, steps=12, guidance=[2.0, 5.0])
    # the separator runs all stems together, each chain with its own stem's weight
    f.write_text(json.dumps({"choice": {"bass": "separator", "drums": "separator", "piano": "separator"}}))
    one = pipe.ensemble(_mix(0.05), prompts, results=f, seed=0, steps=12, guidance=2.0)
    per = pipe.ensemble(_mix(0.05), prompts, results=f, seed=0, steps=12, guidance=[2.0, 2.0, 5.0])
    same = pipe.separate(_mix(0.05), prompts, seed=0, steps=12, guidance=[2.0, 2.0, 5.0])
    assert per.settings["guidance"] == [2.0, 2.0, 5.0] and not np.allclose(one.stems["drums"], per.stems["drums"])
    for name in prompts:
        np.testing.assert_allclose(per.stems[name], same.stems[name], atol=1e-6)


def test_callback_progress_and_cancel(pipe) -> None:
    seen: list[dict] = []
    pipe.generate(["bass", "drums"], seconds=0.15, seed=0, callback=seen.append, **FAST)
    progress = [i["progress"] for i in seen]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    assert {i["chunk"] for i in seen} == {0, 1, 2} and seen[0]["chains"] == ["bass", "drums", "mix"]
    assert seen[0]["x"].shape == (1, 3, 1024)
    with pytest.raises(Cancelled):
        pipe.separate(_mix(0.1), ["bass", "drums"], seed=0, callback=lambda info: True, **SEP_FAST)


def test_levels_keep_relative_loudness(pipe) -> None:
    """Scaling the input scales every output stem by the same factor."""
    mix = _mix(0.05)
    a = pipe.separate(mix, ["bass", "drums"], seed=0, steps=12)
    b = pipe.separate(0.1 * mix, ["bass", "drums"], seed=0, steps=12)
    for k in a.stems:
        np.testing.assert_allclose(b.stems[k], 0.1 * a.stems[k], rtol=1e-3, atol=1e-6)
    assert b.settings["input_gain_db"] == pytest.approx(a.settings["input_gain_db"] + 20, abs=1e-3)


# -- results ------------------------------------------------------------------------------------------
def test_result_save_formats(tmp_path) -> None:
    stems = {"electric bass": _tone(0.1, 55, amp=1.5), "drums": _tone(0.1, 200)}
    r = Result(stems, sum(stems.values()), SR, {"task": "test"})
    paths = r.save(tmp_path / "wav")
    names = sorted(p.relative_to(tmp_path / "wav").as_posix() for p in paths)
    assert names == ["mix.wav", "settings.json", "stems/drums.wav", "stems/electric_bass.wav"]
    back, rate = sf.read(tmp_path / "wav" / "stems" / "electric_bass.wav", dtype="float32")
    assert rate == SR and np.array_equal(back, stems["electric bass"])  # float wav: levels as they are
    r.save(tmp_path / "flac", format="flac")
    settings = json.loads((tmp_path / "flac" / "settings.json").read_text())
    peak = np.abs(sf.read(tmp_path / "flac" / "mix.flac")[0]).max()
    assert peak < 1.0 and settings["saved_gain_db"] < 0  # one common gain instead of clipping
    r.save(tmp_path / "mp3", format="mp3")
    assert sf.info(str(tmp_path / "mp3" / "mix.mp3")).frames > 0
    z = r.save_zip(tmp_path / "r.zip", format="flac")
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == ["mix.flac", "settings.json", "stems/drums.flac", "stems/electric_bass.flac"]
        assert json.loads(zf.read("settings.json"))["task"] == "test"
    with pytest.raises(ValueError, match="valid names are"):
        r.save(tmp_path / "x", format="aiff")


def test_from_pretrained(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline_mod.guided, "BUNDLED_CHECKPOINT",
                        pipeline_mod.REPO_ROOT / "assets" / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="train.py .*--export"):
        GMSDIPipeline.from_pretrained()
    path = save_model(tmp_path / "tiny.safetensors", _tiny_model())
    loaded = GMSDIPipeline.from_pretrained(path, device="cpu")
    # bf16 autocast by default where the CPU has bf16 instructions (AMX / AVX-512-BF16), else none
    assert loaded.checkpoint == str(path)
    assert loaded.autocast_dtype == (torch.bfloat16 if pipeline_mod.cpu_has_fast_bf16() else None)
    r = loaded.generate("bass", seconds=0.05, seed=0, steps=2)
    # records never hold a machine's absolute path: repo-relative, else the file name, and the sha256
    assert r.settings["checkpoint"] == "tiny.safetensors"
    assert r.settings["checkpoint_sha256"] == file_sha256(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        GMSDIPipeline.from_pretrained(tmp_path / "nope.safetensors")


# -- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,message", [
    (lambda p: p.generate([], seconds=0.1), "no prompt given"),
    (lambda p: p.generate("", seconds=0.1), "is empty; name an instrument"),
    (lambda p: p.generate([3], seconds=0.1), "must be strings"),
    (lambda p: p.generate(["x"] * 9, seconds=0.1), "9 stems requested, more than the limit of 8"),
    (lambda p: p.accompany({"a": _tone(0.1)}, ["x"] * 8), "9 stems requested"),
    (lambda p: p.generate(["bass"], gamma_x=0.0), "gamma_x must be positive"),
    (lambda p: p.generate(["bass"], gamma_y=-1.0), "gamma_y must be positive"),
    (lambda p: p.generate(["a", "b", "c", "d"], gamma_x=0.5, gamma_y=0.5, steps=32, seconds=0.1, gamma_mode="relative"),
     r"too tight for 32 heun steps with 4 generated source\(s\).*Use gamma_x=\d"),
    (lambda p: p.generate(["a", "b", "c", "d"], gamma_x=0.5, gamma_y=0.5, steps=32, seconds=0.1),
     r"over-correct the residual of the 5 chains' estimates .* use gamma_x = gamma_y ≥ 1\.58"),
    (lambda p: p.generate(["bass"], gamma_mode="log"), "unknown gamma mode"),
    (lambda p: p.generate(["bass"], coupling_sigma_min=-1.0), "coupling_sigma_min must be a number ≥ 0"),
    (lambda p: p.generate(["bass"], steps=0), "steps must be a whole number from 1 to 1000"),
    (lambda p: p.generate(["bass"], steps=2.5), "steps must be a whole number"),
    (lambda p: p.generate(["bass"], sampler="rk4"), r"unknown sampler 'rk4'; valid names are \['euler', 'heun'\]"),
    (lambda p: p.generate(["bass"], guidance=float("nan")), "guidance must be a finite number"),
    (lambda p: p.generate(["bass", "drums"], guidance=[1.0]), "one value per stem"),
    (lambda p: p.generate(["bass"], seconds=0), "seconds must be in"),
    (lambda p: p.generate(["bass"], seconds=601), "seconds must be in"),
    (lambda p: p.generate(["bass"], seed=-1), "seed must be a whole number"),
    (lambda p: p.generate(["bass"], ["a", "b"]), "one entry per prompt"),
    (lambda p: p.generate(["bass"], gamma_mode="absolute"), "give gamma_x and gamma_y"),
    (lambda p: p.separate(_mix(), ["bass"]), "at least 2 prompts"),
    (lambda p: p.separate(_mix(), ["bass", "drums"], constrained="piano"), "is not one of the prompts"),
    (lambda p: p.separate(np.zeros(0, np.float32), ["bass", "drums"]), "mix is empty"),
    (lambda p: p.separate(np.zeros(1600, np.float32), ["bass", "drums"]), "mix is silent"),
    (lambda p: p.separate(np.full(1600, np.nan, np.float32), ["bass", "drums"]), "NaN or infinite"),
    (lambda p: p.separate(np.array([0.1, np.inf] * 800, np.float32), ["bass", "drums"]), "NaN or infinite"),
    (lambda p: p.separate(np.zeros((1600, 20, 3), np.float32), ["bass", "drums"]), "mix has shape"),
    (lambda p: p.separate("no/such/file.wav", ["bass", "drums"]), "does not exist"),
    (lambda p: p.separate(_mix(), ["bass", "drums"], overlap=1.0), "overlap is a fraction"),
    (lambda p: p.extract(_mix(), ["bass", "drums"]), "extract takes one prompt"),
    (lambda p: p.accompany({}, ["bass"]), "at least one locked stem"),
    (lambda p: p.accompany({"bass": _tone(0.1)}, ["drums"], locked_noise="pink"), "unknown locked noise"),
])
def test_errors(pipe, call, message: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        call(pipe)


def test_short_clip_is_refused(pipe, monkeypatch) -> None:
    """A mix or locked stem shorter than MIN_INPUT_SECONDS gets a sentence, not a result."""
    monkeypatch.setattr(pipeline_mod.settings, "MIN_INPUT_SECONDS", 0.5)
    with pytest.raises(ValueError, match=r"mix is 0.10 s long, shorter than the 0.5 s gmsdi needs.*longer clip"):
        pipe.separate(_mix(0.1), ["bass", "drums"])
    with pytest.raises(ValueError, match=r"locked stem 'bass' is 0.10 s long"):
        pipe.accompany({"bass": _tone(0.1)}, ["drums"])
    assert pipe.extract(_mix(0.5), "bass", steps=2, seed=0, dirac="projected").stems["bass"].shape == (8000,)


def test_too_long_and_corrupt_audio(pipe, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline_mod.settings, "MAX_SECONDS", 0.5)
    with pytest.raises(ValueError, match=r"mix is 1.0 s long, more than the limit of 0.5 s"):
        pipe.separate(_mix(1.0), ["bass", "drums"])
    long_file = tmp_path / "long.wav"
    sf.write(long_file, _mix(1.0), SR)
    with pytest.raises(ValueError, match="more than the limit of 0.5 s; trim it"):
        pipe.separate(long_file, ["bass", "drums"])
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    with pytest.raises(ValueError, match="cannot decode .* corrupt or not audio"):
        pipe.separate(corrupt, ["bass", "drums"])


def test_audio_file_formats(pipe, tmp_path) -> None:
    """wav, flac and mp3 read through soundfile; m4a (ffmpeg) through pydub."""
    mix = _mix(0.1, 44100)
    for fmt in ("wav", "flac"):
        sf.write(tmp_path / f"m.{fmt}", np.stack([mix, mix], axis=1), 44100)
        y = load_audio(tmp_path / f"m.{fmt}", SR)
        assert len(y) == round(0.1 * SR)
    from gmsdi.audio import _pydub

    AudioSegment = _pydub().AudioSegment  # noqa: N806
    pcm = (mix * 32767).astype(np.int16)
    AudioSegment(pcm.tobytes(), frame_rate=44100, sample_width=2, channels=1).export(tmp_path / "m.m4a", format="ipod")
    y = load_audio(tmp_path / "m.m4a", SR)
    assert abs(len(y) - round(0.1 * SR)) < 0.05 * SR and np.abs(y).max() > 0.1


def test_separation_churn_floor_and_guidance_interval_reach_the_sampler(pipe) -> None:
    """`s_tmin` stops the churn below it and `guidance_sigma_min` the negative pass, in the separator."""
    seen: list[tuple[float, float]] = []
    out = pipe.separate(_mix(0.5), ["bass", "piano"], seed=0, steps=12, s_churn=10.0, s_tmin=0.05,
                        guidance_sigma_min=0.05,
                        callback=lambda info: seen.append((info["sigma"], info["sigma_hat"])))
    assert all((hat == s) == (s < 0.05) for s, hat in seen) and any(s < 0.05 for s, _ in seen)
    assert out.settings["s_tmin"] == 0.05 and out.settings["guidance_sigma_min"] == 0.05
    guided_all = pipe.separate(_mix(0.5), ["bass", "piano"], seed=0, steps=12, s_churn=10.0, s_tmin=0.05)
    assert guided_all.settings["network_samples"] > out.settings["network_samples"]  # fewer negative passes


def test_a_diverged_sampler_is_an_error_that_says_what_to_change(pipe, monkeypatch) -> None:
    """Non-finite audio never reaches the user: the task raises DivergedError (a ValueError, so the app and
    CLI show its sentence), naming the settings to change."""
    import gmsdi.pipeline.engine as engine
    from gmsdi.pipeline import DivergedError

    monkeypatch.setattr(engine, "separate_sources", lambda denoiser, segment, k, *a, **kw: torch.full(
        (segment.shape[0], k, segment.shape[-1]), float("nan")))
    with pytest.raises(DivergedError, match=r"separate: the sampler diverged .* s_tmin .* dirac='projected'"):
        pipe.separate(_mix(0.5), ["bass", "piano"], seed=0, steps=12)
