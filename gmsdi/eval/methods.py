"""The methods the evaluation compares, by name: which model each needs and how it separates.

Models (`MODELS`): the GMSDI model (mixtures + text), MSDM (one joint model over the stacked stems)
and weakly-supervised MSDM (the text-conditioned network trained on isolated stems), each an
exported checkpoint in assets/ with the training config that makes it. With `quick=True` a tiny
untrained model of the same kind is built in code instead (tests, `--quick`).

Separation methods (`SEPARATION_METHODS`) map to a function `(mix [T], references [K, T], seed) ->
estimates [K, T]` over one model-length chunk (`make_separator`): the GMSDI separator, extractor
and ensemble, MSDM's and weakly-supervised MSDM's Dirac separators, and the references (ideal ratio
mask, unprocessed mixture). `paper` holds the Slakh2100 SI-SDRi of the GMSDI paper's table
(METHOD.md §4) for the report; our data set is SynthSlakh, so they are context, not targets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gmsdi.audio import SILENCE_PEAK
from gmsdi.checkpoint_io import read_metadata
from gmsdi.data.classes import PAPER_STEMS
from gmsdi.data.prompts import compose
from gmsdi.eval.references import ideal_ratio_mask, unprocessed_mixture
from gmsdi.fileio import REPO_ROOT, file_sha256, relative_paths
from gmsdi.pipeline.engine import DivergedError

# (mix [T], references [K, T], seed) -> estimates [K, T]
Separator = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    """A trained model of the comparison.

    Attributes:
        name: registry key.
        label: name in the report.
        checkpoint: default exported checkpoint, relative to the repository.
        train_config: the config that trains it (`train/train.py --config ...`).
        kind: "gmsdi" (a `GMSDIPipeline`: text-conditioned) or "msdm" (an `MSDMPipeline`).
        data: what it was trained on, for the report.
        guidance: its default guidance weight in separation and generation (None = the pipeline's;
            1 = off: weakly-supervised MSDM's clean per-class priors are used as they are, as MSDM
            uses its per-source models).
    """

    name: str
    label: str
    checkpoint: str
    train_config: str
    kind: str
    data: str
    guidance: float | None = None

    @property
    def checkpoint_path(self) -> Path:
        return REPO_ROOT / self.checkpoint

    @property
    def train_command(self) -> str:
        if self.train_config.endswith(".py"):  # a script of its own (the floor)
            return f"python {self.train_config} --out {self.checkpoint}"
        return f"python train/train.py --config {self.train_config}"

    @property
    def export_command(self) -> str:
        if self.train_config.endswith(".py"):
            return self.train_command
        return f"python train/train.py --config {self.train_config} --export {self.checkpoint}"


MODELS: dict[str, ModelSpec] = {
    "gmsdi": ModelSpec("gmsdi", "GMSDI", "assets/gmsdi-synthslakh.safetensors", "train/configs/bands.yaml",
                       "gmsdi", "mixtures + text tags"),
    "msdm": ModelSpec("msdm", "MSDM", "assets/msdm-synthslakh.safetensors", "train/configs/msdm.yaml", "msdm",
                      "separated stems, stacked (bass, drums, guitar, piano)"),
    "weak-msdm": ModelSpec("weak-msdm", "weakly-supervised MSDM", "assets/weak-msdm-synthslakh.safetensors",
                           "train/configs/weak_msdm.yaml", "gmsdi", "isolated stems + their class", guidance=1.0),
    # Issue #8: the same network trained on mixtures with no tags, conditioned on E_contr(y).
    "gmsdi-notags": ModelSpec("gmsdi-notags", "GMSDI, no tags (contrastive)",
                              "assets/gmsdi-notags-synthslakh.safetensors", "train/configs/notags.yaml", "gmsdi",
                              "mixtures only, z = E_contr(y)"),
    # Issue #17: the linear floor, a Wiener filter of per-class spectra from the prompt; every model must beat it.
    "floor": ModelSpec("floor", "linear floor (Wiener, spectra from the prompt)", "assets/floor-synthslakh.safetensors",
                       "train/train_floor.py", "gmsdi", "mixtures + text tags"),
}


@dataclass(frozen=True)
class SeparationMethod:
    """A row of the separation table.

    Attributes:
        name: registry key (also the result file name).
        label: row name in the report.
        model: key of `MODELS`, or None for the references (no model).
        paper: the GMSDI paper's Slakh2100 SI-SDRi (bass, drums, guitar, piano, All) in dB, or None.
    """

    name: str
    label: str
    model: str | None
    paper: tuple[float, float, float, float, float] | None = None


SEPARATION_METHODS: dict[str, SeparationMethod] = {
    "gmsdi-separator": SeparationMethod("gmsdi-separator", "GMSDI separator", "gmsdi",
                                        (9.76, 15.57, 9.13, 9.57, 11.01)),
    "gmsdi-extractor": SeparationMethod("gmsdi-extractor", "GMSDI extractor", "gmsdi",
                                        (11.00, 10.55, 9.52, 10.13, 10.30)),
    "gmsdi-ensemble": SeparationMethod("gmsdi-ensemble", "GMSDI ensemble", "gmsdi",
                                       (11.00, 15.57, 9.52, 10.13, 11.56)),
    "msdm": SeparationMethod("msdm", "MSDM (Dirac)", "msdm", (17.12, 18.68, 15.38, 14.73, 16.48)),
    "weak-msdm": SeparationMethod("weak-msdm", "weakly-supervised MSDM (Dirac)", "weak-msdm",
                                  (19.36, 20.90, 14.70, 14.13, 17.27)),
    "notags-separator": SeparationMethod("notags-separator", "GMSDI no tags, separator", "gmsdi-notags"),
    "notags-extractor": SeparationMethod("notags-extractor", "GMSDI no tags, extractor", "gmsdi-notags"),
    "floor-separator": SeparationMethod("floor-separator", "linear floor, separator (Wiener)", "floor"),
    "irm": SeparationMethod("irm", "ideal ratio mask (oracle, upper bound)", None),
    "mixture": SeparationMethod("mixture", "unprocessed mixture (floor)", None),
}


def _check(name: str, registry: Mapping[str, Any], what: str) -> None:
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; valid names are {sorted(registry)}")


class CheckpointMissing(FileNotFoundError):
    """A method's model has not been trained and exported yet."""


@dataclass
class LoadedModel:
    """A pipeline ready to evaluate, and where it came from.

    Attributes:
        spec: the model's `ModelSpec`.
        pipeline: a `GMSDIPipeline` (kind "gmsdi") or an `MSDMPipeline` (kind "msdm").
        checkpoint: the file it was loaded from (None for a quick model built in code).
        sha256: the checkpoint's sha256 (None for a quick model).
        run, step: the training run and step the checkpoint's metadata names (None where it names none).
    """

    spec: ModelSpec
    pipeline: Any
    checkpoint: str | None
    sha256: str | None
    run: str | None = None
    step: int | None = None

    def describe(self) -> dict[str, Any]:
        """The record's "model" entry. `train_config` is the registry's config only for the registry's own
        checkpoint; another file (`--checkpoint`) may come from any run, which `run` and `step` name."""
        own = self.checkpoint is not None and self.checkpoint == relative_paths(str(self.spec.checkpoint_path))
        return {"model": self.spec.name, "checkpoint": self.checkpoint, "checkpoint_sha256": self.sha256,
                "train_config": self.spec.train_config if own or self.checkpoint is None else None,
                "run": self.run, "step": self.step,
                "window_samples": int(self.pipeline.config.window_samples),
                "sample_rate": int(self.pipeline.sample_rate)}


def quick_model(name: str, stems: Sequence[str] = PAPER_STEMS, seed: int = 0) -> Any:
    """A tiny untrained pipeline of the kind of model `name`, built in code (hash text encoder)."""
    from gmsdi.inference.msdm import joint_config
    from gmsdi.models import build_model, model_config
    from gmsdi.pipeline import GMSDIPipeline, MSDMPipeline
    from gmsdi.text import HashTextEncoder

    _check(name, MODELS, "model")
    config = model_config("tiny", text_encoder="hash")
    if MODELS[name].kind == "msdm":
        return MSDMPipeline(build_model(joint_config(config, len(stems)), seed=seed), stems, device="cpu")
    return GMSDIPipeline(build_model(config, seed=seed), HashTextEncoder(), device="cpu")


def load_model(name: str, checkpoint: str | os.PathLike[str] | None = None, quick: bool = False,
               device: str | None = None, stems: Sequence[str] = PAPER_STEMS) -> LoadedModel:
    """The pipeline of model `name` (a key of `MODELS`).

    Args:
        checkpoint: a checkpoint file (default the spec's, in assets/).
        quick: build a tiny untrained model in code instead (no checkpoint).
        device: None lets Accelerate choose.
        stems: the stem names of a quick MSDM model.

    Raises:
        CheckpointMissing: no checkpoint file (the message says how to train and export it).
    """
    _check(name, MODELS, "model")
    spec = MODELS[name]
    if quick:
        return LoadedModel(spec, quick_model(name, stems), None, None)
    path = Path(checkpoint) if checkpoint is not None else spec.checkpoint_path
    if not path.is_file():
        raise CheckpointMissing(f"{spec.label}: no checkpoint at {path} (not trained yet); train it with "
                                f"`{spec.train_command}` and export it with "
                                f"`{spec.export_command}`")
    if spec.kind == "msdm":
        from gmsdi.pipeline import MSDMPipeline

        pipe = MSDMPipeline.from_pretrained(path, device=device)
    else:
        from gmsdi.pipeline import GMSDIPipeline

        pipe = GMSDIPipeline.from_pretrained(path, device=device)
    meta = read_metadata(path)
    step = meta.get("step", "")
    return LoadedModel(spec, pipe, relative_paths(str(path)), file_sha256(path),  # records hold no machine paths
                       run=meta.get("run"), step=int(step) if step.isdigit() else None)


def _silent(mix: np.ndarray) -> bool:
    return float(np.max(np.abs(mix), initial=0.0)) < SILENCE_PEAK


def make_separator(
    method: str,
    model: LoadedModel | None,
    stems: Sequence[str],
    settings: Mapping[str, Any] | None = None,
    ensemble_results: str | os.PathLike[str] | None = None,
    irm: Mapping[str, Any] | None = None,
) -> Separator:
    """The chunk separator of a method.

    Args:
        method: a key of `SEPARATION_METHODS`.
        model: its loaded model (None for "irm" and "mixture").
        stems: the K stem names, which are also the prompts of the text-conditioned models.
        settings: sampling overrides passed to the pipeline (steps, sampler, s_churn, resamples,
            guidance); None values are dropped. The method's default guidance applies otherwise.
        ensemble_results: the ensemble choice file for "gmsdi-ensemble" (default assets/ensemble.json).
        irm: keyword arguments of `ideal_ratio_mask` (n_fft, hop_length, power).

    Returns:
        `(mix [T], references [K, T], seed) -> [K, T]` float32. A silent chunk (peak below the
        pipeline's silence level) gives zeros for the learned methods.
    """
    _check(method, SEPARATION_METHODS, "separation method")
    spec = SEPARATION_METHODS[method]
    stems = list(stems)
    k = len(stems)
    if method == "irm":
        return lambda mix, refs, seed: ideal_ratio_mask(mix, refs, **dict(irm or {}))
    if method == "mixture":
        return lambda mix, refs, seed: unprocessed_mixture(mix, k)
    if model is None:
        raise ValueError(f"method {method!r} needs its model ({spec.model})")
    if model.spec.name != spec.model:
        raise ValueError(f"method {method!r} needs the {spec.model!r} model, got {model.spec.name!r}")
    kw = {key: v for key, v in dict(settings or {}).items() if v is not None}
    pipe = model.pipeline
    if model.spec.kind == "msdm":
        kw.pop("guidance", None)  # unconditional
        pipe.check_stems(stems)  # before any work: its stems are its channels
    elif model.spec.guidance is not None:
        kw.setdefault("guidance", model.spec.guidance)

    def stack(result: Any, names: Sequence[str]) -> np.ndarray:
        return np.stack([result.stems[n] for n in names]).astype(np.float32)

    def run(mix: np.ndarray, refs: np.ndarray, seed: int) -> np.ndarray:
        if _silent(mix):
            return np.zeros((k, len(mix)), dtype=np.float32)
        try:
            return separate(mix, seed)
        except DivergedError:  # scored as NaN: the table shows the setting failed, the run goes on
            return np.full((k, len(mix)), np.nan, dtype=np.float32)

    def separate(mix: np.ndarray, seed: int) -> np.ndarray:
        if method in ("msdm", "gmsdi-separator", "weak-msdm", "notags-separator", "floor-separator"):
            return stack(pipe.separate(mix, stems, seed=seed, **kw), stems)
        if method in ("gmsdi-extractor", "notags-extractor"):
            out = []
            for i, stem in enumerate(stems):
                rest = compose([p for j, p in enumerate(stems) if j != i])
                out.append(pipe.extract(mix, stem, rest, seed=seed + i, **kw).stems[stem])
            return np.stack(out).astype(np.float32)
        return stack(pipe.ensemble(mix, stems, results=ensemble_results, seed=seed, **kw), stems)

    return run


__all__ = ["MODELS", "SEPARATION_METHODS", "CheckpointMissing", "LoadedModel", "ModelSpec", "SeparationMethod",
           "Separator", "file_sha256", "load_model", "make_separator", "quick_model"]
