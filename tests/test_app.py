"""The Gradio app, launched in-process on a tiny untrained model and called through gradio_client.

Every named endpoint (/generate, /accompany, /separate, /extract) is checked for its files (they
exist, last the asked-for time, name the stems) and every kind of bad input for its sentence.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from script_loader import load_script

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from gmsdi.app import AppConfig, AppTasks, build_ui, launch_options, tiny_pipeline  # noqa: E402
from gmsdi.app.handlers import (  # noqa: E402
    new_run,
    parse_gamma,
    parse_seed,
    request_cancel,
    spectrogram_png,
    split_negatives,
    split_prompts,
)
from gmsdi.pipeline import GENERATION  # noqa: E402
from gmsdi.sampling import Cancelled  # noqa: E402

SR = 16000
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword")
REPO = Path(__file__).resolve().parents[1]
CONFIG = AppConfig(max_seconds=3.0, seconds=1.0, generate_steps=2, separate_steps=16, max_file_size="1mb")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_pipeline()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(pipe):
    demo = build_ui(pipe, CONFIG)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(CONFIG))
    try:
        yield gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def _wav(path: Path, audio: np.ndarray, sr: int = SR) -> Path:
    sf.write(path, audio, sr, subtype="FLOAT")
    return path


def _mix(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _seconds(path: str) -> float:
    info = sf.info(path)
    return info.frames / info.samplerate


def _check(out, names: list[str], seconds: float) -> dict:
    stems, mix, zip_path, settings = out
    assert [Path(p).stem for p in stems] == names
    for p in [*stems, mix]:
        assert Path(p).is_file() and _seconds(p) == pytest.approx(seconds, abs=1 / SR)
    with zipfile.ZipFile(zip_path) as zf:
        files = set(zf.namelist())
    assert {"settings.json", "wav/mix.wav", "flac/mix.flac", "wav/settings.json"} <= files
    assert {f"wav/stems/{n}.wav" for n in names} | {f"flac/stems/{n}.flac" for n in names} <= files
    return settings


# -- endpoints ------------------------------------------------------------------------------------
def test_named_endpoints(client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/generate", "/accompany", "/separate", "/extract"}
    assert not api["unnamed_endpoints"]


def test_generate_and_accompany(client, tmp_path) -> None:
    out = client.predict(prompts="bass, drums", seconds=1.0, steps=2, seed=3, api_name="/generate")
    settings = _check(out, ["bass", "drums"], 1.0)
    assert settings["prompts"] == ["bass", "drums"] and settings["seed"] == 3 and settings["steps"] == 2
    assert settings["negative_prompts"] == ["drums", "bass"]
    stems, mix = out[0], out[1]
    # levels: files, not peak-normalised arrays, so the mix is exactly the sum of the stems
    total = sum(sf.read(p, dtype="float32")[0] for p in stems)
    np.testing.assert_allclose(sf.read(mix, dtype="float32")[0], total, atol=1e-5)

    acc = client.predict(locked=[gradio_client.handle_file(stems[0])], locked_prompts="bass",
                         prompts="piano, guitar", negative_prompts="\n-", steps=2, seed=4, api_name="/accompany")
    settings = _check(acc, ["bass", "piano", "guitar"], 1.0)
    assert settings["locked"] == ["bass"] and settings["prompts"] == ["piano", "guitar"]
    np.testing.assert_allclose(sf.read(acc[0][0], dtype="float32")[0], sf.read(stems[0], dtype="float32")[0],
                               atol=1e-6)  # the locked stem comes back unchanged


def test_separate_extract_ensemble(client, tmp_path) -> None:
    mix = gradio_client.handle_file(str(_wav(tmp_path / "mix.wav", _mix(1.0))))
    out = client.predict(mix=mix, prompts="bass, drums, piano", method="separator", steps=12, seed=0,
                         api_name="/separate")
    settings = _check(out, ["bass", "drums", "piano"], 1.0)
    assert settings["task"] == "separate"
    total = sum(sf.read(p, dtype="float32")[0] for p in out[0])
    np.testing.assert_allclose(total, _mix(1.0), atol=1e-4)  # the Dirac separator sums to the mix

    out = client.predict(mix=mix, prompt="bass", steps=12, seed=0, api_name="/extract")
    assert _check(out, ["bass", "rest"], 1.0)["task"] == "extract"

    ogg = REPO / "assets" / "examples" / "synthslakh_test_1.ogg"  # a bundled example, 8 s: cut to fit
    short = _wav(tmp_path / "short.wav", sf.read(ogg, dtype="float32")[0][: SR // 2])
    out = client.predict(mix=gradio_client.handle_file(str(short)), prompts="bass, guitar", method="ensemble",
                         steps=12, seed=0, api_name="/separate")
    assert _check(out, ["bass", "guitar"], 0.5)["task"] == "ensemble"
    # with no method named, /separate runs the ensemble, the Separate tab's default
    out = client.predict(mix=gradio_client.handle_file(str(short)), prompts="bass, guitar", steps=12, seed=0,
                         api_name="/separate")
    assert _check(out, ["bass", "guitar"], 0.5)["task"] == "ensemble"


# -- bad input --------------------------------------------------------------------------------------
def _error(client, match: str, **kwargs) -> None:
    with pytest.raises(Exception, match=match) as info:
        client.predict(**kwargs)
    assert "Traceback" not in str(info.value)


def test_generate_errors(client) -> None:
    _error(client, "at least one prompt", prompts=" , ", api_name="/generate")
    _error(client, "more than this app's limit of 8", prompts=", ".join(["piano"] * 9), api_name="/generate")
    _error(client, "duration .* from 0.1 to 3", prompts="bass", seconds=10, api_name="/generate")
    _error(client, "Steps must be a whole number from 1 to 200", prompts="bass", steps=0, api_name="/generate")
    _error(client, "one negative prompt per line", prompts="bass, drums", negative_prompts="a\nb\nc",
           api_name="/generate")


@pytest.mark.parametrize(("field", "value", "match"), [
    ("seed", "abc", "seed must be a whole number"),
    ("seconds", "long", "seconds must be a number"),
    ("steps", [3], "steps must be a whole number"),
    ("guidance", {"w": 2}, "guidance must be a number"),
    ("gamma_y", "wide", "gamma_y must be a number"),
    ("prompts", 3, "prompts must be text"),
])
def test_wrong_types_get_a_sentence(client, field, value, match) -> None:
    """Every endpoint input of the wrong type is refused with a sentence, before the model runs."""
    _error(client, match, **{"prompts": "bass", field: value, "api_name": "/generate"})


def test_wrong_types_on_the_other_endpoints(client, tmp_path) -> None:
    mix = gradio_client.handle_file(str(_wav(tmp_path / "mix.wav", _mix(0.5))))
    _error(client, "seed must be a whole number", mix=mix, prompts="bass, drums", seed="x", api_name="/separate")
    _error(client, "steps must be a whole number", mix=mix, prompt="bass", steps="many", api_name="/extract")
    _error(client, "method must be text", mix=mix, prompts="bass, drums", method=2, api_name="/separate")
    _error(client, "guidance must be a number", locked=[mix], locked_prompts="bass", prompts="drums",
           guidance="high", api_name="/accompany")


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("silent.wav", "silent", "is silent"),
        ("corrupt.wav", b"RIFF not really a wave file" * 40, "Cannot decode 'corrupt.wav' .* corrupt"),
        ("notes.txt", b"bass, drums", "not a supported audio format"),
        ("long.wav", "long", "longer than the limit of 3 s|more than the limit of 3 s"),
        ("huge.wav", b"\0" * 1_500_000, "(?i)too large|exceeds|size"),
    ],
)
def test_upload_errors(client, tmp_path, name, content, match) -> None:
    path = tmp_path / name
    if content == "silent":
        _wav(path, np.zeros(SR, np.float32))
    elif content == "long":
        _wav(path, _mix(4.0))
    else:
        path.write_bytes(content)
    _error(client, match, mix=gradio_client.handle_file(str(path)), prompts="bass, drums", api_name="/separate")


def test_accompany_errors(client, tmp_path) -> None:
    bass = gradio_client.handle_file(str(_wav(tmp_path / "bass.wav", _mix(0.5))))
    _error(client, "one name in locked_prompts for each locked file", locked=[bass], locked_prompts="",
           prompts="drums", api_name="/accompany")
    _error(client, "nothing to regenerate", locked=[bass], locked_prompts="bass", prompts="", api_name="/accompany")
    _error(client, "Two locked stems are both called 'bass'", locked=[bass, bass], locked_prompts="bass, bass",
           prompts="drums", api_name="/accompany")


def test_separate_errors(client, tmp_path) -> None:
    mix = gradio_client.handle_file(str(_wav(tmp_path / "mix.wav", _mix(0.5))))
    _error(client, "at least two stems", mix=mix, prompts="bass", api_name="/separate")
    _error(client, "one stem name", mix=mix, prompt="bass, drums", api_name="/extract")
    _error(client, "Upload the mix first", mix=None, prompts="bass, drums", api_name="/separate")
    _error(client, r"too few for MSDM's Dirac separator with 3 stems.*dirac='projected'", mix=mix,
           prompts="bass, drums, piano", method="separator", steps=2, api_name="/separate")
    # the default, the ensemble, checks each of its parts before any runs (here 2-stem extractions)
    _error(client, r"too few for MSDM's Dirac separator with 2 stems.*dirac='projected'", mix=mix,
           prompts="bass, drums, piano", steps=2, api_name="/separate")
    out = client.predict(mix=mix, prompts="bass, drums, piano", method="separator", steps=2, seed=0,
                         dirac="projected", api_name="/separate")
    assert _check(out, ["bass", "drums", "piano"], 0.5)["dirac"] == "projected"
    _error(client, "Unknown separator form 'exact'", mix=mix, prompt="bass", dirac="exact", api_name="/extract")


def test_coupling_field(pipe, tmp_path) -> None:
    """The "Tie stems to the mix down to σ" slider reaches the sampler; empty = the pipeline default."""
    tasks = AppTasks(pipe, CONFIG, workdir=tmp_path)
    kw = dict(seconds=0.5, steps=2, seed=0)
    default = tasks.generate(["bass", "drums"], **kw)
    assert default.result.settings["coupling_sigma_min"] == GENERATION.coupling_sigma_min
    tied = tasks.generate(["bass", "drums"], coupling=0.0, **kw)
    untied = tasks.generate(["bass", "drums"], coupling="1000", **kw)
    assert tied.result.settings["coupling_sigma_min"] == 0.0
    assert untied.result.settings["coupling_sigma_min"] == 1000.0
    assert not np.allclose(tied.result.stems["bass"], untied.result.stems["bass"])
    for bad in (-0.1, "low", float("nan"), 1e4):
        with pytest.raises(gr.Error, match="'Tie stems to the mix down to σ' must be a number from 0 to 1000"):
            tasks.generate(["bass"], coupling=bad, **kw)


def test_separator_form(pipe, tmp_path) -> None:
    """The "Separator form" radio: projected runs at 2 steps, where MSDM's form is refused."""
    tasks = AppTasks(pipe, CONFIG, workdir=tmp_path)
    mix = str(_wav(tmp_path / "mix.wav", _mix(0.5)))
    out = tasks.separate(mix, "bass, drums, piano", steps=2, seed=0, dirac="projected")
    assert out.result.settings["dirac"] == "projected"
    with pytest.raises(gr.Error, match="too few"):
        tasks.separate(mix, "bass, drums, piano", steps=2, seed=0, dirac="constrained")
    with pytest.raises(gr.Error, match="Unknown separator form 'exact'"):
        tasks.separate(mix, "bass, drums", steps=2, seed=0, dirac="exact")


# -- cancel -------------------------------------------------------------------------------------------
def test_client_cancel_stops_the_model(client, pipe, monkeypatch) -> None:
    """job.cancel() drops the event in Gradio; the sampler callback sees it and the thread stops."""
    seen = {"steps": 0, "cancelled": threading.Event()}
    generate = pipe.generate

    def counting(*args, callback=None, **kwargs):
        def cb(info):
            seen["steps"] += 1
            return callback(info)

        try:
            return generate(*args, callback=cb, **kwargs)
        except Cancelled:
            seen["cancelled"].set()
            raise

    monkeypatch.setattr(pipe, "generate", counting)
    job = client.submit(prompts="bass, drums", seconds=3.0, steps=200, seed=0, api_name="/generate")
    deadline = time.monotonic() + 20
    while seen["steps"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen["steps"] >= 2, "the run never started"
    job.cancel()
    assert seen["cancelled"].wait(15), "the model kept running after the client cancelled"
    assert seen["steps"] < 200 * 3


def test_stop_flag_stops_a_run(pipe, tmp_path) -> None:
    """The Stop button's path: request_cancel sets the run's flag; the callback returns True."""
    tasks = AppTasks(pipe, CONFIG, workdir=tmp_path)
    token: dict = {}
    flag = new_run(token)
    calls = []

    def progress(fraction, what):
        calls.append(what)
        if len(calls) == 2:
            request_cancel(token)

    with pytest.raises(gr.Error, match="Stopped"):
        tasks.generate(["bass"], seconds=1.0, steps=50, seed=0, progress=progress, flag=flag)
    assert flag.is_set() and 2 <= len(calls) < 10
    assert new_run(token) is not flag and not token["run"].is_set()  # the next run starts clean


# -- helpers ------------------------------------------------------------------------------------------
def test_parsing() -> None:
    assert split_prompts("bass, drums\n piano ,") == ["bass", "drums", "piano"]
    assert split_negatives("", 2) is None
    assert split_negatives("drums, piano\n-", 2) == ["drums, piano", None]
    assert parse_seed("12") == 12 and parse_seed(7.0) == 7 and 0 <= parse_seed("") < 2**31
    assert parse_gamma("", "γ_x") is None and parse_gamma("2", "γ_x") == 2.0
    for bad in (lambda: parse_seed("-1"), lambda: parse_seed("x"), lambda: parse_gamma("-1", "γ_x"),
                lambda: split_negatives("a", 2)):
        with pytest.raises(gr.Error):
            bad()


def test_spectrogram_png_one_scale(tmp_path) -> None:
    from PIL import Image

    loud, quiet = _mix(1.0), 0.01 * _mix(1.0)
    a = np.asarray(Image.open(spectrogram_png(loud, SR, tmp_path / "a.png")).convert("L"), dtype=float)
    b = np.asarray(Image.open(spectrogram_png(quiet, SR, tmp_path / "b.png")).convert("L"), dtype=float)
    assert a.shape == b.shape and a.shape[0] == 128
    assert a.max() > b.max()  # same colour scale: the quieter signal looks darker


def test_main_without_checkpoint(monkeypatch, capsys) -> None:
    app = load_script("gmsdi_app_main", REPO / "app.py")
    import gmsdi.pipeline

    monkeypatch.setattr(gmsdi.pipeline.guided, "BUNDLED_CHECKPOINT", REPO / "assets" / "no-such-model.safetensors")
    assert app.main([]) == 2
    err = capsys.readouterr().err
    assert "no-such-model.safetensors is missing" in err and "--tiny" in err and "Traceback" not in err
    assert app.main(["--checkpoint", "/nonexistent/model.safetensors"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
