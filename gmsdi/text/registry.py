"""`build_text_encoder`: every prompt encoder by name (the top of `gmsdi.text`; nothing in it imports this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gmsdi.text.base import CachedPromptEncoder
from gmsdi.text.encoder import TEXT_ENCODERS, TextEncoder, _local_path


def build_text_encoder(name: str, **kwargs: Any) -> CachedPromptEncoder:
    """The prompt encoder registered as `name`, or a `TextEncoder` for a local model directory.

    Args:
        name: a key of `TEXT_ENCODERS` ("minilm", "hash"), "contrastive" (the bundled contrastive
            encoder's text branch) or "contrastive:PATH" (one from a checkpoint file), "clap:PATH"
            (LAION-CLAP from a local Hugging Face CLAP directory or an original .pt checkpoint,
            see `gmsdi.text.clap.LaionClapEncoder.from_pretrained`), "table:PATH" (a parts table of
            `gmsdi.text.table`, for training without the text model), or a path to a local Hugging
            Face model directory.
        **kwargs: passed to the encoder (e.g. max_length, cache_size).
    """
    if name in TEXT_ENCODERS:
        return TEXT_ENCODERS[name](**kwargs)
    if name == "contrastive" or name.startswith("contrastive:"):
        # The text branch of a contrastive encoder (gmsdi.text.contrastive); "contrastive" alone is
        # the bundled one, "contrastive:PATH" a checkpoint file (relative paths from the repo root
        # when they do not exist from the working directory).
        from gmsdi.text.contrastive import ContrastiveEncoder

        path = name.partition(":")[2] or None
        return ContrastiveEncoder.from_pretrained(_local_path(path) if path else None, **kwargs)
    if name.startswith("table:"):
        # Precomputed part vectors of a parts encoder (gmsdi.text.table): training without the text model.
        from gmsdi.text.table import PartsTable

        return PartsTable.load(_local_path(name.partition(":")[2]), **kwargs)
    if name.startswith("clap:"):
        # LAION-CLAP (gmsdi.text.clap) from local files; relative paths as for "contrastive:PATH".
        from gmsdi.text.clap import LaionClapEncoder

        path = name.partition(":")[2]
        if not path:
            raise ValueError("'clap:PATH' needs a path: a local Hugging Face CLAP directory or a LAION .pt checkpoint")
        return LaionClapEncoder.from_pretrained(_local_path(path), **kwargs)
    if Path(name).is_dir():
        return TextEncoder.from_path(name, **kwargs)
    raise ValueError(
        f"unknown text encoder {name!r}; valid names are {sorted(TEXT_ENCODERS)}, 'contrastive', "
        "'contrastive:PATH', 'clap:PATH' (LAION-CLAP from local files), 'table:PATH' (a parts table), or a "
        "local Hugging Face model directory"
    )


__all__ = ["build_text_encoder"]
