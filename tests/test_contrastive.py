"""Issue #8: the contrastive text–audio encoder, its retrieval metrics, its training script, and a
GMSDI model trained with no tags (conditioned on E_contr(y)) running through the pipeline."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from script_loader import load_script

from gmsdi.eval import retrieval
from gmsdi.text import TextEmbedding, build_text_encoder
from gmsdi.text.contrastive import ContrastiveEncoder, build_contrastive, contrastive_loss

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder() -> ContrastiveEncoder:
    return build_contrastive("tiny", seed=0).train(False)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthslakh-tiny"
    from gmsdi.data.synth import SynthConfig, render_dataset

    render_dataset(root, 6, 0, SynthConfig(seconds=6.0), progress=False, workers=1)
    return root


def test_branches_share_one_normalised_space(encoder: ContrastiveEncoder):
    z = encoder.encode(["bass", "", "piano, drums"])
    assert isinstance(z, TextEmbedding)
    assert z.tokens.shape == (3, 1, encoder.dim) and z.mask[:, 0].tolist() == [True, False, True]
    assert torch.allclose(z.pooled.norm(dim=-1), torch.tensor([1.0, 0.0, 1.0]), atol=1e-5)
    assert torch.equal(z.tokens[:, 0], z.pooled)
    wave = torch.randn(2, 1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    a = encoder.encode_audio(wave)
    assert a.tokens.shape == (2, 1, encoder.dim) and bool(a.mask.all())
    assert torch.allclose(a.pooled.norm(dim=-1), torch.ones(2), atol=1e-5)
    # another sample rate is resampled to the encoder's
    a44 = encoder.encode_audio(torch.randn(1, 44100) * 0.1, sample_rate=44100)
    assert a44.pooled.shape == (1, encoder.dim)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        encoder.encode_audio(torch.randn(16000))
    with pytest.raises(ValueError, match="non-empty"):
        encoder.text_features(["bass", ""])


def test_save_load_round_trip_and_errors(encoder: ContrastiveEncoder, tmp_path: Path):
    path = encoder.save(tmp_path / "enc.safetensors", metadata={"step": "3"})
    loaded = ContrastiveEncoder.from_pretrained(path)
    wave = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1)) * 0.1
    assert torch.allclose(loaded.encode(["bass"]).pooled, encoder.encode(["bass"]).pooled, atol=1e-6)
    assert torch.allclose(loaded.encode_audio(wave).pooled, encoder.encode_audio(wave).pooled, atol=1e-6)
    # the registry name used by model configs
    assert torch.allclose(build_text_encoder(f"contrastive:{path}").encode(["bass"]).pooled,
                          encoder.encode(["bass"]).pooled, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="no contrastive encoder checkpoint"):
        ContrastiveEncoder.from_pretrained(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a gmsdi contrastive encoder"):
        ContrastiveEncoder.from_pretrained(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        ContrastiveEncoder.from_pretrained(tmp_path / "junk.safetensors")


def test_infonce_loss_values():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    scale = torch.tensor(math.log(100.0))
    aligned = contrastive_loss(x, x, scale)
    shuffled = contrastive_loss(x, x.roll(1, dims=0), scale)
    assert aligned < 0.5 < shuffled
    # all pairs in one group: every target is uniform; with identical embeddings the logits are
    # constant, so the loss is exactly log B
    same = torch.nn.functional.normalize(torch.ones(4, 16), dim=-1)
    assert torch.isclose(contrastive_loss(same, same, scale, groups=["a"] * 4), torch.tensor(math.log(4.0)))
    # crops of the same instrument set are interchangeable positives: swapping their texts leaves
    # the grouped loss unchanged, while the plain loss counts the swap as two misses
    a, t = x[:4], x[4:]
    swapped = t[[1, 0, 2, 3]]
    groups = ["bass", "bass", "drums", "piano"]
    assert torch.isclose(contrastive_loss(a, t, scale, groups), contrastive_loss(a, swapped, scale, groups))
    assert not torch.isclose(contrastive_loss(a, t, scale), contrastive_loss(a, swapped, scale))


def test_training_steps_align_the_branches():
    torch.manual_seed(0)
    enc = build_contrastive("tiny", seed=0).train(True)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    # two "instruments": low and high sines in noise, paired with two prompts
    low = torch.sin(2 * math.pi * 110 * t)
    high = torch.sin(2 * math.pi * 3000 * t)
    wave = torch.stack([low if i % 2 == 0 else high for i in range(16)]) * 0.3
    wave = wave + 0.05 * torch.randn(wave.shape, generator=g)
    prompts = ["bass" if i % 2 == 0 else "flute" for i in range(16)]
    params = [p for n, p in enc.named_parameters() if not n.startswith("text_base.")]
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(25):
        loss = contrastive_loss(enc.audio_features(wave), enc.text_features(prompts), enc.logit_scale, groups=prompts)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3
    enc.train(False)
    audio = enc.encode_audio(wave).pooled
    rec = retrieval.retrieval_recall(audio, [[p] for p in prompts], enc)
    assert rec["audio_to_text_r@1"] == 1.0 and rec["text_to_audio_r@1"] == 1.0


class _TableEncoder:
    """A text encoder from a fixed table of unit vectors, for exact metric checks."""

    def __init__(self, table: dict[str, torch.Tensor]) -> None:
        self.table = table

    def encode(self, prompts):
        pooled = torch.stack([self.table[p] for p in prompts])
        return TextEmbedding(pooled[:, None], torch.ones(len(prompts), 1, dtype=torch.bool), pooled)


def test_retrieval_recall_exact_values():
    e = torch.eye(3)
    enc = _TableEncoder({"bass": e[0], "drums": e[1], "bass, drums": e[2]})
    tags = [["bass"], ["drums"], ["bass", "drums"], ["drums"]]
    # crop 3 (drums) embeds like "bass": wrong both ways at k=1, right at k=3 (all texts)
    audio = torch.stack([e[0], e[1], e[2], e[0]])
    rec = retrieval.retrieval_recall(audio, tags, enc, ks=(1, 3))
    assert rec["texts"] == 3 and rec["crops"] == 4
    assert rec["audio_to_text_r@1"] == pytest.approx(0.75)
    assert rec["audio_to_text_r@3"] == 1.0
    # text->audio: "drums" queries find crop 1 (drums) first, so all four queries hit at k=1
    assert rec["text_to_audio_r@1"] == 1.0
    assert retrieval.tag_text(["piano", "bass"]) == "bass, piano"


def test_roc_auc_and_presence():
    s = np.array([0.1, 0.2, 0.3, 0.4])
    assert retrieval.roc_auc(s, np.array([False, False, True, True])) == 1.0
    assert retrieval.roc_auc(s, np.array([True, True, False, False])) == 0.0
    assert retrieval.roc_auc(np.zeros(4), np.array([True, False, True, False])) == 0.5
    assert math.isnan(retrieval.roc_auc(s, np.ones(4, dtype=bool)))
    tags = [["bass"], ["bass"], ["drums"], ["drums"]]
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.7], [0.1, 0.9]])
    thr = retrieval.fit_thresholds(scores, tags, ["bass", "drums"])
    m = retrieval.presence_metrics(scores, tags, ["bass", "drums"], thr)
    assert m["mean"]["accuracy"] == 1.0 and m["mean"]["auc"] == 1.0
    assert m["per_class"]["bass"]["prevalence"] == 0.5


def test_train_contrastive_script_then_notags_model_through_the_pipeline(tmp_path: Path, tiny_data: Path, capsys):
    tc = load_script("gmsdi_train_contrastive", ROOT / "train/train_contrastive.py")
    cfg = ROOT / "train/configs/contrastive_tiny.yaml"
    base = ["--config", str(cfg), "--set", f"out_dir={tmp_path}", f"root={tiny_data}"]
    assert tc.main([*base, "max_steps=4"]) == 0
    run = tmp_path / "contrastive-tiny"
    assert torch.load(run / "ckpt.pt", weights_only=False)["step"] == 4
    assert tc.main([*base, "max_steps=6"]) == 0  # resumes at 4
    with open(run / "train.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["2", "4", "6"]
    with open(run / "val.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["3", "4", "6"] and 0 <= float(rows[-1]["audio_to_text_r@5"]) <= 1
    enc_path = tmp_path / "enc.safetensors"
    assert tc.main([*base, "--export", str(enc_path)]) == 0
    metrics = retrieval.evaluate_encoder(ContrastiveEncoder.from_pretrained(enc_path), tiny_data, crops=24)
    assert 0 <= metrics["retrieval"]["text_to_audio_r@1"] <= 1 and "mean" in metrics["presence"]

    # the GMSDI model with no tags: conditioned on the audio branch, prompted through the text branch
    tr = load_script("gmsdi_train", ROOT / "train/train.py")
    args = ["--config", str(ROOT / "train/configs/notags_tiny.yaml"), "--set", f"out_dir={tmp_path}",
            f"data.root={tiny_data}", f"model.text_encoder=contrastive:{enc_path}", "sample_every=0"]
    assert tr.main([*args, "max_steps=4", "val_every=4"]) == 0
    out = tmp_path / "notags.safetensors"
    assert tr.main([*args, "--export", str(out)]) == 0
    from gmsdi.pipeline import GMSDIPipeline

    pipe = GMSDIPipeline.from_pretrained(out)
    assert isinstance(pipe.text_encoder, ContrastiveEncoder)
    res = pipe.generate(["bass", "drums"], steps=3, seed=0, seconds=1.0)
    assert set(res.stems) == {"bass", "drums"} and all(np.isfinite(s).all() for s in res.stems.values())
    mix = np.sin(2 * np.pi * 110 * np.arange(16000) / 16000).astype(np.float32) * 0.3
    sep = pipe.separate(mix, sample_rate=16000, prompts=["bass", "drums"], steps=8, seed=0)
    assert np.allclose(sum(sep.stems.values()), sep.mix, atol=1e-4)

    # ... and through the app's handlers, as a user of `python app.py --checkpoint ...` would
    from gmsdi.app import AppConfig, AppTasks

    tasks = AppTasks(pipe, AppConfig(max_seconds=2.0, seconds=1.0, generate_steps=2, separate_steps=2),
                     workdir=tmp_path / "app")
    out = tasks.generate(["bass", "drums"], seconds=1.0, steps=2, seed=0)
    assert out.names == ["bass", "drums"] and all(Path(f).is_file() for f in out.stems)
    import soundfile as sf

    sf.write(tmp_path / "mix.wav", mix, 16000)
    out = tasks.separate(str(tmp_path / "mix.wav"), "bass, drums", steps=8, seed=0)
    assert out.names == ["bass", "drums"]

    # a text-only encoder cannot give E_contr(y)
    capsys.readouterr()
    assert tr.main([*args, "name=bad", "model.text_encoder=hash", "model.text_dim=384", "max_steps=1"]) != 0
    assert "needs a contrastive text encoder" in capsys.readouterr().err


def test_eval_retrieval_quick_and_its_report_section(tmp_path: Path, tiny_data: Path):
    from gmsdi.eval import cli

    out = tmp_path / "results"
    assert cli.main(["retrieval", "--quick", "--data", str(tiny_data), "--results", str(out), "--quiet"]) == 0
    r = __import__("json").loads((out / "retrieval.json").read_text())
    assert r["command"].startswith("python -m gmsdi.eval retrieval") and r["split"] == "test"
    assert {"text_to_audio_r@1", "audio_to_text_r@5"} <= set(r["retrieval"]) and r["presence"]["per_class"]
    assert cli.main(["report", "--quick", "--results", str(out), "--out", str(tmp_path / "R.md")]) == 0
    text = (tmp_path / "R.md").read_text()
    assert "| text → audio |" in text and "| **mean** |" in text
    assert cli.main(["retrieval", "--encoder", str(tmp_path / "none.safetensors"), "--data", str(tiny_data),
                     "--results", str(out)]) == 2
