"""Safetensors I/O, the one place files of tensors are read and written (models, encoders, probes).

Low in the stack (torch and safetensors only): `gmsdi.models.checkpoint` adds the model config on
top; the contrastive encoder and the instrument probe store their own metadata with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from gmsdi.fileio import atomic_write


def write_safetensors(path: str | os.PathLike[str], state: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Writes tensors and string metadata to `path` atomically (`gmsdi.fileio.atomic_write`)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a safetensors file.

    Raises:
        ValueError: the file is not a readable safetensors file (the message names it).
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return meta, load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {e}") from e


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors file, without loading its tensors.

    Raises:
        ValueError: the file is not a readable safetensors file (the message names it).
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is not a readable safetensors checkpoint: {e}") from e


__all__ = ["read_metadata", "read_safetensors", "write_safetensors"]
