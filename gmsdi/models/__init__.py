"""The diffusion model: EDM preconditioning around a text-conditioned waveform U-Net (METHOD.md §2)."""

from gmsdi.models.checkpoint import load_config, load_metadata, load_model, save_model
from gmsdi.models.edm import EDMConfig, EDMDenoiser, EDMScalings, sample_sigmas_lognormal
from gmsdi.models.factory import MODEL_PRESETS, NETWORKS, ModelConfig, build_model, model_config
from gmsdi.models.unet import UNet1d, UNetConfig

__all__ = [
    "MODEL_PRESETS",
    "NETWORKS",
    "EDMConfig",
    "EDMDenoiser",
    "EDMScalings",
    "ModelConfig",
    "UNet1d",
    "UNetConfig",
    "build_model",
    "load_config",
    "load_metadata",
    "load_model",
    "model_config",
    "sample_sigmas_lognormal",
    "save_model",
]
