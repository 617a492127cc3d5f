"""The MSDM baseline (Mariani et al., ICLR 2024): one network over the stacked stems.

MSDM models the joint distribution of K stems with one unconditional network whose K waveform
channels are the stems (`UNetConfig.in_channels = K`). Its stack of sources [B, K, T] is the
network's input itself, so the wrappers and samplers of GMSDI apply unchanged:

- `JointDenoiser` adapts the network to the stack-denoiser call `(x [B, K, T], sigma [B]) -> [B, K, T]`
  (null conditioning: MSDM is unconditional).
- separation is `separate_sources` with it: the Dirac separator (METHOD.md §3.3) with the joint
  score (MSDM Eq. 10), the free channels moving along score(x_k) − score(x_c), the constrained one
  y − Σ others.
- generation and MSDM's partial generation are `sample_stack` with it (known channels through
  `KnownValues`).

`gmsdi.pipeline.MSDMPipeline` runs both over long audio on the same engine as GMSDI.

`joint_config` turns a (single-channel) `ModelConfig` into MSDM's K-channel one.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

from gmsdi.models.factory import ModelConfig


def joint_config(base: ModelConfig, n_sources: int, cross_attention: bool = False) -> ModelConfig:
    """MSDM's config from a GMSDI one: K input/output channels, the first level widened to
    patch_size·K when narrower (so the patch embedding stays full rank, `UNetConfig`), and no
    cross-attention unless asked for (the model is unconditional)."""
    if n_sources < 1:
        raise ValueError(f"n_sources must be at least 1, got {n_sources}")
    unet = base.unet
    channels = (max(unet.channels[0], unet.patch_size * n_sources), *unet.channels[1:])
    unet = dataclasses.replace(unet, in_channels=n_sources, channels=channels,
                               cross_attn_levels=unet.cross_attn_levels if cross_attention else ())
    return dataclasses.replace(base, unet=unet)


class JointDenoiser(nn.Module):
    """The stack denoiser of an MSDM network: `(x [B, K, T], sigma [B]) -> [B, K, T]`.

    Args:
        model: an EDM denoiser with `model_config.unet.in_channels == K`, called with the null prompt.
        autocast_dtype: run the network under `torch.autocast` (GPU); None = the model's dtype.

    Attributes:
        calls, rows, samples: network calls, examples and Σ examples × length × K so far (as
            `GuidedDenoiser`, for the speed figures).
    """

    def __init__(self, model: nn.Module, autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        config = getattr(model, "model_config", None)
        if config is None:
            raise ValueError("the model has no model_config; build it with gmsdi.models.build_model or load_model")
        self.model = model
        self.n_sources = int(config.unet.in_channels)
        self.autocast_dtype = autocast_dtype
        self.calls = self.rows = self.samples = 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.n_sources:
            raise ValueError(f"expected a stack [B, {self.n_sources}, T], got {tuple(x.shape)}")
        amp = (torch.autocast(x.device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None
               else contextlib.nullcontext())
        with amp:
            d = self.model(x, sigma, None).float()
        self.calls += 1
        self.rows += x.shape[0]
        self.samples += x.shape[0] * x.shape[1] * x.shape[2]
        return d
