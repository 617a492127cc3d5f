"""gmsdi: Generalized Multi-Source Diffusion Inference for text-conditioned music (Postolache et al., ICASSP 2024)."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`gmsdi.GMSDIPipeline`, `gmsdi.MSDMPipeline`, `gmsdi.Result`, `gmsdi.Settings`: the public API,
    imported on first use (so `import gmsdi` stays light)."""
    if name in ("GMSDIPipeline", "MSDMPipeline", "Result", "Settings"):
        from gmsdi import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'gmsdi' has no attribute {name!r}")
