"""Issue #8: the LAION-CLAP adapter (gmsdi.text.clap) on a tiny random CLAP in Hugging Face format,
its registration as "clap:PATH", its error messages, and train/train.py accepting it for
condition=audio. No real CLAP weights exist offline; the tiny model checks the plumbing."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from script_loader import load_script

from gmsdi.audio import resample
from gmsdi.text import TextEmbedding, build_text_encoder
from gmsdi.text.clap import LaionClapEncoder
from gmsdi.text.encoder import default_text_encoder_path

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
DIM = 16


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory) -> Path:
    """A complete Hugging Face CLAP directory holding a tiny random model (about 1 M parameters)."""
    from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

    out = tmp_path_factory.mktemp("clap-tiny")
    tokenizer = AutoTokenizer.from_pretrained(default_text_encoder_path(), local_files_only=True)
    config = ClapConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=80, pad_token_id=tokenizer.pad_token_id),
        audio_config=dict(depths=[1, 1], num_attention_heads=[1, 2], patch_embeds_hidden_size=8, hidden_size=16,
                          window_size=8),
        projection_dim=DIM,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ClapModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    ClapFeatureExtractor().save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def encoder(clap_dir) -> LaionClapEncoder:
    return LaionClapEncoder.from_pretrained(clap_dir)


def test_encode_prompts(encoder):
    assert encoder.dim == DIM and encoder.sample_rate == 48000
    emb = encoder.encode(["piano", "", "bass and drums"])
    assert isinstance(emb, TextEmbedding)
    assert emb.tokens.shape == (3, 1, DIM) and emb.pooled.shape == (3, DIM)
    assert emb.mask.tolist() == [[True], [False], [True]]
    assert torch.equal(emb.tokens[:, 0], emb.pooled)
    norms = emb.pooled.norm(dim=-1)
    assert torch.allclose(norms[[0, 2]], torch.ones(2), atol=1e-5) and norms[1] == 0  # "" is the null prompt
    assert not torch.allclose(emb.pooled[0], emb.pooled[2])
    assert encoder.cache_len == 2
    again = encoder.encode(["bass and drums"])  # from the cache, the same vector
    assert torch.equal(again.pooled[0], emb.pooled[2])


def test_encode_audio_resamples(encoder):
    g = torch.Generator().manual_seed(0)
    wave16 = 0.1 * torch.randn(2, 1, 16000, generator=g)  # [B, 1, T] at 16 kHz
    rng_state = np.random.get_state()  # noqa: NPY002
    emb = encoder.encode_audio(wave16, sample_rate=16000)
    assert np.array_equal(np.random.get_state()[1], rng_state[1])  # noqa: NPY002  (the caller's RNG is untouched)
    assert emb.tokens.shape == (2, 1, DIM) and emb.mask.all() and torch.equal(emb.tokens[:, 0], emb.pooled)
    assert torch.allclose(emb.pooled.norm(dim=-1), torch.ones(2), atol=1e-5)
    # The same as giving 48 kHz audio at the encoder's own rate, and deterministic.
    wave48 = torch.from_numpy(np.stack([resample(w.numpy(), 16000, 48000) for w in wave16[:, 0]]))
    assert torch.allclose(encoder.encode_audio(wave48).pooled, emb.pooled, atol=1e-5)
    assert torch.equal(encoder.encode_audio(wave16, sample_rate=16000).pooled, emb.pooled)
    with pytest.raises(ValueError, match=r"\[B, T\] or \[B, 1, T\]"):
        encoder.encode_audio(torch.randn(16000))


def test_build_text_encoder(clap_dir):
    enc = build_text_encoder(f"clap:{clap_dir}", cache_size=8)
    assert isinstance(enc, LaionClapEncoder) and enc.dim == DIM and enc.source_path == str(clap_dir)
    assert enc.encode(["guitar"]).pooled.shape == (1, DIM)
    with pytest.raises(ValueError, match="needs a path"):
        build_text_encoder("clap:")
    with pytest.raises(ValueError, match="clap:PATH"):
        build_text_encoder("no-such-encoder")


def test_missing_files_are_named(clap_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no LAION-CLAP model at .*nowhere"):
        LaionClapEncoder.from_pretrained(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(clap_dir / "config.json", partial)
    with pytest.raises(FileNotFoundError) as err:
        LaionClapEncoder.from_pretrained(partial)
    msg = str(err.value)
    assert "lacks weights" in msg and "tokenizer files" in msg and "preprocessor_config.json" in msg
    assert "lacks config.json" not in msg and "model.safetensors" in msg  # and what a complete one holds
    # only the preprocessor missing
    for f in clap_dir.iterdir():
        if f.name != "preprocessor_config.json":
            shutil.copy(f, partial)
    with pytest.raises(FileNotFoundError, match=r"lacks preprocessor_config\.json \(the ClapFeatureExtractor"):
        LaionClapEncoder.from_pretrained(partial)


def test_wrong_model_type(tmp_path):
    with pytest.raises(ValueError, match="holds a 'bert' model, not CLAP"):
        LaionClapEncoder.from_pretrained(default_text_encoder_path())
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="neither a directory nor a LAION checkpoint"):
        LaionClapEncoder.from_pretrained(other)


def test_original_checkpoint_errors(tmp_path, monkeypatch):
    ckpt = tmp_path / "music_audioset_epoch_15_esc_90.14.pt"
    ckpt.write_bytes(b"not a real checkpoint")
    with pytest.raises(ValueError, match="needs a local roberta-base directory"):
        LaionClapEncoder.from_pretrained(ckpt)
    with pytest.raises(FileNotFoundError, match="no roberta-base model at"):
        LaionClapEncoder.from_pretrained(ckpt, text_model_path=tmp_path / "missing")
    roberta = tmp_path / "roberta-base"  # found next to the checkpoint when text_model_path is not given
    roberta.mkdir()
    (roberta / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    monkeypatch.setitem(sys.modules, "laion_clap", None)  # as if the package were not installed
    cwd = os.getcwd()
    for kwargs in ({}, {"text_model_path": roberta}):
        with pytest.raises(ImportError, match=r"laion_clap package.*pip install \"gmsdi\[clap\]\".*convert"):
            LaionClapEncoder.from_pretrained(ckpt, **kwargs)
        assert os.getcwd() == cwd
    with pytest.raises(ImportError, match=r"gmsdi\[clap\]"):
        build_text_encoder(f"clap:{ckpt}")


def test_train_accepts_clap_for_audio_conditioning(encoder):
    train = load_script("gmsdi_train_clap", ROOT / "train/train.py")
    cfg = train.TrainConfig(condition="audio")
    train.check_condition(cfg, encoder)
    audio = 0.1 * torch.randn(2, 1, 4800, generator=torch.Generator().manual_seed(1))
    z = train.conditioning(cfg, encoder, audio, ["piano", ""], "cpu")
    assert z.tokens.shape == (2, 1, DIM) and z.mask.tolist() == [[True], [False]]


def test_original_checkpoint_with_laion_clap_api(tmp_path, monkeypatch):
    """The .pt path against a stand-in for laion_clap's documented API (the real package cannot be
    installed here): "roberta-base" resolves to text_model_path while it builds, and both branches
    come out in the one-token layout."""
    import types

    from torch import nn

    roberta = tmp_path / "my-roberta"
    roberta.mkdir()
    (roberta / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    ckpt = tmp_path / "630k-audioset-fusion-best.pt"
    ckpt.write_bytes(b"weights")
    calls: dict = {}

    class FakeClapModule(nn.Module):
        def __init__(self, enable_fusion=False, device=None, amodel="HTSAT-tiny", tmodel="roberta"):
            super().__init__()
            calls.update(enable_fusion=enable_fusion, amodel=amodel, device=device,
                         roberta=Path("roberta-base").resolve())
            self.proj = nn.Linear(3, 8)

        def load_ckpt(self, ckpt=None, model_id=-1, verbose=True):
            calls["ckpt"] = ckpt

        def get_text_embedding(self, x, tokenizer=None, use_tensor=False):
            return self.proj(torch.tensor([[len(t), t.count(" "), 1.0] for t in x]))

        def get_audio_embedding_from_data(self, x, use_tensor=False):
            assert isinstance(x, torch.Tensor) and x.ndim == 2 and use_tensor
            return self.proj(torch.stack([x.std(dim=1), x.mean(dim=1), torch.ones(len(x))], dim=1))

    monkeypatch.setitem(sys.modules, "laion_clap", types.SimpleNamespace(CLAP_Module=FakeClapModule))
    cwd = os.getcwd()
    enc = LaionClapEncoder.from_pretrained(ckpt, text_model_path=roberta)
    assert os.getcwd() == cwd
    assert calls == {"enable_fusion": True, "amodel": "HTSAT-tiny", "device": "cpu", "roberta": roberta.resolve(),
                     "ckpt": str(ckpt.resolve())}
    assert enc.dim == 8 and enc.sample_rate == 48000
    emb = enc.encode(["piano", ""])
    assert emb.tokens.shape == (2, 1, 8) and torch.allclose(emb.pooled[0].norm(), torch.tensor(1.0))
    audio = enc.encode_audio(0.1 * torch.randn(3, 1, 1600), sample_rate=16000)
    assert audio.tokens.shape == (3, 1, 8) and audio.mask.all()
