"""Text conditioning: prompt encoders and the `TextEmbedding` the network consumes (METHOD.md §2)."""

from gmsdi.text.embedding import PromptEncoder, TextEmbedding
from gmsdi.text.encoder import (
    TEXT_ENCODERS,
    CachedPromptEncoder,
    HashTextEncoder,
    PartsTextEncoder,
    TextEncoder,
    build_text_encoder,
    default_text_encoder_path,
)

__all__ = [
    "TEXT_ENCODERS",
    "CachedPromptEncoder",
    "HashTextEncoder",
    "PartsTextEncoder",
    "PromptEncoder",
    "TextEmbedding",
    "TextEncoder",
    "build_text_encoder",
    "default_text_encoder_path",
]
