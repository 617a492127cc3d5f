"""A text-conditioned time-domain U-Net sized for CPU training: waveform in, waveform out.

Layout ([B, 1, T] -> [B, 1, T]):

1. Patch embedding: a linear map turns T samples into T/P frames of C_0 channels (P samples
   per frame; with `patch_overlap` each frame sees 2P samples, which avoids seams at frame
   boundaries, a buzz at sample_rate/P Hz otherwise).
2. A 1-D U-Net over frames: per level, residual blocks (GroupNorm, SiLU, conv) whose norms are
   modulated (FiLM: scale, shift) by one conditioning vector; stride-2 downsampling between
   levels; skip connections added on the way up (cheaper than concatenation on a CPU).
3. Conditioning vector = MLP(Fourier features of c_noise) + Linear(pooled text embedding).
   Cross-attention over the text tokens at the coarse levels, with a learned null key/value
   that is always attended to, so the null prompt (all-False mask) is well defined.
   Optional self-attention at the bottleneck.
4. Unpatching: a linear map back to P samples per frame (2P overlap-added when
   `patch_overlap`), zero-initialised so that the untrained denoiser is D = c_skip·x.

The defaults (the `default` preset) were sized on a 2-core CPU: 4.8 M parameters, 1.14 GFLOPs
per forward pass on 4 s at 16 kHz, about 0.6-0.75 s per training step at batch 16 × 4 s
(`python -m gmsdi.models.profile`). Most compute sits at the coarse levels; convolutions
narrower than 64 channels run at a fraction of the CPU's speed, hence no narrower level.

The network receives c_in·x and c_noise from `EDMDenoiser`; it does no σ arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gmsdi.models.spectral import SpectralEmbed, SpectralUnembed
from gmsdi.text.embedding import TextEmbedding

FRONTENDS = ("patch", "stft")
BAND_GAINS = ("input", "mask")


@dataclass
class UNetConfig:
    """Hyperparameters of `UNet1d`.

    Attributes:
        in_channels: waveform channels (1 = mono).
        patch_size: P, samples per frame (the STFT hop with `frontend="stft"`).
        patch_overlap: frames see 2P samples and the output is overlap-added (else disjoint);
            the "patch" front end only.
        frontend: how frames are made from the waveform and turned back (`FRONTENDS`): "patch",
            a linear map of each frame's samples; "stft", every bin of an STFT frame in and a
            complex gain and residual per bin out (`gmsdi.models.spectral`).
        n_fft: the STFT window in samples (`frontend="stft"`).
        band_width: STFT bins per band of the band-split 2-D network (`gmsdi.models.bandunet`).
        bands_per_octave: 0 = that network's bands are uniform, `band_width` bins each; otherwise they are
            log-spaced, 1/`bands_per_octave` octave wide and at least one bin (`bandunet.band_edges`).
        band_gain: what the band-split network's complex gain M multiplies (`BAND_GAINS`): "input",
            the STFT of its scaled input c_in·x; "mask", the STFT of the noisy waveform x itself, so
            that M = −1 removes x at any σ (the gain is scaled by 1 + σ_d/σ; see `gmsdi.models.bandunet`).
        refine_channels: width of the band-split network's per-bin refiner (`BinRefiner`), a
            full-resolution level after its band head; 0 = none.
        refine_blocks: residual blocks of that refiner.
        filter_taps: frames the band-split network's gain reaches (odd): 1 is a mask (one complex gain per
            bin on the frame itself); more is a deep filter, Σ_j M_j·X[t + j] over the `filter_taps`
            frames centred on t, which can follow a partial's phase from frame to frame.
        phase_features: the band-split network's input also gets each bin's phase advance from the
            previous frame, X[t]·conj(X[t − 1]) compressed to |·|^¼ (steady for a held partial, random for noise).
        harmonic_features: ratios h (> 0, not 1): the band-split network's input at bin k also gets the log
            power near bin h·k, one feature per ratio (as the harmonic CQT of Bittner et al. 2017 stacks
            spectra at multiples of f_min), so a bin sees its harmonics' and sub-harmonics' evidence however
            many bands away they lie. () = none.
        channels: width per level, finest first; frames halve from one level to the next.
            channels[0] must be at least patch_size·in_channels, so that the patch embedding
            and the unpatching are full rank: noise outside their span could never be removed.
        num_blocks: residual blocks per level, on each of the down and up paths.
        kernel_size: conv kernel over frames (odd).
        emb_dim: width of the conditioning vector driving FiLM.
        fourier_dim: number of Fourier features of c_noise (even).
        cross_attn_levels: levels (0 = finest) with cross-attention over text tokens; the
            bottleneck always has it when any level does.
        self_attn_bottleneck: self-attention over frames at the bottleneck.
        band_attn_levels: levels (0 = finest) of the band-split network with self-attention over its bands
            within each frame, so that a band can read the bands its partials' harmonics fall in.
        attn_head_dim: channels per attention head.
        norm_groups: at most this many GroupNorm groups (the largest divisor of the width).
        dropout: dropout inside residual blocks.
    """

    in_channels: int = 1
    patch_size: int = 64
    patch_overlap: bool = True
    frontend: str = "patch"
    n_fft: int = 1024
    band_width: int = 16
    bands_per_octave: int = 0
    band_gain: str = "input"
    refine_channels: int = 0
    refine_blocks: int = 1
    filter_taps: int = 1
    phase_features: bool = False
    harmonic_features: tuple[float, ...] = ()
    channels: tuple[int, ...] = (64, 96, 192, 256)
    num_blocks: tuple[int, ...] = (1, 1, 1, 1)
    kernel_size: int = 3
    emb_dim: int = 256
    fourier_dim: int = 64
    cross_attn_levels: tuple[int, ...] = (3,)
    self_attn_bottleneck: bool = True
    band_attn_levels: tuple[int, ...] = ()
    attn_head_dim: int = 64
    norm_groups: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.num_blocks = tuple(int(n) for n in self.num_blocks)
        self.cross_attn_levels = tuple(int(i) for i in self.cross_attn_levels)
        self.band_attn_levels = tuple(int(i) for i in self.band_attn_levels)
        self.harmonic_features = tuple(float(h) for h in self.harmonic_features)
        if any(not 0 < h < 1e4 or h == 1 for h in self.harmonic_features) or \
                len(set(self.harmonic_features)) != len(self.harmonic_features):
            raise ValueError(f"harmonic_features must be distinct finite ratios above 0 other than 1 "
                             f"(e.g. [0.5, 2, 3]), got {list(self.harmonic_features)}")
        if not self.channels:
            raise ValueError("UNetConfig.channels needs at least one level")
        if self.frontend not in FRONTENDS:
            raise ValueError(f"unknown frontend {self.frontend!r}; valid names are {list(FRONTENDS)}")
        if self.frontend == "stft" and (self.n_fft % self.patch_size or self.n_fft < 2 * self.patch_size):
            raise ValueError(f"frontend='stft' needs n_fft ({self.n_fft}) to be a multiple of patch_size "
                             f"({self.patch_size}) and at least twice it")
        if len(self.num_blocks) != len(self.channels):
            raise ValueError(
                f"num_blocks {self.num_blocks} must give one count per level of channels {self.channels}"
            )
        if min(self.num_blocks) < 1:
            raise ValueError(f"every level needs at least one block, got num_blocks={self.num_blocks}")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.fourier_dim % 2:
            raise ValueError(f"fourier_dim must be even, got {self.fourier_dim}")
        if self.frontend == "patch" and self.patch_overlap and self.patch_size % 2:
            raise ValueError(f"patch_overlap needs an even patch_size, got {self.patch_size}")
        if self.band_gain not in BAND_GAINS:
            raise ValueError(f"unknown band_gain {self.band_gain!r}; valid names are {list(BAND_GAINS)}")
        if self.refine_channels < 0 or self.refine_blocks < 0:
            raise ValueError(f"refine_channels ({self.refine_channels}) and refine_blocks ({self.refine_blocks}) "
                             "cannot be negative; refine_channels=0 means no refiner")
        if self.filter_taps < 1 or self.filter_taps % 2 != 1:
            raise ValueError(f"filter_taps must be odd and positive (1 = a mask), got {self.filter_taps}")
        if self.band_width < 1:
            raise ValueError(f"band_width must be positive, got {self.band_width}")
        if self.bands_per_octave < 0:
            raise ValueError(f"bands_per_octave must be 0 (uniform bands) or positive, got {self.bands_per_octave}")
        if self.frontend == "patch" and self.channels[0] < self.patch_size * self.in_channels:
            raise ValueError(
                f"channels[0]={self.channels[0]} is below patch_size·in_channels="
                f"{self.patch_size * self.in_channels}: the output could not span every waveform of a "
                "frame, so the denoiser could not remove all noise; widen channels[0] or shrink patch_size"
            )
        for name in ("cross_attn_levels", "band_attn_levels"):
            bad = [i for i in getattr(self, name) if not 0 <= i < len(self.channels)]
            if bad:
                raise ValueError(f"{name} {bad} are not levels 0..{len(self.channels) - 1}")

    @property
    def levels(self) -> int:
        return len(self.channels)

    @property
    def length_multiple(self) -> int:
        """Input lengths must be multiples of this: P·2^(levels-1) samples."""
        return self.patch_size * 2 ** (self.levels - 1)


def resolve_condition(cond: Any, batch: int, text_dim: int, device: torch.device) -> TextEmbedding:
    """A network's `cond` argument as a `TextEmbedding` of `batch` prompts of width `text_dim` on
    `device`: None is the null prompt; a batch or width that does not match raises ValueError."""
    if cond is None:
        return TextEmbedding.null(batch, text_dim, device=device)
    cond = TextEmbedding.from_any(cond)
    if cond.batch_size != batch or cond.dim != text_dim:
        raise ValueError(
            f"conditioning has batch {cond.batch_size} and width {cond.dim}; the network needs "
            f"batch {batch} (as x) and width {text_dim}"
        )
    return cond.to(device)


def _groups(channels: int, max_groups: int) -> int:
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class FourierFeatures(nn.Module):
    """[B] scalars -> [B, dim] cos/sin features at fixed log-spaced frequencies.

    Frequencies span 1/16 .. 16 cycles per unit of c_noise = ln(σ)/4, which covers
    σ from 1e-4 to 1 (c_noise in [-2.3, 0]) with periods from longer than the range down to
    σ ratios of about 1.3.
    """

    def __init__(self, dim: int, min_freq: float = 1 / 16, max_freq: float = 16.0) -> None:
        super().__init__()
        freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), dim // 2))
        self.register_buffer("freqs", 2 * math.pi * freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t.float()[:, None] * self.freqs
        return torch.cat([arg.cos(), arg.sin()], dim=-1)


class PatchEmbed(nn.Module):
    """Waveform -> frames: [B, C, T] -> [B, C_0, T/P], each frame a linear map of its samples.

    With `overlap` frame n sees samples [nP - P/2, nP + 3P/2) (zero-padded at the ends), else
    [nP, (n+1)P). A reshape and one matmul: much faster on a CPU than a strided conv with one
    input channel.
    """

    def __init__(self, in_channels: int, out_channels: int, patch_size: int, overlap: bool) -> None:
        super().__init__()
        self.patch_size, self.overlap = patch_size, overlap
        self.window = 2 * patch_size if overlap else patch_size
        self.proj = nn.Linear(in_channels * self.window, out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Returns the frames and no context for `Unpatch` (the front-end interface of `SpectralEmbed`)."""
        p = self.patch_size
        if self.overlap:
            x = F.pad(x, (p // 2, p // 2))
        frames = x.unfold(-1, self.window, p)  # [B, C, N, window]
        b, c, n, k = frames.shape
        return self.proj(frames.permute(0, 2, 1, 3).reshape(b, n, c * k)).transpose(1, 2), None


class Unpatch(nn.Module):
    """Frames -> waveform: [B, C_0, N] -> [B, C, N·P], the transpose of `PatchEmbed`'s framing.

    Each frame emits `window` samples per channel; with `overlap` the halves of neighbouring
    frames are added (overlap-add), so no sample depends on one frame alone and there is no
    seam at frame boundaries. Zero-initialised: the untrained network outputs zeros.
    """

    def __init__(self, in_channels: int, out_channels: int, patch_size: int, overlap: bool) -> None:
        super().__init__()
        self.patch_size, self.overlap, self.out_channels = patch_size, overlap, out_channels
        self.window = 2 * patch_size if overlap else patch_size
        self.proj = _zero(nn.Linear(in_channels, out_channels * self.window))

    def forward(self, h: torch.Tensor, context: None = None) -> torch.Tensor:
        p, c = self.patch_size, self.out_channels
        b, _, n = h.shape
        y = self.proj(h.transpose(1, 2)).reshape(b, n, c, self.window).permute(0, 2, 1, 3)  # [B, C, N, w]
        if not self.overlap:
            return y.reshape(b, c, n * p)
        out = F.pad(y[..., :p], (0, 0, 0, 1)) + F.pad(y[..., p:], (0, 0, 1, 0))  # [B, C, N+1, P]
        return out.reshape(b, c, (n + 1) * p)[..., p // 2 : p // 2 + n * p]


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, FiLM from the conditioning vector, GroupNorm-SiLU-conv, residual.

    Shapes: x [B, C_in, N], emb [B, E] -> [B, C_out, N].
    """

    def __init__(
        self, c_in: int, c_out: int, emb_dim: int, kernel_size: int, max_groups: int, dropout: float
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.norm1 = nn.GroupNorm(_groups(c_in, max_groups), c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, padding=pad)
        self.film = _zero(nn.Linear(emb_dim, 2 * c_out))
        self.norm2 = nn.GroupNorm(_groups(c_out, max_groups), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, padding=pad)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class CrossAttention(nn.Module):
    """Frames attend to text tokens plus one learned null key/value (always present).

    Shapes: x [B, C, N], tokens [B, L, D], mask [B, L] bool -> [B, C, N]. With an all-False
    mask the frames attend to the null token only, so the null prompt gives a finite,
    learned output.
    """

    def __init__(self, channels: int, text_dim: int, head_dim: int, max_groups: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels, max_groups), channels)
        # Linear layers on [B, N, C] rather than 1x1 convs: faster backward passes on a CPU.
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(text_dim, 2 * channels)
        self.null_kv = nn.Parameter(torch.randn(2, channels) * 0.02)
        self.out = _zero(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        h = self.heads
        q = self.q(self.norm(x).transpose(1, 2)).reshape(b, n, h, c // h).transpose(1, 2)  # [B, H, N, c/h]
        k, v = self.kv(tokens).chunk(2, dim=-1)  # [B, L, C] each
        null_k, null_v = self.null_kv.to(k.dtype)[:, None, None, :].expand(2, b, 1, c)
        k = torch.cat([null_k, k], dim=1).reshape(b, -1, h, c // h).transpose(1, 2)  # [B, H, L+1, c/h]
        v = torch.cat([null_v, v], dim=1).reshape(b, -1, h, c // h).transpose(1, 2)
        keep = torch.cat([mask.new_ones(b, 1), mask], dim=1)[:, None, None, :]  # [B, 1, 1, L+1]
        # Written out rather than F.scaled_dot_product_attention: with a handful of keys the scores
        # are [B, H, N, L+1], and CPU flash attention's backward took 3-6x longer than these matmuls.
        scores = torch.matmul(q, k.transpose(-1, -2)).float() * (c // h) ** -0.5  # [B, H, N, L+1]
        probs = scores.masked_fill(~keep, float("-inf")).softmax(dim=-1).to(v.dtype)
        a = torch.matmul(probs, v)  # [B, H, N, c/h]
        return x + self.out(a.transpose(1, 2).reshape(b, n, c)).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention over frames. Shapes: [B, C, N] -> [B, C, N]."""

    def __init__(self, channels: int, head_dim: int, max_groups: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels, max_groups), channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = _zero(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        h = self.heads
        qkv = self.qkv(self.norm(x).transpose(1, 2))  # [B, N, 3C]
        q, k, v = qkv.reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, N, c/h]
        a = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(a.transpose(1, 2).reshape(b, n, c)).transpose(1, 2)


class _Level(nn.Module):
    def __init__(self, blocks: list[ResBlock], attn: CrossAttention | None, resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attn = attn
        self.resample = resample


class UNet1d(nn.Module):
    """The text-conditioned waveform U-Net (see the module docstring).

    Args:
        config: hyperparameters.
        text_dim: D of the prompt encoder's tokens and pooled vector.

    Call: `net(x_in [B, C, T], c_noise [B], cond) -> [B, C, T]`, where `cond` is a
    `TextEmbedding` (or a mapping with tokens/mask/pooled), or None for the null prompt.
    T must be a multiple of `config.length_multiple`.
    """

    def __init__(self, config: UNetConfig | None = None, text_dim: int = 384) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else UNetConfig()
        self.text_dim = text_dim
        p, chans, g = cfg.patch_size, cfg.channels, cfg.norm_groups
        # The front end: waveform -> (frames, context); `unpatch` (built last) turns (frames, context) back.
        if cfg.frontend == "stft":
            self.patch_embed: nn.Module = SpectralEmbed(cfg.in_channels, chans[0], p, cfg.n_fft)
        else:
            self.patch_embed = PatchEmbed(cfg.in_channels, chans[0], p, cfg.patch_overlap)

        self.fourier = FourierFeatures(cfg.fourier_dim)
        self.sigma_mlp = nn.Sequential(
            nn.Linear(cfg.fourier_dim, cfg.emb_dim), nn.SiLU(), nn.Linear(cfg.emb_dim, cfg.emb_dim)
        )
        self.text_pool_proj = nn.Linear(text_dim, cfg.emb_dim)
        self.text_norm = nn.LayerNorm(text_dim)

        def block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, cfg.emb_dim, cfg.kernel_size, g, cfg.dropout)

        def cross(c: int, level: int) -> CrossAttention | None:
            if level not in cfg.cross_attn_levels:
                return None
            return CrossAttention(c, text_dim, cfg.attn_head_dim, g)

        last = cfg.levels - 1
        self.down = nn.ModuleList()
        for i, c in enumerate(chans):
            blocks = [block(c, c) for _ in range(cfg.num_blocks[i])]
            resample = nn.Conv1d(c, chans[i + 1], 2, stride=2) if i < last else None
            self.down.append(_Level(blocks, cross(c, i), resample))

        c_mid = chans[-1]
        self.mid1 = block(c_mid, c_mid)
        self.mid_self = SelfAttention(c_mid, cfg.attn_head_dim, g) if cfg.self_attn_bottleneck else None
        self.mid_cross = (
            CrossAttention(c_mid, text_dim, cfg.attn_head_dim, g) if cfg.cross_attn_levels else None
        )
        self.mid2 = block(c_mid, c_mid)

        # up[i] serves level i; its `resample` brings level i+1 up to level i before the skip.
        self.up = nn.ModuleList()
        for i, c in enumerate(chans):
            blocks = [block(c, c) for _ in range(cfg.num_blocks[i])]
            resample = nn.ConvTranspose1d(chans[i + 1], c, 2, stride=2) if i < last else None
            self.up.append(_Level(blocks, cross(c, i), resample))

        self.out_norm = nn.GroupNorm(_groups(chans[0], g), chans[0])
        if cfg.frontend == "stft":
            self.unpatch: nn.Module = SpectralUnembed(chans[0], cfg.in_channels, self.patch_embed.stft)
        else:
            self.unpatch = Unpatch(chans[0], cfg.in_channels, p, cfg.patch_overlap)

    def check_length(self, length: int) -> None:
        """Raises ValueError unless `length` samples fit the patching and downsampling."""
        m = self.config.length_multiple
        if length <= 0 or length % m:
            up = max(m, -(-length // m) * m)
            raise ValueError(
                f"input length {length} samples is not a multiple of {m} (patch_size "
                f"{self.config.patch_size} × 2^{self.config.levels - 1} downsamplings); pad or crop it, "
                f"e.g. pad to {up} samples"
            )

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """F(x_in, c_noise, cond).

        Args:
            x: [B, C, T] preconditioned waveforms (c_in·x).
            c_noise: [B] noise-level input (ln σ / 4).
            cond: `TextEmbedding` with B prompts, a mapping with the same fields, or None.

        Returns:
            [B, C, T] network output (EDMDenoiser scales it by c_out).
        """
        if x.ndim != 3 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected x of shape [B, {self.config.in_channels}, T], got {tuple(x.shape)}")
        b = x.shape[0]
        self.check_length(x.shape[-1])
        if c_noise.shape != (b,):
            raise ValueError(f"c_noise must have shape [{b}], got {tuple(c_noise.shape)}")
        text = resolve_condition(cond, b, self.text_dim, x.device)
        dtype = self.patch_embed.proj.weight.dtype
        emb = self.sigma_mlp(self.fourier(c_noise).to(dtype)) + self.text_pool_proj(text.pooled.to(dtype))
        emb = F.silu(emb)
        tokens, mask = self.text_norm(text.tokens.to(dtype)), text.mask

        h, context = self.patch_embed(x)  # context: the input's STFT for the "stft" front end
        skips = []
        for level in self.down:
            for blk in level.blocks:
                h = blk(h, emb)
            if level.attn is not None:
                h = level.attn(h, tokens, mask)
            skips.append(h)
            if level.resample is not None:
                h = level.resample(h)

        h = self.mid1(h, emb)
        if self.mid_self is not None:
            h = self.mid_self(h)
        if self.mid_cross is not None:
            h = self.mid_cross(h, tokens, mask)
        h = self.mid2(h, emb)

        for i in reversed(range(len(self.up))):
            level = self.up[i]
            if level.resample is not None:
                h = level.resample(h)
            h = h + skips[i]
            for blk in level.blocks:
                h = blk(h, emb)
            if level.attn is not None:
                h = level.attn(h, tokens, mask)

        return self.unpatch(F.silu(self.out_norm(h)), context)
