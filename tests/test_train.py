"""train/train.py: the tiny config end to end, resume (also after kill -9), export and config errors."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from script_loader import load_script

from gmsdi.models import build_model, load_model
from gmsdi.models.bandunet import band_edges

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "train/configs/tiny.yaml"


train = load_script("gmsdi_train", ROOT / "train/train.py")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthslakh-tiny"
    from gmsdi.data.synth import SynthConfig, render_dataset

    render_dataset(root, 6, 0, SynthConfig(seconds=6.0), progress=False, workers=1)
    return root


def _args(tmp_path: Path, data: Path, *more: str) -> list[str]:
    return ["--config", str(TINY), "--set", f"out_dir={tmp_path}", f"data.root={data}", "sample_every=0", *more]


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tiny_run_end_to_end_then_resume(tmp_path: Path, tiny_data: Path):
    assert train.main(_args(tmp_path, tiny_data, "max_steps=10", "sample_every=10")) == 0
    run = tmp_path / "tiny"
    state = torch.load(run / "ckpt.pt", weights_only=False)
    assert state["step"] == 10
    assert {"config", "model_config", "model", "ema", "optimizer"} <= set(state)
    assert [r["step"] for r in _rows(run / "train.csv")] == ["5", "10"]
    sens = _rows(run / "sensitivity.csv")
    assert {r["sigma"] for r in sens} == {str(s) for s in train.VAL_SIGMAS}
    assert all(float(r["own"]) > 0 and float(r["wrong"]) > 0 for r in sens)
    assert len(list((run / "samples").glob("step0000010_*.wav"))) == 2
    # a longer run of the same name resumes at step 10 and continues to 20
    assert train.main(_args(tmp_path, tiny_data, "max_steps=20")) == 0
    assert torch.load(run / "ckpt.pt", weights_only=False)["step"] == 20
    assert [r["step"] for r in _rows(run / "train.csv")] == ["5", "10", "15", "20"]
    # export: EMA weights + config in safetensors, loadable with no network
    out = tmp_path / "model.safetensors"
    assert train.main(["--config", str(TINY), "--set", f"out_dir={tmp_path}", "--export", str(out)]) == 0
    model = load_model(out)
    ema = train.build_model(train.ModelConfig.from_dict(state["model_config"]))
    ema.load_state_dict(torch.load(run / "ckpt.pt", weights_only=False)["ema"])
    x = torch.randn(1, 1, model.model_config.segment_samples, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x, 0.5, None), ema.eval()(x, 0.5, None))


def test_resume_after_kill_9(tmp_path: Path, tiny_data: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "train/train.py"), *_args(tmp_path, tiny_data, "max_steps=400", "ckpt_every=5",
                                                                   "val_every=100000")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    ckpt = tmp_path / "tiny" / "ckpt.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written before the kill"
    step = torch.load(ckpt, weights_only=False)["step"]
    assert 5 <= step < 400
    assert train.main(_args(tmp_path, tiny_data, f"max_steps={step + 5}", "ckpt_every=5")) == 0
    assert torch.load(ckpt, weights_only=False)["step"] == step + 5


def test_config_errors(tmp_path: Path, capsys):
    assert train.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        train.load_config(TINY, ["no_such_field=1"])
    cfg = train.load_config(TINY, ["data.crop_seconds=0.5", "lr=1e-3"])
    assert cfg.data.crop_seconds == 0.5 and cfg.lr == 1e-3
    seg = train.build_model_config(cfg).segment_samples
    assert seg % train.build_model_config(cfg).unet.length_multiple == 0 and seg <= 8000


def test_submix_items_are_stem_subsets_with_their_tags(tmp_path: Path, tiny_data: Path):
    cfg = train.load_config(TINY, [f"data.root={tiny_data}", "data.submix=true", "data.submix_fraction=1.0"])
    segment = train.build_model_config(cfg).segment_samples
    loader = train.build_data(cfg, segment, batches=3, start_step=0)
    stems = loader.dataset.stems
    seen = 0
    for batch in loader:
        assert batch["audio"].shape == (cfg.batch_size, 1, segment)
        for k, (tags, prompt) in enumerate(zip(batch["tags"], batch["prompt"], strict=True)):
            assert tags and set(tags) <= set(stems.classes) and prompt
            # the audio is the sum of the named classes' rows of the same crop
            item = stems[(seen + k) % len(stems)]
            rows = [item["classes"].index(t) for t in tags]
            assert torch.allclose(batch["audio"][k, 0], item["stems"][rows].sum(0), atol=1e-6)
        seen += len(batch["tags"])
    assert seen == 3 * cfg.batch_size
    # the whole training loop runs on it
    assert train.main(_args(tmp_path, tiny_data, "max_steps=4", "data.submix=true")) == 0


def test_time_budget_plans_then_stops(monkeypatch):
    cfg = train.TrainConfig(max_steps=1_000_000, lr_decay_steps=1_000_000, time_budget_s=100.0)
    now = [10.0]
    monkeypatch.setattr(train.time, "perf_counter", lambda: now[0])
    marks: dict = {}
    train.fit_time_budget(cfg, 20, 0, 0.0, marks)  # step 20 at 10 s
    now[0] = 18.0  # 80 steps in 8 s: 0.1 s per step, 82 s left
    train.fit_time_budget(cfg, 100, 0, 0.0, marks)
    assert cfg.max_steps == 100 + 820 and cfg.lr_decay_steps == 920
    now[0] = 100.5  # past the budget: the run ends at this step
    train.fit_time_budget(cfg, 850, 0, 0.0, marks)
    assert cfg.max_steps == 850


def test_budgeted_run_without_validation_stops_and_checkpoints(tmp_path: Path, tiny_data: Path):
    assert train.main(_args(tmp_path, tiny_data, "max_steps=50", "val_every=0", "time_budget_s=0.001")) == 0
    run = tmp_path / "tiny"
    assert torch.load(run / "ckpt.pt", weights_only=False)["step"] == 1  # stopped at the first step
    assert not (run / "val.csv").exists()


def test_text_table_must_come_from_the_models_encoder(tmp_path: Path, tiny_data: Path, capsys):
    from gmsdi.text.table import PartsTable

    table = tmp_path / "parts.safetensors"
    PartsTable({"bass": torch.ones(4)}, encoder="minilm-parts").save(table)
    assert train.main(_args(tmp_path, tiny_data, "max_steps=2", f"text_table={table}")) == 2
    assert "was made with 'minilm-parts'" in capsys.readouterr().err


def test_init_from_an_input_gain_model_zeroes_only_the_gain_head(tmp_path: Path, tiny_data: Path, capsys):
    """Weights of a band_gain='input' model start a 'mask' run: everything is kept but the gain head."""
    import dataclasses

    from gmsdi.models import build_model, model_config, save_model

    cfg = model_config("bands")
    source = build_model(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, band_gain="input")), seed=0)
    with torch.no_grad():
        source.net.unembed.weight.normal_()
        source.net.unembed.bias.normal_()
    init = save_model(tmp_path / "input.safetensors", source)
    assert train.main(_args(tmp_path, tiny_data, "model.preset=bands", "max_steps=1", "batch_size=2", "lr=0",
                            "val_every=0", f"init_from={init}")) == 0
    assert "band_gain 'input' -> 'mask', gain head zeroed" in capsys.readouterr().out
    state = torch.load(tmp_path / "tiny/ckpt.pt", weights_only=False)["ema"]
    w = state["net.unembed.weight"].view(32, 96, 4, 16)
    w0 = source.net.unembed.weight.detach().view(32, 96, 4, 16)
    assert not w[:, :, :2].any() and torch.equal(w[:, :, 2:], w0[:, :, 2:])
    assert torch.equal(state["net.embed.weight"], source.net.embed.weight.detach())


def test_init_from_grows_a_refiner_and_refuses_a_model_that_does_not_fit(tmp_path: Path, tiny_data: Path, capsys):
    """A run with a per-bin refiner starts from a model without one: every weight kept, the refiner fresh.
    Weights of another shape are refused with a sentence."""
    from gmsdi.models import build_model, model_config, save_model

    source = build_model(model_config("bands"), seed=0)
    with torch.no_grad():
        source.net.embed.weight.normal_()  # not what the run's own seed would build
    init = save_model(tmp_path / "bands.safetensors", source)
    grow = ("model.preset=bands", "model.unet.refine_channels=4", "max_steps=1", "batch_size=2", "lr=0",
            "val_every=0", f"init_from={init}")
    assert train.main(_args(tmp_path, tiny_data, *grow)) == 0
    assert "new parts start as no-ops: net.refiner" in capsys.readouterr().out
    state = torch.load(tmp_path / "tiny/ckpt.pt", weights_only=False)["ema"]
    assert torch.equal(state["net.embed.weight"], source.net.embed.weight.detach())
    assert not state["net.refiner.out.weight"].any()  # lr=0: still the zero start
    other = save_model(tmp_path / "tiny.safetensors", build_model(model_config("tiny"), seed=0))
    assert train.main(_args(tmp_path / "b", tiny_data, "model.preset=bands", "max_steps=1", f"init_from={other}")) == 2
    assert "does not fit this model" in capsys.readouterr().err


def test_a_spectrally_weighed_run_measures_the_data_once_and_checks_its_crop(tmp_path: Path, tiny_data: Path, capsys):
    """loss_spectral_alpha > 0 weighs the loss by the data's spectrum (quiet bins up); validation stays plain."""
    run = ("max_steps=2", "val_every=2", "data.crop_seconds=1.024", "loss_spectral_alpha=0.5")
    assert train.main(_args(tmp_path, tiny_data, *run)) == 0
    out = capsys.readouterr().out
    assert "loss weighed per frequency (α 0.5): bin weights" in out
    lo, hi = (float(v) for v in out.split("bin weights ")[1].split(" dB")[0].split(" to "))
    assert lo < -3 < 3 < hi  # the data's spectrum is far from flat
    cfg = train._from_dict(train.TrainConfig, {"data": {"root": str(tiny_data)}, "loss_spectral_alpha": 0.5})
    first = train.spectral_error_weight(cfg, 16384).weights
    assert torch.equal(first, train.spectral_error_weight(cfg, 16384).weights)  # the same crops on every start
    assert first[:64].mean() < first[256:].mean()  # bass-heavy music: low bins weigh less
    assert train.main(_args(tmp_path / "b", tiny_data, "max_steps=1", "val_every=0", "loss_spectral_alpha=0.5")) == 2
    assert "not a multiple of 256" in capsys.readouterr().err


def test_the_logbands_config_builds_eighty_log_spaced_bands():
    cfg = train.build_model_config(train.load_config(ROOT / "train/configs/logbands.yaml"))
    assert cfg.unet.bands_per_octave == 12 and cfg.segment_samples == 16384
    net = build_model(cfg, seed=0).net
    assert net.embed.edges == band_edges(512, bands_per_octave=12, multiple=4) and net.embed.bands == 80
    assert (torch.tensor(net.embed.edges[:21]) == torch.arange(21)).all()  # single bins up to 312 Hz
    params = sum(p.numel() for p in net.parameters())
    assert 5e6 < params < 12e6


def test_bf16_on_a_cpu_without_bf16_instructions_trains_in_fp32(monkeypatch) -> None:
    """Emulated bf16 made a training step 20x slower than fp32 on an AVX2-only CPU: such a run falls back and says
    so, while a CPU with AMX or AVX-512-BF16 (or a GPU) keeps the precision it was asked for."""
    import gmsdi.pipeline.engine as engine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(engine, "cpu_has_fast_bf16", lambda: False)
    mp, note = train.resolve_mixed_precision("bf16")
    assert mp == "no" and "fp32" in note and "bf16 instructions" in note
    assert train.resolve_mixed_precision("no") == ("no", "")
    assert train.resolve_mixed_precision("auto") == ("no", "")
    monkeypatch.setattr(engine, "cpu_has_fast_bf16", lambda: True)
    assert train.resolve_mixed_precision("bf16") == ("bf16", "")


def test_continue_from_an_export_keeps_the_step_and_warms_up_again(tmp_path: Path, tiny_data: Path, capsys):
    """A fresh checkout has the committed export but no ckpt.pt: the run continues at the export's step from its
    weights, re-warming a fresh optimizer; a ckpt.pt written after that resumes as usual."""
    assert train.main(_args(tmp_path / "a", tiny_data, "max_steps=10", "val_every=0")) == 0
    export = tmp_path / "a.safetensors"
    assert train.main(["--config", str(TINY), "--set", f"out_dir={tmp_path / 'a'}", "--export", str(export),
                       "--export-dtype", "bf16"]) == 0
    exported = load_model(export).state_dict()
    # lr 0: the weights stay the export's, so the checkpoint shows what the run started from
    assert train.main(_args(tmp_path / "b", tiny_data, "max_steps=15", "val_every=0", "lr=0",
                            f"continue_from={export}")) == 0
    assert f"from {export} at step 10" in capsys.readouterr().out
    state = torch.load(tmp_path / "b/tiny/ckpt.pt", weights_only=False)
    assert (state["step"], state["restart"]) == (15, 10)
    assert all(torch.equal(state["model"][k], v) and torch.equal(state["ema"][k], v) for k, v in exported.items())
    assert [r["step"] for r in _rows(tmp_path / "b/tiny/train.csv")] == ["15"]

    cfg = train.TrainConfig(lr=1e-3, warmup_steps=100)
    assert train.learning_rate(cfg, 5000, restart=5000) == pytest.approx(1e-5)
    assert train.learning_rate(cfg, 5099, restart=5000) == pytest.approx(1e-3)
    assert train.learning_rate(cfg, 5000) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="not both"):
        train.continued_state(train.TrainConfig(init_from=str(export), continue_from=str(export)), None)
    other = train.build_model("bands")
    with pytest.raises(ValueError, match="not this run's model"):
        train.continued_state(train.TrainConfig(continue_from=str(export)), other)


RESUME = sorted((ROOT / "train/resume").glob("*.safetensors"))


@pytest.mark.parametrize("export", RESUME, ids=[p.stem for p in RESUME])
def test_a_committed_run_export_continues_its_config(export: Path) -> None:
    """train/resume/<run>.safetensors is what a fresh checkout continues run <run> from (`continue_from`): it must
    name that run and its step, and its weights must fit train/configs/<run>.yaml's model."""
    import dataclasses

    from gmsdi.models import load_metadata

    meta = load_metadata(export)
    assert meta["run"] == export.stem
    cfg = dataclasses.replace(train.load_config(ROOT / f"train/configs/{export.stem}.yaml"),
                              continue_from=str(export))
    model = train.build_model(train.build_model_config(cfg))
    assert train.continued_state(cfg, model) == int(meta["step"]) > 0
