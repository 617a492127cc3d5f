"""`python -m gmsdi.eval`: every subcommand in --quick mode on a four-stem set built in code, the result
files, the ensemble choice that the pipeline reads, and the report."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from eval_fixtures import make_four_stem_set

from gmsdi.eval import cli, records
from gmsdi.eval.methods import quick_model
from gmsdi.eval.report import SEPARATION_HEADER
from gmsdi.inference.ensemble import load_choices
from gmsdi.pipeline import GMSDIPipeline

STEMS = ["bass", "drums", "guitar", "piano"]
# --quick FAD sets have a few patches of 200 dimensions: their FAD is NaN by design.
pytestmark = [pytest.mark.filterwarnings("ignore:FAD not computed"),
              pytest.mark.filterwarnings("ignore:.*embeddings of dimension 200"),
              pytest.mark.usefixtures("one_thread")]



@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_four_stem_set(tmp_path_factory.mktemp("four"))


@pytest.fixture(scope="module")
def results(tmp_path_factory, data: Path) -> Path:
    """One quick run of each subcommand into one results folder (shared by the tests below)."""
    out = tmp_path_factory.mktemp("results")
    common = ["--quick", "--data", str(data), "--results", str(out), "--quiet"]
    assert cli.main(["separation", "--method", "irm", "mixture", "msdm", "gmsdi-separator", "notags-separator",
                     *common]) == 0
    assert cli.main(["fad", "--models", "gmsdi", "msdm", *common]) == 0
    assert cli.main(["sweep", "--axes", "x", *common]) == 0
    assert cli.main(["steps", "--method", "gmsdi-separator", *common]) == 0
    assert cli.main(["ensemble-choice", *common]) == 0
    assert cli.main(["sensitivity", "--models", "gmsdi", "gmsdi-notags", *common]) == 0
    return out


def test_separation_results(results: Path, data: Path) -> None:
    irm = json.loads((results / "separation-irm.json").read_text())
    assert irm["command"].startswith("python -m gmsdi.eval separation --method irm")
    assert irm["data"]["split"] == "test" and irm["data"]["tracks_used"] == 1 and irm["quick"] is True
    r = irm["results"]
    assert r["windows"] > 0 and set(r["sisdri"]) == {*STEMS, "All"} and r["sisdri"]["All"] > 15.0
    assert len(r["per_window"]["sisdr"]) == r["windows"]
    # every stem plays in every window of this set, so the two averages agree
    assert r["windows_active"] == dict.fromkeys(STEMS, r["windows"])
    assert r["sisdri_active"]["All"] == pytest.approx(r["sisdri"]["All"])
    floor = json.loads((results / "separation-mixture.json").read_text())["results"]["sisdri"]
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in floor.values())
    msdm = json.loads((results / "separation-msdm.json").read_text())
    assert msdm["model"]["checkpoint"] is None and msdm["model"]["model"] == "msdm"
    assert msdm["results"]["windows"] == r["windows"]  # every method scores the same windows


def test_separation_resumes_from_its_cache(results: Path, data: Path, capsys) -> None:
    before = json.loads((results / "separation-gmsdi-separator.json").read_text())["results"]
    assert cli.main(["separation", "--method", "gmsdi-separator", "--quick", "--data", str(data), "--results",
                     str(results), "--quiet"]) == 0
    after = json.loads((results / "separation-gmsdi-separator.json").read_text())["results"]
    assert after["sisdri"] == before["sisdri"] and after["wall_seconds"] == before["wall_seconds"]


def test_sweep_keeps_measured_settings_and_adds_new_ones(results: Path, data: Path, tmp_path: Path,
                                                          monkeypatch, capsys) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "sweep-gmsdi.json").write_text((results / "sweep-gmsdi.json").read_text())
    before = json.loads((folder / "sweep-gmsdi.json").read_text())["results"]["rows"]
    common = ["--quick", "--data", str(data), "--results", str(folder), "--quiet"]
    assert cli.main(["sweep", "--axes", "x", "y", *common]) == 0
    rows = json.loads((folder / "sweep-gmsdi.json").read_text())["results"]["rows"]
    assert rows[:3] == before  # the γ_x rows are kept as measured (same wall time), not sampled again
    assert [(r["axis"], r["gamma"]) for r in rows[3:]] == [("y", 0.3), ("y", 2.0), ("y", float("inf"))]
    assert not list(folder.glob("*.tmp"))
    # another setting (here: the step count) starts afresh instead of mixing rows of two protocols
    assert cli.main(["sweep", "--axes", "y", "--steps", "10", *common]) == 0
    rows = json.loads((folder / "sweep-gmsdi.json").read_text())["results"]["rows"]
    assert [r["axis"] for r in rows] == ["y"] * 3
    # so does a changed pipeline default that no flag names (rows of the old default are not reused)
    capsys.readouterr()
    assert cli.main(["sweep", "--axes", "y", "--steps", "10", *common]) == 0
    assert "3 setting(s) already measured" in capsys.readouterr().out
    monkeypatch.setattr(GMSDIPipeline, "generation_defaults",
                        GMSDIPipeline.generation_defaults.replace(coupling_sigma_min=0.5))
    assert cli.main(["sweep", "--axes", "y", "--steps", "10", *common]) == 0
    assert "already measured" not in capsys.readouterr().out
    record = json.loads((folder / "sweep-gmsdi.json").read_text())
    assert record["resume_key"]["settings"]["coupling_sigma_min"] == 0.5 and len(record["results"]["rows"]) == 3


def test_missing_checkpoint_is_reported_not_invented(tmp_path: Path, data: Path, capsys) -> None:
    assert cli.main(["separation", "--method", "msdm", "--checkpoint", f"msdm={tmp_path / 'none.safetensors'}",
                     "--data", str(data), "--results", str(tmp_path), "--quiet"]) == 0
    assert "not trained yet" in capsys.readouterr().err
    assert not list(tmp_path.glob("separation-*.json"))
    assert cli.main(["separation", "--checkpoint", "nomodel=x", "--quick", "--data", str(data)]) == 2
    assert cli.main(["separation", "--quick", "--data", str(tmp_path / "nothing"), "--method", "irm"]) == 2


def test_other_result_files(results: Path) -> None:
    gen = json.loads((results / "fad-generation-gmsdi.json").read_text())
    assert gen["task"] == "generation" and gen["clips"] == 2 and "fad" in gen["results"]
    assert gen["data"]["real_clips"]["mix"] > 0
    acc = json.loads((results / "fad-accompaniment-msdm.json").read_text())
    assert acc["results"]["subsets"]["bass"]["given"] == ["drums", "guitar", "piano"]
    single = json.loads((results / "fad-single-source-gmsdi.json").read_text())
    assert len(single["results"]["fad"]["bass"]) == 3  # the three guidance settings
    assert not (results / "fad-single-source-msdm.json").exists()  # MSDM has no prompt
    ref = json.loads((results / "fad-reference.json").read_text())
    assert ref["reference_split"] == "validation" and ref["clips"] == 2
    sets = ref["results"]["sets"]
    assert set(sets) == {"mix", *STEMS, "noise:mix", *(f"noise:{s}" for s in STEMS)}
    assert sets["noise:bass"]["against"] == "bass" and all(1 <= v["clips"] <= 2 for v in sets.values())
    rows = json.loads((results / "sweep-gmsdi.json").read_text())["results"]["rows"]
    assert [r["gamma"] for r in rows] == [0.3, 2.0, float("inf")]
    assert all(r["consistency"] >= 0 and "refused" not in r for r in rows[1:])
    # 8 Heun steps cannot hold γ_x = 0.3·σ with four stems: refused up front, not sampled into NaN
    assert "over-correct the residual" in rows[0]["refused"] and math.isnan(rows[0]["consistency"])
    steps = json.loads((results / "steps-gmsdi-separator.json").read_text())["results"]["rows"]
    assert [r["steps"] for r in steps] == [2, 16]
    # two steps of MSDM's Dirac form with four stems would keep the starting noise: refused, not scored
    assert "too few for MSDM's Dirac separator" in steps[0]["refused"]
    assert "refused" not in steps[1] and math.isfinite(steps[1]["sisdri"]["All"]) and steps[1]["windows"] > 0


def test_ensemble_choice_is_read_by_the_pipeline(results: Path) -> None:
    path = results / "ensemble.json"
    data = json.loads(path.read_text())
    assert data["split"] == "validation" and set(data["choice"]) == set(STEMS)
    for s in STEMS:
        better = "separator" if data["separator"][s] > data["extractor"][s] else "extractor"
        assert data["choice"][s] == better
    choices, source = load_choices(path)
    assert source == str(path) and {k: choices[k] for k in STEMS} == data["choice"]
    pipe = quick_model("gmsdi")
    mix = (0.3 * np.random.default_rng(0).standard_normal(2048)).astype(np.float32)
    r = pipe.ensemble(mix, STEMS, results=path, steps=16, seed=0)
    assert r.settings["methods"] == data["choice"] and list(r.stems) == STEMS


def test_report(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    assert cli.main(["report", "--quick", "--results", str(results), "--out", str(out)]) == 0
    text = out.read_text()
    for heading in (SEPARATION_HEADER, "## Generation: FAD and sub-FAD", "## Negative-prompting ablation",
                    "## γ_x / γ_y sweep", "## Steps versus quality", "## Speed", "## How to reproduce",
                    "## The ensemble choice"):
        assert heading in text
    assert "**Quick mode.**" in text and "| ideal ratio mask (oracle, upper bound) |" in text
    assert "| GMSDI no tags, separator |" in text and "## Contrastive conditioning" in text
    assert "## Prompt sensitivity" in text and "| GMSDI, no tags (contrastive) | " in text
    assert "| 17.12 | 18.68 | 15.38 | 14.73 | 16.48 |" in text  # the paper's MSDM row beside ours
    assert "| *reference: real validation mixtures* |" in text and "| bass | " in text.split("**References**")[1]
    assert (tmp_path / "results" / "sweep-gmsdi.png").is_file() and (tmp_path / "results" / "steps.png").is_file()
    # A full report ignores --quick results: nothing is invented for untrained or unevaluated models.
    full = tmp_path / "full.md"
    assert cli.main(["report", "--results", str(results), "--out", str(full), "--plots", str(tmp_path / "p")]) == 0
    rows = [line for line in full.read_text().splitlines() if line.startswith("| GMSDI separator |")]
    assert rows and ("not trained yet" in rows[0] or "not evaluated yet" in rows[0])


def test_real_statistics_are_cached(data: Path, tmp_path: Path) -> None:
    from gmsdi.eval.fad import FrechetAudioDistance
    from gmsdi.eval.runner import accompaniment_clips, clip_dataset, clip_indices, real_stats

    ds = clip_dataset(data, "test", STEMS, 3.2)
    fad = FrechetAudioDistance()
    idx = clip_indices(ds)
    first, counts = real_stats(fad, ds, idx, tmp_path, {"k": 1})
    assert counts == dict.fromkeys(["mix", *STEMS], 3) and len(list(tmp_path.glob("real-*.npz"))) == 1
    again, counts_again = real_stats(fad, ds, idx, tmp_path, {"k": 1})
    assert counts_again == counts and all(np.array_equal(first[k].sigma, again[k].sigma) for k in first)
    clips = accompaniment_clips(ds, idx, ["drums", "guitar", "piano"], 2)
    assert len(clips) == 2 and clips[0].stems.shape == (4, 51200)


def test_reference_sets_are_held_out_clips_and_level_matched_noise(data: Path) -> None:
    from gmsdi.eval.runner import clip_dataset, reference_sets

    ds = clip_dataset(data, "validation", STEMS, 3.2)
    sets = reference_sets(ds, 2, seed=0)
    real = {ds[i]["mix"][0].numpy().tobytes() for i in range(len(ds))}
    assert len(sets["mix"]) == 2 and all(m.tobytes() in real for m in sets["mix"])
    for name in ("mix", *STEMS):
        for x, noise in zip(sets[name], sets[f"noise:{name}"], strict=True):
            assert noise.shape == x.shape and noise.dtype == np.float32
            assert np.sqrt(np.mean(noise**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.05)
            assert abs(np.corrcoef(noise, x)[0, 1]) < 0.05
    again = reference_sets(ds, 2, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(sets["noise:mix"], again["noise:mix"], strict=True))


def test_reference_split_must_be_held_out(data: Path, tmp_path: Path) -> None:
    argv = ["fad", "--task", "reference", "--reference-split", "test", "--quick", "--data", str(data),
            "--results", str(tmp_path), "--quiet"]
    assert cli.main(argv) == 2
    assert not (tmp_path / "fad-reference.json").exists()


def test_prompt_sensitivity(results: Path, data: Path) -> None:
    r = json.loads((results / "sensitivity-gmsdi.json").read_text())
    assert 1 <= r["items"] <= 8 and set(r["results"]) == {"0.003", "0.01", "0.03", "0.1", "0.3", "1.0"}
    assert all(v["own"] > 0 and v["wrong_over_own"] == pytest.approx(v["wrong"] / v["own"])
               for v in r["results"].values())
    # a model that ignores its prompt has a ratio of exactly 1; one whose prior follows the prompt does not
    import torch

    from gmsdi.eval.sensitivity import probe_set, prompt_sensitivity
    from gmsdi.inference import GaussianDenoiser
    from gmsdi.models import model_config
    from gmsdi.text import HashTextEncoder

    probe = probe_set(data, "test", 6, model_config("tiny").segment_samples, seed=5)
    enc = HashTextEncoder(dim=16)
    blind = prompt_sensitivity(lambda x, s, c: x / (1 + s[:, None, None] ** 2 / 0.01), enc, probe, device="cpu")
    assert all(v["wrong_over_own"] == 1.0 for v in blind.values())
    level = float(probe.stems.pow(2).mean())
    prior = GaussianDenoiser(dict.fromkeys(set(probe.own), level), enc, default_variance=level * 100)
    seeing = prompt_sensitivity(prior, enc, probe, device="cpu")
    assert seeing[0.1]["wrong_over_own"] > 1.5 and not torch.isnan(torch.tensor(seeing[0.1]["null"]))


def test_wiener_reference(results: Path, data: Path) -> None:
    from gmsdi.eval.sensitivity import class_spectra, probe_set, wiener_sensitivity

    r = json.loads((results / "sensitivity-wiener.json").read_text())
    assert r["model"] is None and "Wiener" in r["reference"] and set(r["results"]) == {
        "0.003", "0.01", "0.03", "0.1", "0.3", "1.0"}
    from gmsdi.models import model_config

    assert r["segment_samples"] == model_config("tiny").segment_samples  # --quick: the tiny model's window
    # the fixture's four stems have distinct spectra: knowing the class is worth a lot at mid σ
    probe = probe_set(data, "test", 8, 16384, seed=5)
    own = class_spectra(probe_set(data, "validation", 16, 16384, seed=6, every_active=True))
    sens = wiener_sensitivity(own, probe)
    assert sens[0.1]["wrong_over_own"] > 2 and sens[0.1]["own"] < sens[0.1]["null"]
    # with every class given the same spectrum the prompt is worth nothing
    flat = {c: own[""] for c in own}
    assert all(v["wrong_over_own"] == pytest.approx(1.0) for v in wiener_sensitivity(flat, probe).values())
    with pytest.raises(ValueError, match="no spectrum for the prompts"):
        wiener_sensitivity({"": own[""]}, probe)


def test_reference_window_follows_the_gmsdi_checkpoint(tmp_path: Path) -> None:
    """The references (Wiener, irm, mixture) score the windows of the GMSDI model that is evaluated:
    the --checkpoint gmsdi=PATH one when given, not the bundled file."""
    import argparse

    from gmsdi.models import build_model, model_config, save_model

    path = save_model(tmp_path / "m.safetensors", build_model(model_config("tiny", segment_samples=12000)))
    args = argparse.Namespace(quick=False, checkpoint=[f"gmsdi={path}"])
    assert records.chunk_samples(None, args) == 12000
    assert records.chunk_samples(None, argparse.Namespace(quick=False, checkpoint=[], chunk_seconds=0.5)) == 8000


def test_fad_gamma_mode_and_tag(data: Path, tmp_path: Path) -> None:
    """--gamma-mode and --coupling-sigma-min reach the sampler's settings; --tag names a variant's file."""
    common = ["--quick", "--data", str(data), "--results", str(tmp_path), "--quiet", "--task", "generation",
              "--models", "gmsdi"]
    assert cli.main(["fad", *common, "--gamma-mode", "wiener", "--coupling-sigma-min", "0.1", "--tag=-wiener"]) == 0
    variant = json.loads((tmp_path / "fad-generation-gmsdi-wiener.json").read_text())
    assert variant["settings"]["gamma_mode"] == "wiener" and variant["settings"]["coupling_sigma_min"] == 0.1
    assert not (tmp_path / "fad-generation-gmsdi.json").exists()
    assert cli.main(["fad", *common]) == 0
    default = json.loads((tmp_path / "fad-generation-gmsdi.json").read_text())
    assert "gamma_mode" not in default["settings"]
    assert default["negative_prompts"] == ["drums, guitar, piano", "bass, guitar, piano", "bass, drums, piano",
                                           "bass, drums, guitar"]  # the other stems' prompts


def test_fad_generation_takes_a_negative_prompt_per_stem(data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--negative reaches the generated songs ('-' keeps a stem's default, '' is the null prompt), and a list
    of the wrong length is refused before anything is generated."""
    common = ["--quick", "--data", str(data), "--results", str(tmp_path), "--quiet", "--task", "generation",
              "--models", "gmsdi", "--tag=-neg"]
    assert cli.main(["fad", *common, "--negative", "drums", "-", "-", ""]) == 0
    record = json.loads((tmp_path / "fad-generation-gmsdi-neg.json").read_text())
    assert record["negative_prompts"] == ["drums", "bass, guitar, piano", "bass, drums, piano", ""]
    (tmp_path / "fad-generation-gmsdi-neg.json").unlink()
    assert cli.main(["fad", *common, "--negative", "drums"]) == 2
    assert "one negative prompt per stem" in capsys.readouterr().err
    common[common.index("generation")] = "single-source"
    assert cli.main(["fad", *common, "--negative", "drums", "-", "-", ""]) == 2
    assert "add --task generation" in capsys.readouterr().err
    assert not (tmp_path / "fad-generation-gmsdi-neg.json").exists()


def test_records_name_the_run_of_a_checkpoint_given_on_the_command_line(tmp_path: Path) -> None:
    """A --checkpoint file is described by the run and step in its metadata, not by the registry's
    training config, which made another file."""
    from gmsdi.eval.methods import load_model
    from gmsdi.models import build_model, model_config, save_model

    config = model_config("tiny", text_encoder="hash")
    path = save_model(tmp_path / "m.safetensors", build_model(config), metadata={"run": "cool-1", "step": "12500"})
    described = load_model("gmsdi", checkpoint=path, device="cpu").describe()
    assert (described["run"], described["step"], described["train_config"]) == ("cool-1", 12500, None)
    bare = save_model(tmp_path / "bare.safetensors", build_model(config))
    assert load_model("gmsdi", checkpoint=bare, device="cpu").describe()["step"] is None


def test_records_name_the_cpu_their_timings_come_from():
    import argparse

    from gmsdi.eval.records import cpu_name, header

    h = header("separation", argparse.Namespace(quick=True, device="cpu", seed=0), ["separation", "--quick"])
    assert h["cpu"] == cpu_name()
    if os.path.exists("/proc/cpuinfo"):  # Linux: the model name the kernel reports
        assert h["cpu"] and h["cpu"] in open("/proc/cpuinfo").read()
