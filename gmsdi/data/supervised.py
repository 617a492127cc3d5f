"""Training crops for the supervised baselines of the evaluation, from separated stems.

GMSDI trains on mixtures (`slakh.MixtureDataset`); the baselines it is compared with see stems:

- `JointStemsDataset` (MSDM): all K classes of a crop stacked as K channels `[K, T]`, no prompt;
  the mixture they model is the sum of those channels (`StemsDataset(mix_from_stems=True)`).
- `SingleStemDataset` (weakly-supervised MSDM): one active class of a crop `[1, T]`, prompted with
  that class, so that the text-conditioned model learns a clean prior per class.

Items have the keys of `MixtureDataset` items (audio, tags, programs, prompt, track, start), so the
training loop and `slakh.collate_mixtures` take them unchanged. Crops are random as in
`StemsDataset` (deterministic in seed, epoch and index); a crop where no class is active (from MIDI)
is redrawn up to `max_tries` times before audio is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from gmsdi.data.classes import PAPER_STEMS
from gmsdi.data.prompts import stem_prompt
from gmsdi.data.slakh import StemsDataset


class _ActiveStemCrops(Dataset):
    def __init__(
        self,
        root: str | Path,
        split: str | None,
        classes: Sequence[str] = PAPER_STEMS,
        sample_rate: int = 16000,
        crop_seconds: float = 2.048,
        crops_per_epoch: int = 1000,
        seed: int = 0,
        max_tries: int = 8,
        min_active_s: float = 0.25,
        activity_cache: str | Path | None = None,
    ) -> None:
        if crops_per_epoch < 1 or max_tries < 1:
            raise ValueError(f"crops_per_epoch and max_tries must be >= 1, got {crops_per_epoch}, {max_tries}")
        self.n, self.max_tries, self.seed = int(crops_per_epoch), int(max_tries), int(seed)
        # Try t of item i is crop t·n + i of the inner dataset: every try is its own random crop.
        self.stems = StemsDataset(root, split, classes=classes, sample_rate=sample_rate, crop_seconds=crop_seconds,
                                  seed=seed, mix_from_stems=True, crops_per_epoch=self.n * self.max_tries,
                                  min_active_s=min_active_s, activity_cache=activity_cache)
        self.classes = tuple(self.stems.classes)

    def set_epoch(self, epoch: int) -> None:
        self.stems.set_epoch(epoch)

    def __len__(self) -> int:
        return self.n

    def _crop(self, i: int) -> tuple[dict[str, Any], np.ndarray]:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} crops")
        j = i
        for t in range(self.max_tries):
            j = t * self.n + i
            if self.stems.crop_active(j).any():
                break
        item = self.stems[j]
        return item, item["active"].numpy()


class JointStemsDataset(_ActiveStemCrops):
    """MSDM's training crops: audio `[K, T]`, one channel per class of `classes` (zeros where a class
    is absent), prompt "" (the model is unconditional); tags = the active classes.

    Args:
        root, split: see `slakh.list_tracks`.
        classes: the K channels, in order (default bass, drums, guitar, piano).
        sample_rate, crop_seconds: output rate (Hz) and crop length (s).
        crops_per_epoch: dataset length.
        seed: base seed of the crops.
        max_tries: crops drawn per item until one has an active class.
        min_active_s, activity_cache: as `StemsDataset`.
    """

    def __getitem__(self, i: int) -> dict[str, Any]:
        item, active = self._crop(i)
        return {"audio": item["stems"], "tags": [c for c, a in zip(self.classes, active, strict=True) if a],
                "programs": [], "prompt": "", "track": item["track"], "start": item["start"]}


class SingleStemDataset(_ActiveStemCrops):
    """Weakly-supervised MSDM's training crops: audio `[1, T]`, the stem of one class that is active
    in the crop (uniformly among the active ones), prompted with that class at a random granularity
    ("bass" or a description such as "electric bass", `prompts.stem_prompt`). Arguments as
    `JointStemsDataset`."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        item, active = self._crop(i)
        rng = np.random.default_rng((self.seed, self.stems.epoch, int(i), 23))
        choices = np.flatnonzero(active)
        k = int(rng.choice(choices)) if len(choices) else int(rng.integers(len(self.classes)))
        cls = self.classes[k]
        return {"audio": item["stems"][k:k + 1], "tags": [cls], "programs": [],
                "prompt": stem_prompt(cls, None, rng), "track": item["track"], "start": item["start"]}


__all__ = ["JointStemsDataset", "SingleStemDataset"]
