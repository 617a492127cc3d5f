"""The model config, its presets, the network registry and the one factory `build_model`."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gmsdi.models.bandunet import BandUNet2d
from gmsdi.models.edm import EDMConfig, EDMDenoiser
from gmsdi.models.spectral import SpectralWiener
from gmsdi.models.unet import UNet1d, UNetConfig


def _wiener(config: UNetConfig, text_dim: int, sigma_data: float) -> nn.Module:
    # The linear floor reads the STFT of the U-Net config (hop = patch_size, n_fft); nothing else.
    return SpectralWiener(config.patch_size, config.n_fft, text_dim, sigma_data, config.in_channels)


# name -> constructor(config: UNetConfig, text_dim: int[, sigma_data: float]) -> network F(x_in, c_noise, cond);
# a constructor that takes `sigma_data` gets the EDM σ_d.
NETWORKS: dict[str, Callable[..., nn.Module]] = {"unet1d": UNet1d, "bandunet2d": BandUNet2d, "wiener": _wiener}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; travels inside every checkpoint.

    Attributes:
        network: a key of `NETWORKS`.
        unet: the network's hyperparameters.
        edm: preconditioning and training-σ parameters.
        text_encoder: the prompt encoder the model was trained with (a key of
            `gmsdi.text.TEXT_ENCODERS` or a local model directory).
        text_dim: D, the prompt encoder's width.
        sample_rate: Hz of the waveforms.
        segment_samples: training crop length in samples (a valid network input length).
        inference_window_samples: the window the pipeline samples in when none is asked for;
            0 = `segment_samples`. A network that is convolutional in time trains on short crops
            and generates longer windows.
    """

    network: str = "unet1d"
    unet: UNetConfig = field(default_factory=UNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    text_encoder: str = "minilm"
    text_dim: int = 384
    sample_rate: int = 16000
    segment_samples: int = 64000
    inference_window_samples: int = 0

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"unknown network {self.network!r}; valid names are {sorted(NETWORKS)}")
        m = self.unet.length_multiple
        if self.segment_samples <= 0 or self.segment_samples % m:
            raise ValueError(
                f"segment_samples={self.segment_samples} must be a positive multiple of {m} "
                f"(patch_size × 2^(levels-1)); e.g. {max(m, round(self.segment_samples / m) * m)}"
            )

        if self.inference_window_samples < 0 or self.inference_window_samples % m:
            raise ValueError(f"inference_window_samples={self.inference_window_samples} must be 0 or a positive "
                             f"multiple of {m}")

    @property
    def segment_seconds(self) -> float:
        return self.segment_samples / self.sample_rate

    @property
    def window_samples(self) -> int:
        """The default inference window in samples (`inference_window_samples`, else the training crop)."""
        return self.inference_window_samples or self.segment_samples

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError."""

        def build(kind: type, values: Mapping[str, Any]) -> Any:
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = set(values) - names
            if unknown:
                raise ValueError(f"unknown {kind.__name__} fields {sorted(unknown)}; valid: {sorted(names)}")
            return kind(**values)

        data = dict(data)
        if "unet" in data:
            data["unet"] = build(UNetConfig, data["unet"])
        if "edm" in data:
            data["edm"] = build(EDMConfig, data["edm"])
        return build(cls, data)


def _tiny() -> ModelConfig:
    # For tests: a few thousand parameters' worth of compute, any length multiple of 32 samples.
    return ModelConfig(
        unet=UNetConfig(
            patch_size=16,
            channels=(16, 32),
            num_blocks=(1, 1),
            emb_dim=32,
            fourier_dim=16,
            cross_attn_levels=(1,),
            attn_head_dim=16,
            norm_groups=8,
        ),
    )


def _default() -> ModelConfig:
    return ModelConfig()


def _spectral() -> ModelConfig:
    # The STFT front end (gmsdi.models.spectral) on 16 ms frames; wide levels for AMX bf16 tiles;
    # no self-attention, so the network is convolutional in time and 1 s crops generate any length.
    return ModelConfig(
        unet=UNetConfig(
            patch_size=256,
            frontend="stft",
            n_fft=1024,
            channels=(512, 512, 512),
            num_blocks=(1, 1, 1),
            emb_dim=256,
            cross_attn_levels=(1, 2),
            self_attn_bottleneck=False,
        ),
        # σ_d: the RMS of 512 training crops of 1.024 s was 0.096. ln σ ~ N(-2, 1.5²) puts 30 % of the
        # training mass above σ = 0.3 (3 σ_d), where the prompt decides what the output is.
        edm=EDMConfig(sigma_data=0.1, p_mean=-2.0, p_std=1.5),
        text_encoder="minilm-parts",
        segment_samples=16384,
        inference_window_samples=65536,
    )


def _bands() -> ModelConfig:
    # The frequency-local design (gmsdi.models.bandunet): 32 bands of 16 bins (250 Hz) × 16 ms frames,
    # a 2-D U-Net over (band, frame) in bf16 (channels-last at inference), cross-attention to the part tokens at the
    # two coarse levels and the bottleneck, FiLM from the pooled prompt everywhere. The STFT, σ_d,
    # training σ and prompt encoder are the `spectral` preset's.
    base = _spectral()
    return dataclasses.replace(
        base,
        network="bandunet2d",
        unet=UNetConfig(
            patch_size=256,
            frontend="stft",
            n_fft=1024,
            band_width=16,
            band_gain="mask",  # the gain masks the noisy waveform at every σ (train/RUNS.md, session 12)
            channels=(96, 192, 384),
            num_blocks=(1, 1, 1),
            emb_dim=256,
            cross_attn_levels=(1, 2),
            self_attn_bottleneck=False,
        ),
    )


def _logbands() -> ModelConfig:
    # `bands` with log-spaced bands (`bandunet.band_edges`): single 15.6 Hz bins up to ~400 Hz, then a semitone each,
    # 80 bands; narrower levels (64, 128, 256) so that a training step costs about what `bands`' does
    # (7.0 against 6.2 GFLOPs per 1.024 s crop). From scratch it reaches `bands`' validation loss at σ = 0.3 in a
    # quarter of the steps (train/RUNS.md, session 18).
    base = _bands()
    return dataclasses.replace(base, unet=dataclasses.replace(base.unet, bands_per_octave=12, channels=(64, 128, 256)))


def _logbands_emph() -> ModelConfig:
    # `logbands` diffusing the pre-emphasised waveform z[n] = x[n] − 0.9·x[n−1] (`EDMConfig.emphasis`), whose mean
    # spectrum over the training mixtures is flat to ±3 dB from 0 to 8 kHz, where the waveform's falls 27 dB: white
    # noise then hides every band at about the same σ (train/RUNS.md, session 24). σ_d: the RMS of z over 512
    # training crops of 1.024 s was 0.040 (0.095 for x); ln σ ~ N(-2.9, 1.5²) and σ_max = 0.5 keep `logbands`'
    # training σ and range relative to σ_d.
    base = _logbands()
    return dataclasses.replace(base, edm=EDMConfig(sigma_data=0.04, p_mean=-2.9, p_std=1.5, sigma_max=0.5,
                                                   emphasis=0.9))


def _floor() -> ModelConfig:
    # The Wiener floor on the spectral model's STFT, σ_d and prompt encoder (gmsdi.models.spectral).
    return dataclasses.replace(_spectral(), network="wiener")


MODEL_PRESETS: dict[str, Callable[[], ModelConfig]] = {"tiny": _tiny, "default": _default, "spectral": _spectral,
                                                      "bands": _bands, "logbands": _logbands,
                                                      "logbands-emph": _logbands_emph, "floor": _floor}


def model_config(preset: str = "default", **overrides: Any) -> ModelConfig:
    """The config of a named preset ("tiny", "default"), with top-level fields overridden."""
    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; valid names are {sorted(MODEL_PRESETS)}")
    return dataclasses.replace(MODEL_PRESETS[preset](), **overrides)


def build_model(config: ModelConfig | str = "default", seed: int | None = None) -> EDMDenoiser:
    """Builds the EDM denoiser described by `config` (or by a preset name).

    Args:
        config: a `ModelConfig` or a preset name.
        seed: seeds the weight initialisation without touching the global RNG; None uses it.
    """
    if isinstance(config, str):
        config = model_config(config)
    if config.network not in NETWORKS:
        raise ValueError(f"unknown network {config.network!r}; valid names are {sorted(NETWORKS)}")
    if config.unet.band_gain != "input" and config.network != "bandunet2d":
        raise ValueError(f"band_gain={config.unet.band_gain!r} is a setting of the 'bandunet2d' network, not of "
                         f"{config.network!r}; leave it at 'input'")
    u = config.unet
    if (u.filter_taps != 1 or u.phase_features or u.harmonic_features or u.band_attn_levels or u.bands_per_octave) \
            and config.network != "bandunet2d":
        raise ValueError(f"filter_taps, phase_features, harmonic_features, band_attn_levels and bands_per_octave are "
                         f"settings of the 'bandunet2d' network, not of {config.network!r}; leave them at 1, false, "
                         "[], [] and 0")
    if config.unet.refine_channels and config.network != "bandunet2d":
        raise ValueError(f"refine_channels is a setting of the 'bandunet2d' network, not of {config.network!r}; "
                         "leave it at 0")

    def make() -> EDMDenoiser:
        ctor = NETWORKS[config.network]
        extra = {"sigma_data": config.edm.sigma_data} if "sigma_data" in inspect.signature(ctor).parameters else {}
        net = ctor(config.unet, text_dim=config.text_dim, **extra)
        model = EDMDenoiser(net, config.edm)
        model.model_config = config
        return model

    if seed is None:
        return make()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()
