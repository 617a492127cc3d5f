"""The base of every prompt encoder: `CachedPromptEncoder` (an LRU cache of encoded prompts) and its helpers.

The lowest module of `gmsdi.text` below `embedding`: the encoders (`encoder`, `contrastive`,
`clap`) build on it, and `registry.build_text_encoder` chooses among them by name.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from gmsdi.data.prompts import compose
from gmsdi.text.embedding import TextEmbedding


def import_transformers() -> Any:
    # Offline before the first import: a missing file must fail at once, not retry for minutes.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    return transformers


def check_prompt_list(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("encode() takes a list of prompts; wrap a single prompt as [prompt]")
    out = []
    for p in prompts:
        if not isinstance(p, str):
            raise TypeError(f"prompts must be strings, got {type(p).__name__}")
        out.append(p.strip())
    return out


class _PromptCache:
    """An LRU map prompt -> (tokens [n, D], pooled [D]) on CPU, bounded to `size` entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def get(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        item = self._items.get(prompt)
        if item is not None:
            self._items.move_to_end(prompt)
        return item

    def put(self, prompt: str, item: tuple[torch.Tensor, torch.Tensor]) -> None:
        if self.size <= 0:
            return
        self._items[prompt] = item
        self._items.move_to_end(prompt)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._items


class CachedPromptEncoder(nn.Module):
    """Base of the prompt encoders here: an LRU prompt cache, padding and the null prompt.

    Subclasses set `dim` and implement `_encode_uncached(prompts) -> [(tokens [n_i, D],
    pooled [D])]` for non-empty prompts; everything else (the `PromptEncoder` interface) is here.
    """

    dim: int

    def __init__(self, cache_size: int = 4096) -> None:
        super().__init__()
        self._cache = _PromptCache(cache_size)

    def _encode_uncached(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(tokens [n_i, D], pooled [D]) per non-empty prompt, on CPU, float32."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def cache_len(self) -> int:
        """How many prompts the cache holds."""
        return len(self._cache)

    def clear_cache(self) -> None:
        self._cache.clear()

    def train(self, mode: bool = True) -> CachedPromptEncoder:
        """Ignored: the encoder is frozen and always stays in eval mode."""
        return super().train(False)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], device: torch.device | str | None = None) -> TextEmbedding:
        """Encodes B prompts, padded to the longest.

        Args:
            prompts: B strings; "" (or whitespace) is the null prompt.
            device: where the result goes; default the encoder's device.

        Returns:
            `TextEmbedding` with tokens [B, L, D], mask [B, L], pooled [B, D]; L is the longest
            prompt's token count (at least 1).
        """
        prompts = check_prompt_list(prompts)
        found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        missing: list[str] = []
        for p in dict.fromkeys(p for p in prompts if p):
            hit = self._cache.get(p)
            if hit is None:
                missing.append(p)
            else:
                found[p] = hit
        if missing:
            for p, item in zip(missing, self._encode_uncached(missing), strict=True):
                found[p] = item
                self._cache.put(p, item)
        items = [found[p] if p else None for p in prompts]
        length = max([1] + [item[0].shape[0] for item in items if item is not None])
        b = len(prompts)
        tokens = torch.zeros(b, length, self.dim)
        mask = torch.zeros(b, length, dtype=torch.bool)
        pooled = torch.zeros(b, self.dim)
        for i, item in enumerate(items):
            if item is None:
                continue
            n = item[0].shape[0]
            tokens[i, :n] = item[0]
            mask[i, :n] = True
            pooled[i] = item[1]
        return TextEmbedding(tokens, mask, pooled).to(device if device is not None else self.device)

    def encode_sources(
        self,
        source_prompts: Sequence[Sequence[str]],
        rng: np.random.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> TextEmbedding:
        """Encodes B mixtures, each described by its per-source prompts.

        Each row is composed with `gmsdi.data.prompts.compose` (z_1 ⊗ ... ⊗ z_K, METHOD.md §2);
        with `rng` the source order is shuffled, as in training.
        """
        return self.encode([compose(list(ps), rng=rng) for ps in source_prompts], device=device)

    def forward(self, prompts: Sequence[str]) -> TextEmbedding:
        return self.encode(prompts)


__all__ = ["CachedPromptEncoder", "check_prompt_list", "import_transformers"]
