"""A small contrastive text–audio encoder `E_contr` (CLAP-style, METHOD.md §2), trained here.

GMSDI's second setting trains on mixtures that have no tags: the model is conditioned on the
embedding of the mixture audio itself, `z = E_contr(y)`, and at inference on the text-branch
embedding of each source's prompt. The two branches map into one shared, L2-normalised space:

    audio  [B, T] at 16 kHz -> log-mel [B, M, F] -> 1D conv net over time -> MLP -> [B, D]
    prompt "piano, bass"     -> frozen MiniLM pooled vector [B, 384]     -> MLP -> [B, D]

trained with the symmetric InfoNCE loss (`contrastive_loss`) on SynthSlakh mixture crops against
their tag prompts (`train/train_contrastive.py`). LAION-CLAP cannot run here (its weights and
text model are downloads, it needs torchvision), so this small encoder stands in for it; users
with LAION-CLAP files can use `gmsdi.text.clap.LaionClapEncoder` through the same interface.

Both branches hand the network a `TextEmbedding` of one token: tokens [B, 1, D] = pooled [B, D].
The empty prompt "" stays the null embedding of classifier-free guidance.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gmsdi.text.base import CachedPromptEncoder, check_prompt_list
from gmsdi.text.embedding import TextEmbedding

BUNDLED_CONTRASTIVE = Path(__file__).resolve().parents[2] / "assets" / "contrastive-synthslakh.safetensors"
CONFIG_KEY = "gmsdi_contrastive_config"
FORMAT_KEY = "gmsdi_format"
FORMAT = "gmsdi.ContrastiveEncoder/1"


@dataclass
class ContrastiveConfig:
    """The encoder's shape; stored in its checkpoint.

    Attributes:
        sample_rate: audio rate the audio branch expects (Hz); other rates are resampled.
        n_fft, hop: STFT size and hop (samples); Hann window.
        n_mels, f_min, f_max: the mel filter bank (Slaney scale and area normalisation).
        widths: channels of the residual conv blocks; each halves the frame rate.
        dim: D, the width of the shared embedding space.
        hidden: width of the two projection MLPs.
        text_encoder: the frozen base prompt encoder ("minilm"; "hash" in tests).
        text_dim: its pooled width.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 8000.0
    widths: tuple[int, ...] = (128, 192, 256, 256)
    dim: int = 256
    hidden: int = 512
    text_encoder: str = "minilm"
    text_dim: int = 384

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContrastiveConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown contrastive encoder config fields {sorted(unknown)}")
        d = dict(d)
        if "widths" in d:
            d["widths"] = tuple(d["widths"])
        return cls(**d)


CONTRASTIVE_PRESETS: dict[str, ContrastiveConfig] = {
    "default": ContrastiveConfig(),
    "tiny": ContrastiveConfig(n_mels=32, widths=(32, 48), dim=32, hidden=64, text_encoder="hash", text_dim=64),
}


class LogMel(nn.Module):
    """Waveform [B, T] -> natural-log mel power spectrogram [B, n_mels, 1 + T // hop]."""

    def __init__(self, cfg: ContrastiveConfig) -> None:
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        fb = mel_filter_bank(num_frequency_bins=cfg.n_fft // 2 + 1, num_mel_filters=cfg.n_mels,
                             min_frequency=cfg.f_min, max_frequency=cfg.f_max, sampling_rate=cfg.sample_rate,
                             norm="slaney", mel_scale="slaney")  # [freq, mel]
        self.n_fft, self.hop = cfg.n_fft, cfg.hop
        self.register_buffer("mel_basis", torch.from_numpy(np.ascontiguousarray(fb.T)).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wav.float(), self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        mel = self.mel_basis @ spec.abs().square()
        return torch.log(mel + 1e-6)


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=2, dilation=2, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.skip = nn.Conv1d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.max_pool1d(F.gelu(h + self.skip(x)), 2, ceil_mode=True)


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


class AudioBranch(nn.Module):
    """Log-mel -> residual 1D convs over time (mels as channels) -> mean ‖ max pool -> MLP -> [B, D]."""

    def __init__(self, cfg: ContrastiveConfig) -> None:
        super().__init__()
        self.logmel = LogMel(cfg)
        self.norm = nn.BatchNorm1d(cfg.n_mels)
        widths = (cfg.widths[0], *cfg.widths)
        self.stem = nn.Conv1d(cfg.n_mels, widths[0], 3, padding=1)
        self.blocks = nn.Sequential(*[_ResBlock(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)])
        self.head = _mlp(2 * widths[-1], cfg.hidden, cfg.dim)

    def features(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel [B, M, F] -> unnormalised embedding [B, D]."""
        h = self.blocks(self.stem(self.norm(logmel)))
        return self.head(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.features(self.logmel(wav))


class ContrastiveEncoder(CachedPromptEncoder):
    """`E_contr`: an audio branch and a text branch (frozen base encoder + MLP) in one space.

    As a `PromptEncoder`, `encode(prompts)` gives the text branch (what inference uses);
    `encode_audio(wave)` gives the audio branch (what a no-tag training run conditions on).
    Build with `ContrastiveEncoder(cfg)` (random projections) or load with `from_pretrained`.

    Args:
        config: the shape (`ContrastiveConfig`).
        text_base: the frozen base prompt encoder; default `build_base_encoder(config.text_encoder)`.
        cache_size: LRU cache of encoded prompts (only valid while the weights are frozen).
    """

    def __init__(self, config: ContrastiveConfig | None = None, text_base: CachedPromptEncoder | None = None,
                 cache_size: int = 4096) -> None:
        super().__init__(cache_size=cache_size)
        from gmsdi.text.encoder import build_base_encoder

        self.config = cfg = config if config is not None else ContrastiveConfig()
        self.dim = cfg.dim
        self.sample_rate = cfg.sample_rate
        if text_base is None:
            extra = {"dim": cfg.text_dim} if cfg.text_encoder == "hash" else {}
            text_base = build_base_encoder(cfg.text_encoder, **extra)
        self.text_base = text_base
        if self.text_base.dim != cfg.text_dim:
            raise ValueError(f"the base text encoder gives {self.text_base.dim}-d vectors, the config "
                             f"expects {cfg.text_dim}")
        self.audio = AudioBranch(cfg)
        self.text_proj = _mlp(cfg.text_dim, cfg.hidden, cfg.dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        super().train(False)

    # The base class pins eval mode (a frozen encoder); this one is trained, so train() works.
    def train(self, mode: bool = True) -> ContrastiveEncoder:
        nn.Module.train(self, mode)
        self.text_base.train(False)
        if mode:
            self.clear_cache()
        return self

    # -- branches, with gradients (training) ---------------------------------------------------
    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        """B non-empty prompts -> L2-normalised text embeddings [B, D]."""
        prompts = check_prompt_list(prompts)
        if any(not p for p in prompts):
            raise ValueError("text_features needs non-empty prompts ('' is the null prompt of encode())")
        return self.project_text(self.text_base.encode(prompts, device=self.device).pooled)

    def project_text(self, pooled: torch.Tensor) -> torch.Tensor:
        """Base-encoder pooled vectors [B, text_dim] -> L2-normalised text embeddings [B, D]."""
        return F.normalize(self.text_proj(pooled.to(self.device)), dim=-1)

    def audio_features(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, T] or [B, 1, T] at `sample_rate` -> L2-normalised audio embeddings [B, D]."""
        return F.normalize(self.audio(_as_batch(wave).to(self.device)), dim=-1)

    def logmel_features(self, logmel: torch.Tensor) -> torch.Tensor:
        """Precomputed log-mels [B, M, F] (`audio.logmel`) -> L2-normalised audio embeddings [B, D]."""
        return F.normalize(self.audio.features(logmel.to(self.device)), dim=-1)

    # -- the PromptEncoder interface (inference) ----------------------------------------------
    def _encode_uncached(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        with torch.no_grad():
            emb = self.text_features(prompts).float().cpu()
        return [(e[None].clone(), e.clone()) for e in emb]

    @torch.no_grad()
    def encode_audio(self, wave: torch.Tensor, sample_rate: int | None = None,
                     device: torch.device | str | None = None) -> TextEmbedding:
        """Audio-branch conditioning z = E_contr(y) for B waveforms.

        Args:
            wave: [B, T] or [B, 1, T] float audio.
            sample_rate: its rate (Hz); default `self.sample_rate`. Other rates are resampled.
            device: where the result goes; default the encoder's device.

        Returns:
            `TextEmbedding` with tokens [B, 1, D], an all-True mask and pooled [B, D].
        """
        wave = _as_batch(wave)
        if sample_rate is not None and sample_rate != self.sample_rate:
            from gmsdi.audio import resample

            wave = torch.from_numpy(np.stack([resample(w.cpu().numpy(), sample_rate, self.sample_rate)
                                              for w in wave]))
        was_training = self.training
        self.audio.train(False)
        emb = self.audio_features(wave).float()
        self.audio.train(was_training)
        return _single_token(emb).to(device if device is not None else self.device)

    # -- checkpoints --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
        """Writes the trained parts (not the frozen base encoder) and the config to safetensors."""
        from gmsdi.checkpoint_io import write_safetensors

        state = {k: v for k, v in self.state_dict().items() if not k.startswith("text_base.")}
        meta = {**(metadata or {}), CONFIG_KEY: json.dumps(asdict(self.config)), FORMAT_KEY: FORMAT}
        return write_safetensors(path, state, meta)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, text_base: CachedPromptEncoder | None = None,
                        device: torch.device | str = "cpu") -> ContrastiveEncoder:
        """Loads a checkpoint written by `save` (None = the bundled `assets/contrastive-synthslakh.safetensors`)."""
        from gmsdi.checkpoint_io import read_safetensors

        path = Path(path) if path is not None else BUNDLED_CONTRASTIVE
        if not path.is_file():
            hint = (" (the bundled encoder: train it with `python train/train_contrastive.py --config "
                    "train/configs/contrastive.yaml`)" if path == BUNDLED_CONTRASTIVE else "")
            raise FileNotFoundError(f"no contrastive encoder checkpoint at {str(path)!r}{hint}")
        meta, state = read_safetensors(path)
        if meta.get(FORMAT_KEY) != FORMAT:
            raise ValueError(f"{str(path)!r} is not a gmsdi contrastive encoder (format "
                             f"{meta.get(FORMAT_KEY)!r}, expected {FORMAT!r})")
        enc = cls(ContrastiveConfig.from_dict(json.loads(meta[CONFIG_KEY])), text_base=text_base)
        missing, unexpected = enc.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("text_base.")]
        if missing or unexpected:
            raise ValueError(f"the weights in {str(path)!r} do not fit its config: missing {missing}, "
                             f"unexpected {unexpected}")
        enc.source_path = str(path)
        return enc.to(device).train(False)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, sample_rate={self.sample_rate}"


def _as_batch(wave: torch.Tensor) -> torch.Tensor:
    if wave.ndim == 3 and wave.shape[1] == 1:
        wave = wave[:, 0]
    if wave.ndim != 2:
        raise ValueError(f"expected audio [B, T] or [B, 1, T], got {tuple(wave.shape)}")
    return wave


def _single_token(emb: torch.Tensor) -> TextEmbedding:
    return TextEmbedding(tokens=emb[:, None], mask=torch.ones(len(emb), 1, dtype=torch.bool, device=emb.device),
                         pooled=emb)


def contrastive_loss(audio: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                     groups: Sequence[Any] | None = None) -> torch.Tensor:
    """The symmetric InfoNCE loss of CLIP/CLAP over a batch of pairs.

    Args:
        audio, text: L2-normalised embeddings [B, D]; row i of each is a pair.
        logit_scale: log of the inverse temperature (a scalar parameter; clamped at log 100).
        groups: optional B hashable labels (e.g. the crop's instrument set). Pairs that share a
            label are positives of each other too (the target spreads evenly over them), so two
            crops with the same instruments are not pushed apart.

    Returns:
        The scalar loss: the mean of the audio→text and text→audio cross-entropies.
    """
    logits = logit_scale.clamp(max=float(np.log(100.0))).exp() * audio @ text.T
    b = len(audio)
    if groups is None:
        target = torch.eye(b, device=audio.device)
    else:
        codes = {g: i for i, g in enumerate(dict.fromkeys(groups))}
        ids = torch.tensor([codes[g] for g in groups], device=audio.device)
        target = (ids[:, None] == ids[None, :]).float()
    target = target / target.sum(dim=1, keepdim=True)
    loss_a = -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss_t = -(target.T * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (loss_a + loss_t) / 2


def build_contrastive(preset: str | ContrastiveConfig = "default", seed: int = 0,
                      **overrides: Any) -> ContrastiveEncoder:
    """A freshly initialised encoder from a preset name ("default", "tiny") or a config.

    Args:
        preset: a key of `CONTRASTIVE_PRESETS` or a `ContrastiveConfig`.
        seed: seeds the weight initialisation (the global RNG is left as it was).
        **overrides: config fields to change, e.g. dim=128.
    """
    if isinstance(preset, ContrastiveConfig):
        cfg = preset
    elif preset in CONTRASTIVE_PRESETS:
        cfg = CONTRASTIVE_PRESETS[preset]
    else:
        raise ValueError(f"unknown contrastive preset {preset!r}; valid: {sorted(CONTRASTIVE_PRESETS)}")
    cfg = ContrastiveConfig.from_dict({**asdict(cfg), **overrides})
    with torch.random.fork_rng(devices=[]):  # seeds the initialisation, leaves the global RNG alone
        torch.manual_seed(seed)
        return ContrastiveEncoder(cfg)


__all__ = ["BUNDLED_CONTRASTIVE", "CONTRASTIVE_PRESETS", "ContrastiveConfig", "ContrastiveEncoder",
           "build_contrastive", "contrastive_loss"]
