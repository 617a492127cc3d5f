"""Inference (METHOD.md §3): guidance, constraints over a source stack, tasks and chunking.

Layers, bottom up:
- `guidance.GuidedDenoiser`: negative-prompt guidance for every chain of a stack [B, N, T] in
  one batched network call.
- `constraints`: wrappers that turn it into the denoiser a sampler needs — `MixtureCoupling`
  (Eq. 2), `KnownValues` (locked stems, continuation context), `DiracConstraint` and
  `ProjectedDirac` (separation: MSDM's form and ours).
- `tasks`: `generate_sources` and `separate_sources` build those wrappers and run a sampler.
- `chunking`: `overlap_add` (separation, extraction) and `continue_windows` (generation,
  accompaniment) for audio longer than the model's window.
- `gaussian.GaussianDenoiser`: a closed-form denoiser for Gaussian sources, for tests.
- `ensemble`: which of separator and extractor to use per instrument.
- `msdm`: the MSDM baseline's joint denoiser (one network over the stacked stems), run by the
  same wrappers and samplers.

`gmsdi.pipeline.GMSDIPipeline` is the public API on top.
"""

from gmsdi.inference.chunking import (
    chunk_starts,
    continuation_spans,
    continue_windows,
    overlap_add,
    round_up,
    window_samples,
)
from gmsdi.inference.constraints import (
    DIRAC_MODES,
    GAMMA_MODES,
    LOCKED_NOISE,
    DiracConstraint,
    KnownValues,
    MixtureCoupling,
    ProjectedDirac,
    check_coupling,
    coupling_growth,
)
from gmsdi.inference.gaussian import GaussianDenoiser
from gmsdi.inference.guidance import GuidedDenoiser, default_negative_prompts
from gmsdi.inference.msdm import JointDenoiser, joint_config
from gmsdi.inference.tasks import (
    DiracStepsError,
    check_dirac_steps,
    dirac_error,
    generate_sources,
    min_dirac_steps,
    sample_stack,
    separate_sources,
)

__all__ = [
    "DIRAC_MODES",
    "GAMMA_MODES",
    "LOCKED_NOISE",
    "DiracConstraint",
    "DiracStepsError",
    "GaussianDenoiser",
    "GuidedDenoiser",
    "JointDenoiser",
    "KnownValues",
    "MixtureCoupling",
    "ProjectedDirac",
    "check_coupling",
    "check_dirac_steps",
    "coupling_growth",
    "chunk_starts",
    "continuation_spans",
    "continue_windows",
    "default_negative_prompts",
    "dirac_error",
    "min_dirac_steps",
    "generate_sources",
    "joint_config",
    "overlap_add",
    "round_up",
    "sample_stack",
    "separate_sources",
    "window_samples",
]
