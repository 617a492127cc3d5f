"""Text conditioning: prompt encoders and the `TextEmbedding` the network consumes (METHOD.md §2).

Bottom up: `embedding` (the embedding type) -> `base` (`CachedPromptEncoder`) -> `encoder`
(MiniLM, parts, hash), `contrastive`, `clap` -> `registry` (`build_text_encoder`, by name).
`vocabulary` checks prompts against the training instruments.
"""

from gmsdi.text.base import CachedPromptEncoder
from gmsdi.text.embedding import PromptEncoder, TextEmbedding
from gmsdi.text.encoder import TEXT_ENCODERS, HashTextEncoder, PartsTextEncoder, TextEncoder, default_text_encoder_path
from gmsdi.text.registry import build_text_encoder

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
