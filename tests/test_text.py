"""Prompt encoders and TextEmbedding: offline loading, pooling, caching, the null prompt."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from gmsdi.data.prompts import compose
from gmsdi.text import (
    TEXT_ENCODERS,
    HashTextEncoder,
    PromptEncoder,
    TextEmbedding,
    TextEncoder,
    build_text_encoder,
    default_text_encoder_path,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# sentence-transformers' all-MiniLM-L6-v2 embedding of "bass", first 6 dimensions.
BASS_REFERENCE = [-0.0685, -0.0264, -0.0256, -0.0208, -0.0568, 0.0179]


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return build_text_encoder("minilm")


def test_minilm_loads_offline_and_shapes(minilm: TextEncoder) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert isinstance(minilm, PromptEncoder)
    assert minilm.dim == 384
    e = minilm.encode(["bass", "fingered electric bass, drums, piano", ""])
    assert e.tokens.shape == (3, e.length, 384) and e.pooled.shape == (3, 384)
    assert e.mask.dtype == torch.bool
    lengths = e.mask.sum(dim=1).tolist()
    assert lengths[0] == 3 and lengths[1] == e.length and lengths[2] == 0  # [CLS] bass [SEP]; padded
    assert torch.all(e.tokens[0, 3:] == 0)
    assert torch.allclose(e.pooled[:2].norm(dim=1), torch.ones(2), atol=1e-5)


def test_minilm_matches_sentence_transformers(minilm: TextEncoder) -> None:
    pooled = minilm.encode(["bass"]).pooled[0, :6]
    assert torch.allclose(pooled, torch.tensor(BASS_REFERENCE), atol=1e-4)


def test_null_prompt_is_zero_with_empty_mask(minilm: TextEncoder) -> None:
    e = minilm.encode(["", "   "])
    assert e.length == 1
    assert not e.mask.any()
    assert torch.all(e.tokens == 0) and torch.all(e.pooled == 0)
    assert e.is_null.all()


def test_semantics_bass_closer_to_bass_than_drums(minilm: TextEncoder) -> None:
    p = minilm.encode(["fingered electric bass", "bass", "drums"]).pooled
    assert p[0] @ p[1] > p[0] @ p[2]


def test_cache_returns_identical_embeddings_without_rerunning(
    minilm: TextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = minilm.encode(["electric guitar", "piano"])
    assert "electric guitar" in minilm._cache

    def fail(prompts: list[str]) -> None:
        raise AssertionError(f"re-encoded {prompts}")

    monkeypatch.setattr(minilm, "_encode_uncached", fail)
    second = minilm.encode(["electric guitar", "piano"])
    assert torch.equal(first.tokens, second.tokens) and torch.equal(first.pooled, second.pooled)


def test_padding_does_not_change_a_prompt(minilm: TextEncoder) -> None:
    fresh = TextEncoder(cache_size=0)
    alone = fresh.encode(["organ"])
    padded = fresh.encode(["organ", "a very long prompt with many words in it"])
    n = alone.length
    assert torch.allclose(alone.tokens[0], padded.tokens[0, :n], atol=1e-5)
    assert torch.all(padded.tokens[0, n:] == 0) and not padded.mask[0, n:].any()
    assert torch.allclose(alone.pooled[0], padded.pooled[0], atol=1e-5)
    assert fresh.cache_len == 0


def test_encoder_is_frozen(minilm: TextEncoder) -> None:
    assert not any(p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.training and not minilm.transformer.training


def test_encode_sources_uses_compose(minilm: TextEncoder) -> None:
    e = minilm.encode_sources([["bass", "drums"], []])
    ref = minilm.encode([compose(["bass", "drums"]), ""])
    assert torch.equal(e.pooled, ref.pooled) and torch.equal(e.mask, ref.mask)


def test_max_length_truncates() -> None:
    enc = TextEncoder(max_length=4, cache_size=0)
    e = enc.encode(["one two three four five six"])
    assert e.length == 4


def test_registry_and_paths(tmp_path) -> None:
    assert set(TEXT_ENCODERS) >= {"minilm", "hash"}
    with pytest.raises(ValueError, match="minilm"):
        build_text_encoder("no-such-encoder")
    with pytest.raises(FileNotFoundError):
        TextEncoder.from_path(tmp_path / "missing")
    enc = build_text_encoder(default_text_encoder_path(), max_length=8)
    assert isinstance(enc, TextEncoder) and enc.max_length == 8


def test_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="list"):
        HashTextEncoder().encode("bass")


def test_hash_encoder_lru_cache_and_determinism() -> None:
    enc = HashTextEncoder(dim=16, cache_size=2)
    a = enc.encode(["bass"])
    # "bass" is cached; the two new prompts evict it while the batch is assembled.
    b = enc.encode(["bass", "drums", "piano"])
    assert enc.cache_len == 2 and "bass" not in enc._cache
    assert torch.equal(a.pooled[0], b.pooled[0])
    assert torch.equal(HashTextEncoder(dim=16).encode(["bass"]).pooled, a.pooled)
    p = enc.encode(["electric bass", "bass", "drums"]).pooled
    assert p[0] @ p[1] > p[0] @ p[2]


def test_text_embedding_helpers() -> None:
    enc = HashTextEncoder(dim=8)
    a = enc.encode(["bass"])
    b = enc.encode(["one two three", ""])
    both = TextEmbedding.cat([a, b])
    assert both.batch_size == 3 and both.length == 3
    assert torch.equal(both[0].pooled, a.pooled) and both.mask[0].sum() == 1
    assert both.is_null.tolist() == [False, False, True]
    dropped = both.with_null(torch.tensor([True, False, False]))
    assert dropped.is_null.tolist() == [True, False, True]
    assert torch.all(dropped.tokens[0] == 0) and torch.all(dropped.pooled[0] == 0)
    assert both.repeat_interleave(2).batch_size == 6
    assert TextEmbedding.from_any(a) is a
    same = TextEmbedding.from_any({"tokens": a.tokens, "mask": a.mask, "pooled": a.pooled})
    assert torch.equal(same.tokens, a.tokens) and torch.equal(same.pooled, a.pooled)
    null = TextEmbedding.null(2, 8)
    assert null.is_null.all() and null.length == 1
    with pytest.raises(ValueError, match="shapes disagree"):
        TextEmbedding(a.tokens, a.mask, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="bool"):
        TextEmbedding(a.tokens, a.mask.float(), a.pooled)
