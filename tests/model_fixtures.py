"""A tiny `bands` model config built in code, shared by the tests of `BandUNet2d` and of the scripts
that time it: 64 non-Nyquist bins of 125 Hz at 16 kHz in 8 bands of 1 kHz, two levels."""

from __future__ import annotations

import dataclasses

from gmsdi.models import ModelConfig, model_config

N_FFT, HOP, WIDTH = 128, 32, 8


def tiny_bands_config() -> ModelConfig:
    """The `bands` preset shrunk to run a training step in milliseconds (hash prompts, 1024-sample crops)."""
    base = model_config("bands")
    unet = dataclasses.replace(base.unet, patch_size=HOP, n_fft=N_FFT, band_width=WIDTH, channels=(16, 32),
                               num_blocks=(1, 1), emb_dim=32, cross_attn_levels=(1,), norm_groups=8,
                               attn_head_dim=16)
    return dataclasses.replace(base, unet=unet, text_encoder="hash", segment_samples=1024,
                               inference_window_samples=2048)
