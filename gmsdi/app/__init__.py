"""The browser app (Gradio): `build_ui(pipeline) -> gr.Blocks` over the public pipeline API.

    from gmsdi.app import build_ui, launch_options, tiny_pipeline
    demo = build_ui(tiny_pipeline())
    demo.launch(**launch_options())

`app.py` at the repository root is the command line (and the Hugging Face Spaces entry point).
"""

from __future__ import annotations

from gmsdi.app.handlers import AppConfig, AppTasks
from gmsdi.app.ui import API_SNIPPET, build_ui, launch_options


def tiny_pipeline(device: str | None = "cpu", seed: int = 0):
    """A tiny untrained pipeline built in code (no checkpoint, no files): for demos and tests.

    It makes noise; the UI labels it as untrained (its `checkpoint` is None).
    """
    from gmsdi.models import build_model, model_config
    from gmsdi.pipeline import GMSDIPipeline
    from gmsdi.text import HashTextEncoder

    model = build_model(model_config("tiny", text_encoder="hash"), seed=seed).eval()
    return GMSDIPipeline(model, HashTextEncoder(), device=device)


def tiny_config(**overrides) -> AppConfig:
    """App defaults that suit the tiny model on a CPU: short audio, few steps."""
    # separation: 16 Euler steps, the fewest (with margin) where MSDM's Dirac form converges for four stems
    return AppConfig(**{"seconds": 2.0, "generate_steps": 8, "separate_steps": 16, **overrides})


__all__ = ["API_SNIPPET", "AppConfig", "AppTasks", "build_ui", "launch_options", "tiny_config", "tiny_pipeline"]
