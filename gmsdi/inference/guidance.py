"""Per-source negative-prompt guidance for a stack of chains, in one batched network call.

METHOD.md §3: feeding the mixture model a single source's prompt p_k parameterises that source's
score, and negative prompting makes it usable. For chain n with prompt p_n, negative prompt n_n
and weight w_n the guided denoiser is

    D_n(x) = D(x; n_n) + w_n · (D(x; p_n) − D(x; n_n)),

classifier-free guidance with n_n in place of the null prompt; w_n = 1 skips the negative pass.
Guidance may be limited to an interval of noise levels σ_lo ≤ σ ≤ σ_hi (Kynkäänniemi et al., 2024,
"Applying guidance in a limited interval improves sample and distribution quality in diffusion
models"); outside it D_n = D(x; p_n) and the negative pass is skipped, which also saves its network
rows. (It did not stop the divergence of the separator at guidance 3 measured in train/RUNS.md,
session 21: that one needed the churn stopped at low σ, `s_tmin`.)

`GuidedDenoiser` evaluates this for every chain of a stack [B, N, T] (K sources, and for Eq. (2)
the mixture chain too) with ONE call of the network: all chains × (positive, negative) passes are
concatenated along the batch, and their conditioning is encoded once, before sampling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from gmsdi.data.prompts import compose
from gmsdi.inference.ensemble import prompt_class
from gmsdi.text.embedding import PromptEncoder, TextEmbedding


def default_negative_prompts(prompts: Sequence[str], exclude: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The default negative prompt of each source: the other sources' prompts joined with ⊗.

    METHOD.md §3 (ours, as a default): n_k = ⊗_{l≠k} p_l. A single source gets "" (the null
    prompt), which makes its guidance ordinary classifier-free guidance.

    Args:
        prompts: [K] the sources' prompts.
        exclude: (class, other) stem-class pairs: a source whose prompt names `class` leaves out of
            its negative every other prompt that names `other` (`prompt_class`, which reads "keys" or
            "grand piano" as piano); e.g. `gmsdi.pipeline.settings.BASS_NEGATIVE_EXCLUDE`.

    Returns:
        [K] negative prompts.
    """
    classes = [prompt_class(p) for p in prompts]
    out = []
    for k, cls in enumerate(classes):
        drop = {other for c, other in exclude if c == cls}
        out.append(compose([q for j, q in enumerate(prompts) if j != k and classes[j] not in drop]))
    return out


class GuidedDenoiser(nn.Module):
    """Guided denoisers D_n for every chain of a stack [B, N, T], one network call per evaluation.

    Args:
        model: the EDM denoiser, `model(x [M, 1, T], sigma [M], cond: TextEmbedding [M]) -> [M, 1, T]`.
        positive: [N] the chains' prompts p_n, encoded.
        negative: [N] their negative prompts n_n, encoded (rows of chains with weight 1 are unused).
        weights: [N] guidance weights w_n (1 = no guidance, no negative pass).
        evaluate: [N] which chains go through the network; the others (e.g. locked stems, whose
            denoised value a constraint wrapper sets) return their input unchanged. Default all.
        autocast_dtype: run the network under `torch.autocast` with this dtype (bf16/fp16 on a GPU);
            None runs in the model's dtype. The result is float32 either way.
        sigma_min, sigma_max: guide only at sigma_min ≤ σ ≤ sigma_max (None: no upper bound);
            elsewhere every chain takes its positive estimate, with no negative pass.

    Attributes:
        calls: network calls made so far (one per evaluation; the benchmark reads it).
        rows: examples sent through the network so far.
        samples: Σ rows × length, the audio samples the network has processed.
    """

    def __init__(
        self,
        model: nn.Module,
        positive: TextEmbedding,
        negative: TextEmbedding,
        weights: Sequence[float],
        evaluate: Sequence[bool] | None = None,
        autocast_dtype: torch.dtype | None = None,
        sigma_min: float = 0.0,
        sigma_max: float | None = None,
    ) -> None:
        super().__init__()
        n = positive.batch_size
        if negative.batch_size != n or len(weights) != n:
            raise ValueError(
                f"positive ({n}), negative ({negative.batch_size}) and weights ({len(weights)}) must "
                "give one entry per chain"
            )
        evaluate = [True] * n if evaluate is None else [bool(e) for e in evaluate]
        if len(evaluate) != n:
            raise ValueError(f"evaluate must have one flag per chain ({n}), got {len(evaluate)}")
        if not sigma_min >= 0 or (sigma_max is not None and not sigma_max >= sigma_min):
            raise ValueError(f"the guidance interval needs 0 ≤ sigma_min ≤ sigma_max, got [{sigma_min}, {sigma_max}]")
        self.sigma_min, self.sigma_max = float(sigma_min), sigma_max
        self.model = model
        self.n_chains = n
        self.autocast_dtype = autocast_dtype
        self.evaluated = [i for i in range(n) if evaluate[i]]
        self.guided = [i for i in self.evaluated if float(weights[i]) != 1.0]
        # Conditioning of one batch element: positive rows of evaluated chains, then negative rows
        # of guided chains. Tiled over the batch in `_conditioning` (b-major, as x is flattened).
        parts = [positive[torch.tensor(self.evaluated, dtype=torch.long)]] if self.evaluated else []
        if self.guided:
            parts.append(negative[torch.tensor(self.guided, dtype=torch.long)])
        self._cond_pos = parts[0] if parts else None
        self._cond_neg = parts[1] if len(parts) > 1 else None
        self.register_buffer("weights", torch.tensor([float(weights[i]) for i in self.guided]), persistent=False)
        self._cache: dict[tuple[int, torch.device, bool], TextEmbedding] = {}
        self.calls = 0
        self.rows = 0
        self.samples = 0

    @classmethod
    def from_prompts(
        cls,
        model: nn.Module,
        encoder: PromptEncoder,
        prompts: Sequence[str],
        negative_prompts: Sequence[str],
        weights: Sequence[float],
        evaluate: Sequence[bool] | None = None,
        autocast_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        sigma_min: float = 0.0,
        sigma_max: float | None = None,
    ) -> GuidedDenoiser:
        """Encodes the prompts once ("" = the null prompt) and builds the denoiser."""
        emb = encoder.encode(list(prompts) + list(negative_prompts), device=device)
        n = len(prompts)
        idx = torch.arange(n, device=emb.device)
        return cls(model, emb[idx], emb[idx + n], weights, evaluate, autocast_dtype, sigma_min, sigma_max)

    def guiding(self, sigma: torch.Tensor) -> torch.Tensor:
        """[B] bool: which batch elements are inside the guidance interval at noise level `sigma` [B]."""
        inside = sigma >= self.sigma_min
        return inside if self.sigma_max is None else inside & (sigma <= self.sigma_max)

    def _conditioning(self, batch: int, device: torch.device, negative: bool = True) -> TextEmbedding:
        key = (batch, device, negative)
        if key not in self._cache:
            parts = []
            for emb in (self._cond_pos, self._cond_neg if negative else None):
                if emb is not None:
                    tile = torch.arange(emb.batch_size, device=emb.device).repeat(batch)
                    parts.append(emb[tile])
            self._cache[key] = TextEmbedding.cat(parts).to(device)
        return self._cache[key]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Guided denoised estimates of every chain.

        Args:
            x: [B, N, T] noisy chains.
            sigma: [B] noise levels.

        Returns:
            [B, N, T] float32: D_n for evaluated chains, x_n for the others.
        """
        b, n, t = x.shape
        if n != self.n_chains:
            raise ValueError(f"expected {self.n_chains} chains, got x of shape {tuple(x.shape)}")
        out = x.clone()
        if not self.evaluated:
            return out
        e = len(self.evaluated)
        inside = self.guiding(sigma)
        g = len(self.guided) if bool(inside.any()) else 0  # no negative pass outside the interval
        rows = [x[:, self.evaluated].reshape(b * e, 1, t)]
        sig = [sigma.repeat_interleave(e)]
        if g:
            rows.append(x[:, self.guided].reshape(b * g, 1, t))
            sig.append(sigma.repeat_interleave(g))
        cond = self._conditioning(b, x.device, negative=g > 0)
        amp = (torch.autocast(x.device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None
               else contextlib.nullcontext())
        with amp:
            d = self.model(torch.cat(rows), torch.cat(sig), cond).float()
        self.calls += 1
        self.rows += d.shape[0]
        self.samples += d.shape[0] * t
        d_pos = d[: b * e].reshape(b, e, t)
        out[:, self.evaluated] = d_pos
        if g:
            d_neg = d[b * e:].reshape(b, g, t)
            pos_of_guided = d_pos[:, [self.evaluated.index(i) for i in self.guided]]
            w = torch.where(inside.to(d.device)[:, None, None], self.weights.to(d.device)[None, :, None], 1.0)
            out[:, self.guided] = d_neg + w * (pos_of_guided - d_neg)
        return out
