"""The public API: one trained mixture model, four tasks (METHOD.md §3).

    from gmsdi.pipeline import GMSDIPipeline

    pipe = GMSDIPipeline.from_pretrained()              # the bundled model; cuda, mps or cpu
    song = pipe.generate(["bass", "drums", "piano"], seconds=4, seed=0)
    song.save("out/song")                              # stems/*.wav, mix.wav, settings.json
    band = pipe.accompany({"bass": "bass.wav"}, ["drums", "piano"], seed=0)
    parts = pipe.separate("mix.wav", ["bass", "drums", "guitar", "piano"], seed=0)
    bass = pipe.extract("mix.wav", "bass", seed=0)
    best = pipe.ensemble("mix.wav", ["bass", "drums", "guitar", "piano"], seed=0)

Every task returns a `Result` (named stems, the mix, the sample rate and the settings used).

The package, in reading order:
- `settings`: `Settings` (checked once, where it is built), its limits and the defaults
  `GENERATION` / `SEPARATION`; the app and the CLI read their ranges from it.
- `result`: `Result` and how it is saved.
- `inputs`: checks of prompts, negatives and the constrained stem.
- `engine`: `BasePipeline`: device, σ schedule, windows, levels, seeds, the settings record and
  the two window loops (continuation for generation, overlap-add for separation).
- `guided`: `GMSDIPipeline`, the provider that turns prompts into a guided denoiser.
- `joint`: `MSDMPipeline`, the provider of the MSDM baseline's joint denoiser.

Words: a *stem* is one instrument's audio (what a task returns); a *prompt* is the text that names
a stem; a *chain* is one row of the stack the sampler moves (the stems, and for generation the
mixture chain); MSDM's *channels* are its network's inputs, one per stem.

Audio input conventions (paths, arrays, downmixing, resampling) are in `gmsdi.audio`.
"""

from gmsdi.pipeline.engine import REPO_ROOT, BasePipeline, DivergedError, Engine, cpu_has_fast_bf16
from gmsdi.pipeline.guided import BUNDLED_CHECKPOINT, GMSDIPipeline
from gmsdi.pipeline.joint import MSDMPipeline
from gmsdi.pipeline.result import Result
from gmsdi.pipeline.settings import (
    CHURN_RANGE,
    GENERATION,
    GUIDANCE_RANGE,
    MAX_RESAMPLES,
    MAX_SECONDS,
    MAX_STEMS,
    MAX_STEPS,
    MIN_INPUT_SECONDS,
    MIX_PEAK,
    MSDM_GENERATION,
    MSDM_SEPARATION,
    SEPARATION,
    Settings,
)

__all__ = ["BUNDLED_CHECKPOINT", "CHURN_RANGE", "GENERATION", "GUIDANCE_RANGE", "MAX_RESAMPLES", "MAX_SECONDS",
           "MIN_INPUT_SECONDS", "MAX_STEMS", "MAX_STEPS", "MIX_PEAK", "MSDM_GENERATION", "MSDM_SEPARATION",
           "REPO_ROOT", "SEPARATION",
           "BasePipeline", "DivergedError", "Engine", "GMSDIPipeline", "MSDMPipeline", "Result", "Settings",
           "cpu_has_fast_bf16"]
