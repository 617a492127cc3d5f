"""Evaluation: separation metrics (SI-SDRi, MSDM protocol), mixture consistency, FAD on musicnn embeddings.

- `metrics`: `si_sdr`, `si_sdr_improvement`, `score_separation` → `SeparationScores` (per stem, "All"),
  `mixture_consistency_error`.
- `musicnn`: the MTT_musicnn tagger ported to torch (`load_musicnn`), weights in assets/musicnn_mtt.npz.
- `fad`: `FrechetAudioDistance` (FAD, sub-FAD, single-source FAD), `frechet_distance`, `GaussianStats`.
- `references`: the ideal ratio mask (oracle upper bound) and the unprocessed mixture (0 dB floor).
- `methods`, `runner`, `report`: the compared methods and their checkpoints, the protocols over
  a split, and docs/RESULTS.md.
- `cli` (`python -m gmsdi.eval`: the parser), `commands` (one function per subcommand over
  `runner`) and `records` (the result files' header, folders and writer).
"""

from gmsdi.eval.fad import EMBEDDING_LAYERS, FrechetAudioDistance, GaussianStats, fad, frechet_distance
from gmsdi.eval.metrics import (
    SILENCE_THRESHOLD,
    SeparationScores,
    eval_windows,
    is_silent,
    mixture_consistency_error,
    score_separation,
    si_sdr,
    si_sdr_improvement,
)
from gmsdi.eval.musicnn import MusiCNN, MusiCNNExtractor, load_musicnn
from gmsdi.eval.references import ideal_ratio_mask, unprocessed_mixture

__all__ = [
    "EMBEDDING_LAYERS",
    "SILENCE_THRESHOLD",
    "FrechetAudioDistance",
    "GaussianStats",
    "MusiCNN",
    "MusiCNNExtractor",
    "SeparationScores",
    "eval_windows",
    "fad",
    "frechet_distance",
    "ideal_ratio_mask",
    "is_silent",
    "load_musicnn",
    "mixture_consistency_error",
    "score_separation",
    "si_sdr",
    "si_sdr_improvement",
    "unprocessed_mixture",
]
