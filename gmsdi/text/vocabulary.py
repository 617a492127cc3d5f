"""Is a prompt something the model was trained on? A check in the prompt encoder's own embedding.

Training prompts name instruments at three granularities (class, description, General MIDI program
name; `gmsdi.data.prompts.stem_prompt`). `PromptCheck` embeds that vocabulary once with the model's
prompt encoder and, for each comma-separated part of a prompt, finds the nearest known phrase by
cosine similarity. A part whose nearest phrase is below `threshold` is far from everything the
model has seen ("asdfgh", "dog barking"): the model will still return a stem, but what it sounds
like is not controlled by the words. The warning names the nearest known instruments.

The threshold is measured, not guessed: `python -m gmsdi.text.vocabulary` prints the nearest
similarity of instrument words (some in the vocabulary, such as "violin"; some not, such as
"upright bass" or "snare") and of words that name no instrument, with the bundled prompt encoder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch

from gmsdi.data.classes import CLASS_DESCRIPTIONS, SYNTH_PROGRAMS, program_name
from gmsdi.data.prompts import class_phrase, parts, program_phrase

# Measured with minilm-parts (`python -m gmsdi.text.vocabulary`): instrument words outside the
# vocabulary score 0.49-0.86 ("snare" 0.49, "hammond" 0.50, "upright bass" 0.65; "rhodes", which
# MiniLM does not know, 0.30), words that are not instruments 0.18-0.33 ("qwerty" 0.33).
DEFAULT_THRESHOLD = 0.40


def training_vocabulary() -> list[str]:
    """Every phrase a training prompt can name an instrument with (classes, descriptions, programs)."""
    words = {class_phrase(c) for c in SYNTH_PROGRAMS}
    words |= {d for options in CLASS_DESCRIPTIONS.values() for d in options}
    for cls, programs in SYNTH_PROGRAMS.items():
        words |= {program_phrase(program_name(p, cls == "drums")) for p in programs}
    return sorted(words)


class PromptCheck:
    """Nearest training phrases of prompt parts, in the prompt encoder's pooled embedding.

    Args:
        encoder: the model's prompt encoder (anything with `encode(prompts) -> TextEmbedding`).
        threshold: cosine below which a part counts as unknown.
    """

    def __init__(self, encoder: Any, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.encoder, self.threshold = encoder, threshold
        self.vocabulary = training_vocabulary()
        self._known = self._embed(self.vocabulary)

    def _embed(self, phrases: Sequence[str]) -> torch.Tensor:
        pooled = self.encoder.encode(list(phrases)).pooled.float().cpu()
        return torch.nn.functional.normalize(pooled, dim=-1)

    def nearest(self, part: str, k: int = 3) -> list[tuple[str, float]]:
        """The k known phrases nearest to one part, with their cosine similarity."""
        sims = self._known @ self._embed([part])[0]
        top = sims.topk(min(k, len(sims)))
        return [(self.vocabulary[i], float(s)) for s, i in zip(top.values, top.indices, strict=True)]

    def warnings(self, prompts: Sequence[str]) -> list[str]:
        """One sentence per unknown part of `prompts` (empty prompts are fine: the null prompt)."""
        out = []
        for part in dict.fromkeys(q for p in prompts for q in parts(p)):
            near = self.nearest(part)
            if near[0][1] < self.threshold:
                names = ", ".join(f"{n} ({s:.2f})" for n, s in near)
                out.append(f"'{part}' is far from every instrument the model was trained on (nearest: {names}); "
                           "it will still make a stem, but the words will not decide what it sounds like")
        return out


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the nearest-phrase similarity of probe words, to set `DEFAULT_THRESHOLD`."""
    from gmsdi.text.registry import build_text_encoder

    name = (argv or sys.argv[1:] or ["minilm-parts"])[0]
    check = PromptCheck(build_text_encoder(name))
    unseen = ["bass guitar", "upright bass", "violin", "cello", "sax", "trumpet", "electric piano", "rhodes",
              "drum machine", "snare", "flute", "acoustic guitar strumming", "synth bass", "hammond"]
    foreign = ["asdfgh", "qwerty", "dog barking", "the", "rain on a roof", "hello world", "car engine",
               "spoken words", "12345", "banana"]
    for label, words in (("instrument words (some of them in the vocabulary)", unseen), ("not instruments", foreign)):
        print(label)
        for w in words:
            (n, s), *_ = check.nearest(w)
            print(f"  {w!r}: {s:.2f} ({n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
