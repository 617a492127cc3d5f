"""gmsdi: Generalized Multi-Source Diffusion Inference for text-conditioned music (Postolache et al., ICASSP 2024)."""

__version__ = "0.1.0"
