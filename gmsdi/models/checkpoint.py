"""Checkpoints: weights in safetensors with the `ModelConfig` as JSON in the file's metadata.

A checkpoint alone rebuilds its model: `load_model(path)` reads the config, calls
`build_model` and loads the weights. Training saves its EMA weights this way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import gmsdi
from gmsdi.checkpoint_io import read_metadata, write_safetensors
from gmsdi.models.edm import EDMDenoiser
from gmsdi.models.factory import ModelConfig, build_model

CONFIG_KEY = "gmsdi_model_config"
FORMAT_KEY = "gmsdi_format"
FORMAT = "gmsdi.EDMDenoiser/1"


def save_model(
    path: str | os.PathLike[str],
    model: EDMDenoiser,
    config: ModelConfig | None = None,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Writes `model`'s weights and `config` to one safetensors file, atomically (`write_safetensors`).

    Args:
        path: destination (".safetensors" by convention); parent folders are created.
        model: the denoiser (e.g. the EMA copy).
        config: its config; default `model.model_config` (set by `build_model`).
        metadata: extra string metadata (e.g. {"step": "12000"}).
        dtype: store floating-point weights in this dtype (e.g. torch.bfloat16: half the file);
            `load_model` casts them back to the model's float32.

    Returns:
        The path written.
    """
    config = config if config is not None else getattr(model, "model_config", None)
    if not isinstance(config, ModelConfig):
        raise ValueError("save_model needs the ModelConfig: pass config= or build the model with build_model")
    meta = dict(metadata or {})
    meta[CONFIG_KEY] = json.dumps(config.to_dict())
    meta[FORMAT_KEY] = FORMAT
    meta["gmsdi_version"] = gmsdi.__version__
    state = model.state_dict()
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        meta["gmsdi_storage_dtype"] = str(dtype).replace("torch.", "")
    return write_safetensors(path, state, meta)


def _read_metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    meta = read_metadata(path)
    if CONFIG_KEY not in meta:
        raise ValueError(
            f"{str(path)!r} is a safetensors file without a gmsdi model config; was it written by save_model?"
        )
    return meta


def load_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The `ModelConfig` stored in a checkpoint, without loading the weights."""
    meta = _read_metadata(Path(path))
    try:
        return ModelConfig.from_dict(json.loads(meta[CONFIG_KEY]))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ValueError(f"the model config stored in {str(path)!r} is invalid: {e}") from e


def load_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """All string metadata of a checkpoint (config JSON, version and whatever the saver added)."""
    return _read_metadata(Path(path))


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> EDMDenoiser:
    """Rebuilds the model a checkpoint describes and loads its weights, in eval mode.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a gmsdi checkpoint, or its weights do not fit its config.
    """
    config = load_config(path)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise ValueError(f"cannot read the weights in {str(path)!r}: {e}") from e
    model = build_model(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"the weights in {str(path)!r} do not match its config: {e}") from e
    return model.to(device).eval()
