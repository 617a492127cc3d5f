"""Audio in and out for the pipeline: decode, downmix, resample, validate, write.

Input conventions (documented once, used by the API, the CLI and the app):
- A source is a file path, a numpy array or torch tensor, or a tuple `(array, sample_rate)`.
- Arrays are [T] (mono), [C, T] or [T, C] with C ≤ 8 channels (the shorter axis is taken as
  channels). Integer arrays are scaled to full scale = 1 (int16 / 32768, ...).
- Stereo and multichannel audio is **downmixed to mono by averaging the channels**, since the
  model is mono; the result is resampled with soxr (high quality) to the model's rate.
- Files are decoded with soundfile (wav, flac, ogg, opus, mp3, ...), and anything else (m4a,
  aac, wma, ...) with pydub + ffmpeg.

Bad input raises `ValueError` with a sentence that says what to do (`FileNotFoundError` for a
missing file): empty, silent (peak below `SILENCE_PEAK`), longer than the caller's limit,
not decodable, or containing NaN or infinite samples.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

# Peak below which an input counts as silent: -80 dBFS.
SILENCE_PEAK = 1e-4
MAX_CHANNELS = 8

AudioSource = str | os.PathLike | np.ndarray | torch.Tensor | tuple

# format name -> (soundfile format, subtype). WAV is float so that levels above full scale survive.
AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "FLOAT"),
    "flac": ("FLAC", "PCM_24"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "VORBIS"),
}
# Formats that store integers or are lossy: levels above full scale would clip.
CLIPPING_FORMATS: frozenset[str] = frozenset({"flac", "mp3", "ogg"})


def check_format(name: str) -> str:
    """`name` if it is a key of `AUDIO_FORMATS`, else a ValueError listing them."""
    if name not in AUDIO_FORMATS:
        raise ValueError(f"unknown audio format {name!r}; valid names are {sorted(AUDIO_FORMATS)}")
    return name


def _pydub():
    with warnings.catch_warnings():  # pydub imports audioop, deprecated in 3.11-3.12 (audioop-lts from 3.13)
        warnings.simplefilter("ignore", DeprecationWarning)
        import pydub
    return pydub


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    AudioSegment = _pydub().AudioSegment  # noqa: N806

    seg = AudioSegment.from_file(str(path))
    data = np.asarray(seg.get_array_of_samples(), dtype=np.float32) / float(1 << (8 * seg.sample_width - 1))
    return data.reshape(-1, seg.channels).T, int(seg.frame_rate)


def read_file(path: str | os.PathLike[str], max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decodes an audio file to float32 [C, T] and its sample rate (Hz).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not decodable, or longer than `max_seconds`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {str(path)!r} does not exist; check the path")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        info = None
    if info is not None:
        if max_seconds is not None and info.frames > max_seconds * info.samplerate:
            raise ValueError(_too_long(path.name, info.frames / info.samplerate, max_seconds))
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
            return data.T, int(rate)
        except (sf.LibsndfileError, RuntimeError, OSError):
            pass
    try:
        return _decode_ffmpeg(path)
    except Exception as e:  # pydub raises several types, ffmpeg failures among them
        raise ValueError(
            f"cannot decode {str(path)!r} as audio ({type(e).__name__}); the file is corrupt or not audio - "
            "convert it to wav or flac and try again"
        ) from e


def _too_long(name: str, seconds: float, limit: float) -> str:
    return f"{name} is {seconds:.1f} s long, more than the limit of {limit:g} s; trim it and try again"


def to_mono(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Mono float32 [T] from [T], [C, T] or [T, C] (C ≤ 8): channels are averaged."""
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    if audio.ndim == 2:
        c, t = audio.shape
        if c <= MAX_CHANNELS and c <= t:
            return audio.mean(axis=0, dtype=np.float64).astype(np.float32)
        if t <= MAX_CHANNELS:
            return audio.mean(axis=1, dtype=np.float64).astype(np.float32)
    raise ValueError(
        f"{name} has shape {tuple(audio.shape)}; give mono [T] or multichannel [C, T] / [T, C] audio "
        f"with at most {MAX_CHANNELS} channels"
    )


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resamples [T] (or [T, C]) float audio with soxr; a no-op when the rates agree."""
    if from_rate == to_rate:
        return audio
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32)


def _as_float(array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return (array.astype(np.float64) / max(abs(info.min), info.max)).astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise ValueError(f"audio arrays must hold numbers, got dtype {array.dtype}")


def check_audio(audio: np.ndarray, sample_rate: int, name: str = "audio", max_seconds: float | None = None) -> None:
    """Raises ValueError if mono `audio` [T] is empty, not finite, silent or too long."""
    if audio.size == 0:
        raise ValueError(f"{name} is empty (0 samples); give at least a fraction of a second of audio")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"{name} contains NaN or infinite samples; clean or re-export the audio")
    if max_seconds is not None and audio.shape[-1] > max_seconds * sample_rate:
        raise ValueError(_too_long(name, audio.shape[-1] / sample_rate, max_seconds))
    peak = float(np.max(np.abs(audio)))
    if peak < SILENCE_PEAK:
        raise ValueError(
            f"{name} is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS, below "
            f"{20 * np.log10(SILENCE_PEAK):.0f} dBFS); give audio with some signal in it"
        )


def load_audio(
    source: AudioSource,
    sample_rate: int,
    input_rate: int | None = None,
    name: str = "audio",
    max_seconds: float | None = None,
) -> np.ndarray:
    """Any supported source as validated mono float32 [T] at `sample_rate` Hz.

    Args:
        source: a path, an array / tensor, or `(array, rate)`.
        sample_rate: the output rate (Hz), the model's.
        input_rate: the rate of an array source; None means it is already at `sample_rate`.
        name: how error messages call it ("mix", "locked stem 'bass'").
        max_seconds: refuse longer input (checked before resampling).
    """
    if isinstance(source, tuple):
        if len(source) != 2:
            raise ValueError(f"{name}: a tuple source must be (audio, sample_rate), got {len(source)} items")
        source, input_rate = source
    if isinstance(source, (str, os.PathLike)):
        data, rate = read_file(source, max_seconds)
    else:
        if isinstance(source, torch.Tensor):
            source = source.detach().cpu().numpy()
        if not isinstance(source, np.ndarray):
            raise ValueError(f"{name} must be a file path, a numpy array, a torch tensor or (array, rate); "
                             f"got {type(source).__name__}")
        data, rate = _as_float(source), int(input_rate or sample_rate)
    if rate <= 0:
        raise ValueError(f"{name}: the sample rate must be positive, got {rate}")
    mono = to_mono(np.asarray(data), name)
    check_audio(mono, rate, name, max_seconds)
    return resample(mono, rate, sample_rate)


def peak(audio: np.ndarray | torch.Tensor) -> float:
    """max |x| as a float."""
    return float(np.max(np.abs(np.asarray(audio)))) if np.asarray(audio).size else 0.0


def write_audio(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int, format: str = "wav") -> Path:
    """Writes mono float audio [T] as `format` (wav: 32-bit float; flac: 24-bit; mp3; ogg).

    Samples are written as given (no normalisation); wav keeps levels above full scale, the other
    formats clip there, so the caller scales everything together first (`Result.save` does).
    """
    fmt, subtype = AUDIO_FORMATS[check_format(format)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.asarray(audio, dtype=np.float32)
    try:
        sf.write(str(path), audio, sample_rate, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        if format != "mp3":
            raise
        AudioSegment = _pydub().AudioSegment  # noqa: N806 - libsndfile without mp3: encode with ffmpeg

        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        AudioSegment(pcm.tobytes(), frame_rate=sample_rate, sample_width=2, channels=1).export(str(path), format="mp3")
    return path
