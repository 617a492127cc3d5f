"""A closed-form denoiser: isotropic Gaussian sources, with the variance chosen by the prompt.

If every sample of x is N(0, v) then E[x | x + σε] = v/(v + σ²)·(x + σε) exactly, so
D(x; σ) = v/(v + σ²)·x. This stands in for the network wherever a test (or a reader) needs
results that are known in closed form: an ODE sampler started from N(0, σ_max²) ends at variance
v·σ_max²/(v + σ_max²); the Dirac separator's outputs sum to the mixture; locked stems return.

It plugs into `GMSDIPipeline` in place of a trained model: it takes the same
`(x [B, 1, T], sigma [B], cond: TextEmbedding) -> denoised` call and carries a `model_config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import nn

from gmsdi.models.edm import EDMConfig
from gmsdi.models.factory import ModelConfig, model_config
from gmsdi.text.embedding import PromptEncoder, TextEmbedding


class GaussianDenoiser(nn.Module):
    """D(x; σ, prompt) = v/(v + σ²)·x, with v looked up from the prompt.

    Args:
        variances: prompt -> v (waveform variance; full scale = 1). A mixture prompt such as
            "bass, drums" must be listed itself if it is used (e.g. with the sum of the variances).
        encoder: the prompt encoder the pipeline uses (prompts are matched by their pooled vector).
        default_variance: v for prompts not in `variances`.
        null_variance: v for the null prompt "" (default: `default_variance`).
        config: the `model_config` the pipeline reads (sample rate, window, σ range); default the
            tiny preset with σ from 1e-3 to 80, so that sampling from N(0, σ_max²) is unbiased.
    """

    def __init__(
        self,
        variances: Mapping[str, float],
        encoder: PromptEncoder,
        default_variance: float = 0.04,
        null_variance: float | None = None,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.prompts = list(variances)
        self.default_variance = float(default_variance)
        self.null_variance = float(null_variance if null_variance is not None else default_variance)
        emb = encoder.encode(self.prompts) if self.prompts else None
        pooled = emb.pooled if emb is not None else torch.zeros(0, encoder.dim)
        self.register_buffer("pooled", torch.nn.functional.normalize(pooled, dim=-1))
        self.register_buffer("variances", torch.tensor([float(variances[p]) for p in self.prompts]))
        if config is None:
            config = model_config("tiny", text_encoder="hash")
            config = dataclasses.replace(config, edm=EDMConfig(sigma_min=1e-3, sigma_max=80.0))
        self.model_config = config

    def variance(self, cond: TextEmbedding | None, batch: int) -> torch.Tensor:
        """[B] the variance each row's prompt selects."""
        if cond is None:
            return torch.full((batch,), self.null_variance, device=self.pooled.device)
        out = torch.full((batch,), self.default_variance, device=self.pooled.device)
        if self.prompts:
            sim = torch.nn.functional.normalize(cond.pooled.to(self.pooled), dim=-1) @ self.pooled.T  # [B, P]
            best, idx = sim.max(dim=1)
            hit = best > 1 - 1e-5
            out[hit] = self.variances[idx[hit]]
        out[cond.is_null.to(out.device)] = self.null_variance
        return out

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: TextEmbedding | None = None) -> torch.Tensor:
        """x: [B, C, T]; sigma: scalar or [B]. Returns v/(v + σ²)·x."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        v = self.variance(cond, x.shape[0]).to(x.dtype)
        return x * (v / (v + sigma**2)).reshape(-1, *([1] * (x.ndim - 1)))
