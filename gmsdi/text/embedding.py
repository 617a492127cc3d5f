"""The conditioning a prompt encoder hands to the network, and the interface encoders follow.

A `TextEmbedding` is the `z` of METHOD.md §2 as the network sees it: per-token states for
cross-attention, a padding mask, and one pooled vector for FiLM. The null (unconditional)
embedding used for classifier-free guidance is an example whose mask is all False, whose
tokens are zeros and whose pooled vector is zero; the network attends only to its learned
null key/value token for such an example.

This module does not import transformers, so the model code can use it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True, eq=False)
class TextEmbedding:
    """A batch of encoded prompts.

    Attributes:
        tokens: [B, L, D] float token states; rows past a prompt's length are zeros.
        mask: [B, L] bool, True where a token is real. A row that is all False is the null
            prompt "" (classifier-free guidance's unconditional input).
        pooled: [B, D] float, one vector per prompt (L2-normalised for real prompts, zeros for
            the null prompt).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3 or self.mask.ndim != 2 or self.pooled.ndim != 2:
            raise ValueError(
                "TextEmbedding expects tokens [B, L, D], mask [B, L] and pooled [B, D]; got "
                f"{tuple(self.tokens.shape)}, {tuple(self.mask.shape)}, {tuple(self.pooled.shape)}"
            )
        b, n, d = self.tokens.shape
        if tuple(self.mask.shape) != (b, n) or tuple(self.pooled.shape) != (b, d):
            raise ValueError(
                f"TextEmbedding shapes disagree: tokens {tuple(self.tokens.shape)}, "
                f"mask {tuple(self.mask.shape)}, pooled {tuple(self.pooled.shape)}"
            )
        if self.mask.dtype != torch.bool:
            raise ValueError(f"TextEmbedding.mask must be a bool tensor, got {self.mask.dtype}")

    # -- shape ---------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """B, the number of prompts."""
        return self.tokens.shape[0]

    @property
    def length(self) -> int:
        """L, the padded number of tokens."""
        return self.tokens.shape[1]

    @property
    def dim(self) -> int:
        """D, the embedding width."""
        return self.tokens.shape[2]

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    @property
    def is_null(self) -> torch.Tensor:
        """[B] bool: True for null (unconditional) prompts."""
        return ~self.mask.any(dim=1)

    def __len__(self) -> int:
        return self.batch_size

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def null(
        cls,
        batch_size: int,
        dim: int,
        length: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> TextEmbedding:
        """`batch_size` null prompts: zero tokens, all-False mask, zero pooled vectors."""
        return cls(
            tokens=torch.zeros(batch_size, length, dim, device=device, dtype=dtype),
            mask=torch.zeros(batch_size, length, device=device, dtype=torch.bool),
            pooled=torch.zeros(batch_size, dim, device=device, dtype=dtype),
        )

    @classmethod
    def cat(cls, embeddings: Sequence[TextEmbedding]) -> TextEmbedding:
        """Concatenates along the batch, padding every part to the longest L.

        Used to batch conditional, unconditional and negative-prompt passes into one forward.
        """
        if not embeddings:
            raise ValueError("TextEmbedding.cat needs at least one embedding")
        length = max(e.length for e in embeddings)
        return cls(
            tokens=torch.cat([e.padded(length).tokens for e in embeddings]),
            mask=torch.cat([e.padded(length).mask for e in embeddings]),
            pooled=torch.cat([e.pooled for e in embeddings]),
        )

    @classmethod
    def from_any(cls, cond: TextEmbedding | Mapping[str, torch.Tensor]) -> TextEmbedding:
        """Accepts a `TextEmbedding` or a mapping with keys "tokens", "mask", "pooled"."""
        if isinstance(cond, TextEmbedding):
            return cond
        if isinstance(cond, Mapping):
            missing = {"tokens", "mask", "pooled"} - set(cond)
            if missing:
                raise ValueError(f"conditioning mapping lacks keys {sorted(missing)}")
            return cls(tokens=cond["tokens"], mask=cond["mask"].bool(), pooled=cond["pooled"])
        raise TypeError(f"expected a TextEmbedding or a mapping, got {type(cond).__name__}")

    # -- transforms ----------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextEmbedding:
        """Moves tokens and pooled to `device`/`dtype` (the mask stays bool)."""
        return TextEmbedding(
            tokens=self.tokens.to(device=device, dtype=dtype),
            mask=self.mask.to(device=device),
            pooled=self.pooled.to(device=device, dtype=dtype),
        )

    def padded(self, length: int) -> TextEmbedding:
        """The same prompts padded with masked zero tokens to `length` >= L."""
        extra = length - self.length
        if extra < 0:
            raise ValueError(f"cannot pad {self.length} tokens down to {length}")
        if extra == 0:
            return self
        b, _, d = self.tokens.shape
        return TextEmbedding(
            tokens=torch.cat([self.tokens, self.tokens.new_zeros(b, extra, d)], dim=1),
            mask=torch.cat([self.mask, self.mask.new_zeros(b, extra)], dim=1),
            pooled=self.pooled,
        )

    def __getitem__(self, index: Any) -> TextEmbedding:
        """Selects prompts along the batch (int, slice, index or bool tensor)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return TextEmbedding(tokens=self.tokens[index], mask=self.mask[index], pooled=self.pooled[index])

    def repeat_interleave(self, repeats: int) -> TextEmbedding:
        """Each prompt `repeats` times in a row: [B, ...] -> [B * repeats, ...]."""
        return TextEmbedding(
            tokens=self.tokens.repeat_interleave(repeats, dim=0),
            mask=self.mask.repeat_interleave(repeats, dim=0),
            pooled=self.pooled.repeat_interleave(repeats, dim=0),
        )

    def with_null(self, drop: torch.Tensor) -> TextEmbedding:
        """Replaces the prompts where `drop` ([B] bool) is True by the null prompt.

        This is classifier-free guidance's prompt dropout (METHOD.md §2); draw `drop` with the
        caller's generator.
        """
        if drop.shape != (self.batch_size,):
            raise ValueError(f"drop must have shape [{self.batch_size}], got {tuple(drop.shape)}")
        keep = ~drop.to(device=self.device, dtype=torch.bool)
        return TextEmbedding(
            tokens=self.tokens * keep[:, None, None].to(self.tokens.dtype),
            mask=self.mask & keep[:, None],
            pooled=self.pooled * keep[:, None].to(self.pooled.dtype),
        )


@runtime_checkable
class PromptEncoder(Protocol):
    """What the model and the samplers need from a prompt encoder.

    `TextEncoder` (a frozen transformer) implements it; a contrastive audio-text encoder
    (CLAP-style, METHOD.md §2 `E_contr`) can implement it with its text branch and add an
    audio branch for training.

    Attributes:
        dim: D, the width of `tokens` and `pooled`.
    """

    dim: int

    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """Encodes B prompts; "" gives the null embedding."""
        ...
