"""MTT_musicnn (Pons & Serra 2019) re-implemented in torch, with weights converted from the TF checkpoint.

The original is the `musicnn` PyPI package (ISC licence, TensorFlow 1 graph code): a musically
motivated CNN trained on MagnaTagATune to predict 50 tags from 3 s of 16 kHz audio. We use it as
the embedding network for FAD (`gmsdi.eval.fad`). `scripts/convert_musicnn.py` exports its weights
to `assets/musicnn_mtt.npz` and checks this port against the TF model (see `docs/musicnn_port.md`).

Input pipeline, as in `musicnn.extractor.batch_data`:
  waveform at 16 kHz → librosa mel power spectrogram (n_fft 512, hop 256, 96 Slaney mels, centred
  frames, zero padding) → rounded to float16 (the training data were stored so) → log10(10⁴·S + 1)
  → non-overlapping patches of 187 frames (3 s) → network.

Network (`musicnn.models.build_musicnn`, 753 features per frame, 200-d penultimate layer):
  front-end: BN over the whole input; timbral convs (7×38, 7×67 over time×mel, 204 filters each)
  and temporal convs (128/64/32×1, 51 filters each), each conv → ReLU → BN → max over frequency;
  mid-end: three 1-D convs over time (kernel 7, 64 filters), conv → ReLU → BN, the last two residual;
  back-end: max and mean over time of the 753 frame features, BN → dense 200 → ReLU → BN
  ("penultimate") → dense 50 → sigmoid (the taggram).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16_000  # Hz, the rate musicnn was trained at
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, hop_length=256, n_fft=512) + 1
PATCH_SAMPLES = (PATCH_FRAMES - 1) * HOP_LENGTH  # the shortest waveform that yields one full patch
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default, not torch's 1e-5

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "musicnn_mtt.npz"

# The MagnaTagATune tags, in the order of the network's 50 outputs (musicnn.configuration.MTT_LABELS).
MTT_LABELS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)

# Feature names the network returns, as `musicnn.extractor` names them.
FEATURES: tuple[str, ...] = ("timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool", "max_pool", "penultimate")


def _bn(num_features: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(num_features, eps=BN_EPS)


class _FreqMaxBlock(nn.Module):
    """Conv over (time, mel) → ReLU → BN → max over mel: [B, 1, T', F] → [B, C, T]."""

    def __init__(self, filters: int, kernel: tuple[int, int], time_pad: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS)
        self.time_pad = time_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, *self.time_pad))
        return self.bn(F.relu(self.conv(x))).amax(dim=-1)


def _same_pad(kernel: int) -> tuple[int, int]:
    """TF 'SAME' padding for stride 1: the extra sample of an even kernel goes after."""
    return (kernel - 1) // 2, kernel // 2


class MusiCNN(nn.Module):
    """The MTT_musicnn network. `forward(logmel [B, T, 96]) -> dict` of the features in `FEATURES` + "taggram".

    Shapes, for B patches of T frames: timbral [B, T, 408], temporal [B, T, 153], cnn1..3 [B, T, 64],
    mean_pool / max_pool [B, 753], penultimate [B, 200], logits / taggram [B, 50].
    """

    def __init__(self, num_classes: int = 50, midend_filters: int = 64, backend_units: int = 200):
        super().__init__()
        self.input_bn = _bn(1)
        self.timbral = nn.ModuleList([
            _FreqMaxBlock(204, (7, int(0.4 * N_MELS)), (3, 3)),
            _FreqMaxBlock(204, (7, int(0.7 * N_MELS)), (3, 3)),
        ])
        self.temporal = nn.ModuleList([_FreqMaxBlock(51, (k, 1), _same_pad(k)) for k in (128, 64, 32)])
        frontend_channels = 2 * 204 + 3 * 51
        self.midend = nn.ModuleList([
            nn.Conv1d(frontend_channels, midend_filters, 7, padding=3),
            nn.Conv1d(midend_filters, midend_filters, 7, padding=3),
            nn.Conv1d(midend_filters, midend_filters, 7, padding=3),
        ])
        self.midend_bn = nn.ModuleList([_bn(midend_filters) for _ in range(3)])
        self.num_frame_features = frontend_channels + 3 * midend_filters
        self.pool_bn = _bn(2 * self.num_frame_features)
        self.dense = nn.Linear(2 * self.num_frame_features, backend_units)
        self.dense_bn = _bn(backend_units)
        self.classifier = nn.Linear(backend_units, num_classes)

    def forward(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        if logmel.ndim != 3 or logmel.shape[-1] != N_MELS:
            raise ValueError(f"expected a log-mel batch [B, T, {N_MELS}], got {tuple(logmel.shape)}")
        x = self.input_bn(logmel.reshape(-1, 1, logmel.shape[1] * N_MELS)).reshape(-1, 1, *logmel.shape[1:])
        timbral = [block(x) for block in self.timbral]  # [B, 204, T] each
        temporal = [block(x) for block in self.temporal]  # [B, 51, T] each
        front = torch.cat(timbral + temporal, dim=1)  # [B, 561, T]
        mid1 = self.midend_bn[0](F.relu(self.midend[0](front)))
        mid2 = self.midend_bn[1](F.relu(self.midend[1](mid1))) + mid1
        mid3 = self.midend_bn[2](F.relu(self.midend[2](mid2))) + mid2
        frames = torch.cat([front, mid1, mid2, mid3], dim=1)  # [B, 753, T]
        max_pool, mean_pool = frames.amax(dim=-1), frames.mean(dim=-1)
        # TF flattens [B, 753, 2] row-major: max and mean interleave feature by feature.
        pooled = torch.stack([max_pool, mean_pool], dim=-1).flatten(1)
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        logits = self.classifier(penultimate)
        return {
            "timbral": torch.cat(timbral, dim=1).transpose(1, 2),
            "temporal": torch.cat(temporal, dim=1).transpose(1, 2),
            "cnn1": mid1.transpose(1, 2),
            "cnn2": mid2.transpose(1, 2),
            "cnn3": mid3.transpose(1, 2),
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "penultimate": penultimate,
            "logits": logits,
            "taggram": torch.sigmoid(logits),
        }


class MelFrontEnd(nn.Module):
    """Waveform [B, N] at 16 kHz → musicnn's log-mel input [B, 1 + N // 256, 96].

    The Slaney-style mel filter bank is stored with the weights (exported from librosa), so the
    port needs no librosa. `float16=True` reproduces the float16 rounding of the original pipeline.
    """

    def __init__(self, float16: bool = True):
        super().__init__()
        self.register_buffer("mel_basis", torch.zeros(N_MELS, N_FFT // 2 + 1))
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.float16 = float16

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wav.float(), N_FFT, HOP_LENGTH, window=self.window, center=True, pad_mode="constant",
                          return_complex=True)
        mel = self.mel_basis @ spec.abs().square()  # [B, 96, frames], power
        if self.float16:
            mel = mel.half().float()
        return torch.log10(10_000 * mel + 1).transpose(1, 2)


class MusiCNNExtractor(nn.Module):
    """Front-end + network: waveform clips at 16 kHz → per-patch features, as `musicnn.extractor` does.

    Patches are 187 frames (3 s) with hop `hop_frames` (187: no overlap, musicnn's default). A clip
    shorter than one patch is repeated to fill it ("repeat-pad", the training config's rule).
    """

    def __init__(self, float16: bool = True):
        super().__init__()
        self.frontend = MelFrontEnd(float16=float16)
        self.net = MusiCNN()

    def patches(self, wav: torch.Tensor, hop_frames: int = PATCH_FRAMES) -> torch.Tensor:
        """One clip [N] (16 kHz) → log-mel patches [P, 187, 96]."""
        if wav.ndim != 1 or wav.numel() == 0:
            raise ValueError(f"expected one non-empty mono clip [N], got shape {tuple(wav.shape)}")
        if wav.numel() < PATCH_SAMPLES:
            wav = wav.repeat(-(-PATCH_SAMPLES // wav.numel()))[:PATCH_SAMPLES]
        logmel = self.frontend(wav[None])[0]
        return logmel.unfold(0, PATCH_FRAMES, hop_frames).transpose(1, 2)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, hop_frames: int = PATCH_FRAMES,
                batch_size: int = 64) -> dict[str, torch.Tensor]:
        """One clip [N] at 16 kHz → features of each of its P patches: mean_pool / max_pool [P, 753],
        penultimate [P, 200], logits / taggram [P, 50]."""
        patches = self.patches(wav, hop_frames)
        outs = [self.net(chunk) for chunk in patches.split(batch_size)]
        keys = ("mean_pool", "max_pool", "penultimate", "logits", "taggram")
        return {k: torch.cat([o[k] for o in outs]) for k in keys}


def load_musicnn(path: str | Path | None = None, device: torch.device | str = "cpu",
                 float16: bool = True) -> MusiCNNExtractor:
    """The torch MTT_musicnn with its converted weights (default `assets/musicnn_mtt.npz`), in eval mode."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"musicnn weights not found at {path}; they ship in the repository's assets/ "
                                "(regenerate them with scripts/convert_musicnn.py)")
    with np.load(path, allow_pickle=False) as npz:
        state = {k: torch.from_numpy(npz[k]) for k in npz.files if k != "labels"}
    model = MusiCNNExtractor(float16=float16)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # a training counter, unused
    if missing or unexpected:
        raise ValueError(f"{path} does not match the MTT_musicnn port: missing {missing}, unexpected {unexpected}")
    return model.eval().to(device)
