"""`Result`: what every task returns, and how it is written to disk."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gmsdi import audio as audio_io


@dataclass
class Result:
    """What every task returns.

    Attributes:
        stems: name -> float32 [T] at `sample_rate`, in the order asked for; levels as produced
            (not normalised per stem).
        mix: float32 [T]: the stems' sum (generation, accompaniment) or the input mix (separation,
            extraction, ensemble).
        sample_rate: Hz.
        settings: everything needed to reproduce the result (JSON-serialisable).
        mixture_chain: generation and accompaniment: the mixture chain y of Eq. (2) [T].
    """

    stems: dict[str, np.ndarray]
    mix: np.ndarray
    sample_rate: int
    settings: dict[str, Any] = field(default_factory=dict)
    mixture_chain: np.ndarray | None = None

    @property
    def seconds(self) -> float:
        return len(self.mix) / self.sample_rate

    def _signals(self, format: str) -> tuple[dict[str, np.ndarray], float]:
        """File name -> audio (stems, then "mix"), and the one gain applied for a clipping format."""
        names = _file_names(list(self.stems))
        signals = {f"stems/{n}": a for n, a in zip(names, self.stems.values(), strict=True)}
        signals["mix"] = self.mix
        gain = 1.0
        top = max(audio_io.peak(a) for a in signals.values())
        if format in audio_io.CLIPPING_FORMATS and top > 1.0:
            gain = 0.999 / top  # one gain for all files keeps the relative levels
        return {k: a * gain for k, a in signals.items()}, gain

    def _settings_json(self, gain: float) -> str:
        data = dict(self.settings)
        if gain != 1.0:
            data["saved_gain_db"] = round(20 * math.log10(gain), 3)
        return json.dumps(data, indent=2, default=str)

    def save(self, folder: str | os.PathLike[str], format: str = "wav") -> list[Path]:
        """Writes stems/<name>.<format>, mix.<format> and settings.json into `folder`.

        wav is 32-bit float and keeps levels as they are; for flac, mp3 and ogg, if any signal
        would clip, all files get one common gain (recorded as `saved_gain_db`).

        Returns:
            The paths written.
        """
        audio_io.check_format(format)
        folder = Path(folder)
        signals, gain = self._signals(format)
        paths = [audio_io.write_audio(folder / f"{name}.{format}", a, self.sample_rate, format)
                 for name, a in signals.items()]
        (folder / "settings.json").write_text(self._settings_json(gain))
        return [*paths, folder / "settings.json"]

    def save_zip(self, path: str | os.PathLike[str], format: str = "wav") -> Path:
        """One zip with the files of `save` (stems/, mix, settings.json)."""
        audio_io.check_format(format)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        signals, gain = self._signals(format)
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, a in signals.items():
                f = audio_io.write_audio(Path(tmp) / f"{name}.{format}", a, self.sample_rate, format)
                zf.write(f, f"{name}.{format}")
            zf.writestr("settings.json", self._settings_json(gain))
        return path

    def to_bytes(self, format: str = "wav") -> bytes:
        """The zip of `save_zip` in memory (for the app)."""
        with tempfile.TemporaryDirectory() as tmp:
            return self.save_zip(Path(tmp) / "result.zip", format).read_bytes()


def _file_names(names: Sequence[str]) -> list[str]:
    """Safe, unique file stems: "electric bass" -> "electric_bass"; repeats get _2, _3."""
    out: list[str] = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "stem"
        stem, i = base, 2
        while stem in out:
            stem, i = f"{base}_{i}", i + 1
        out.append(stem)
    return out


__all__ = ["Result"]
