"""What the app's buttons do: check the inputs, call `GMSDIPipeline`, write the files the UI shows.

Plain functions and one class over a pipeline, with no Gradio layout in them, so that every task
can be called and tested without a browser. Every input a user can get wrong is checked here and
refused with `gr.Error` and a sentence that says what to do; the pipeline's own `ValueError`s
(already such sentences) are passed on the same way.

Outputs are files, never numpy arrays: Gradio peak-normalises arrays, which would hide the stems'
relative levels. Each run writes into its own folder:

    wav/stems/<stem>.wav, wav/mix.wav, wav/settings.json     (32-bit float: levels as produced)
    flac/stems/<stem>.flac, flac/mix.flac, flac/settings.json
    png/<n>.png                                               (spectrograms on one dB scale)
    gmsdi-<task>-seed<seed>.zip                               (wav/, flac/ and settings.json)
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from gmsdi import audio as audio_io
from gmsdi.fileio import REPO_ROOT
from gmsdi.inference.constraints import DIRAC_MODES
from gmsdi.pipeline import GENERATION, MAX_STEMS, SEPARATION, GMSDIPipeline, Result
from gmsdi.runtime import parse_threads, set_threads
from gmsdi.sampling import SAMPLERS, Cancelled

EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"

# File name endings the app accepts: what soundfile decodes, plus what ffmpeg reads through pydub.
# Anything else is refused before decoding, with this list in the message.
AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3",  # soundfile
    ".aif", ".aiff", ".m4a", ".aac", ".mp4", ".wma", ".webm", ".weba", ".mka", ".ac3", ".caf", ".au",  # ffmpeg
)

# Separation methods of the Separate tab (the pipeline's separate / extract / ensemble).
METHODS: tuple[str, ...] = ("separator", "extractor", "ensemble")
# The default: per stem the better of separator and extractor on the validation split (assets/ensemble.json).
# It costs an extraction for each stem that chose the extractor; its gain over the separator is in docs/RESULTS.md.
DEFAULT_METHOD = "ensemble"

# Named prompt sets for the Generate tab; the first is the default (SynthSlakh's four classes).
PROMPT_SETS: dict[str, list[str]] = {
    "bass, drums, guitar, piano": ["bass", "drums", "guitar", "piano"],
    "bass, drums, piano": ["bass", "drums", "piano"],
    "bass, drums": ["bass", "drums"],
    "bass, drums, synth lead": ["bass", "drums", "synth lead"],
    "piano, strings": ["piano", "strings"],
    "finger electric bass, jazz electric guitar, acoustic grand piano": [
        "finger electric bass", "jazz electric guitar", "acoustic grand piano"],
}
DEFAULT_PROMPT_SET = next(iter(PROMPT_SETS))

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class AppConfig:
    """Limits and defaults of one app.

    Attributes:
        max_seconds: longest audio accepted or generated (s); uploads beyond it are refused.
        max_stems: most stem slots in the UI (at most the pipeline's `MAX_STEMS`).
        max_steps: most sampler steps a request may ask for.
        max_file_size: largest upload, in Gradio's notation ("50mb"); enforced by `launch`.
        concurrency: model runs at once (all tasks share one limit: memory and cores).
        queue_size: requests that may wait; more are turned away with a "queue full" message.
        seconds, generate_steps, separate_steps, guidance: the UI's starting values.
        keep_seconds: run folders older than this are deleted when a new run starts.
        threads: torch's CPU threads per run; None decides at each run (`gmsdi.runtime.auto_threads`:
            the cores other processes leave free).
    """

    max_seconds: float = 30.0
    max_stems: int = MAX_STEMS
    max_steps: int = 200
    max_file_size: str = "50mb"
    concurrency: int = 1
    queue_size: int = 16
    seconds: float = 4.0
    generate_steps: int = GENERATION.steps
    separate_steps: int = SEPARATION.steps
    generate_guidance: float = GENERATION.guidance  # generation and accompaniment
    separate_guidance: float = SEPARATION.guidance
    keep_seconds: float = 3600.0
    threads: int | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "threads", parse_threads(self.threads))  # "auto" -> None
        if not 1 <= self.max_stems <= MAX_STEMS:
            raise ValueError(f"max_stems must be in 1..{MAX_STEMS}, got {self.max_stems}")
        if not 0 < self.seconds <= self.max_seconds:
            raise ValueError(f"seconds must be in (0, max_seconds={self.max_seconds}], got {self.seconds}")


# -- parsing and checking -------------------------------------------------------------------------
def app_error(message: str, **kwargs: Any) -> gr.Error:
    """`gr.Error` for a user's mistake: shown in the UI, not logged as a server fault."""
    return gr.Error(message, print_exception=False, **kwargs)


def _sentence(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def user_error(e: BaseException) -> gr.Error:
    """A pipeline / audio `ValueError` (a what-to-do sentence) as the `gr.Error` the UI shows."""
    return app_error(_sentence(e))


def split_prompts(text: str | Sequence[str] | None) -> list[str]:
    """Prompts from "bass, drums" or one per line (or a list); empty entries are dropped."""
    if text is None:
        return []
    if isinstance(text, str):
        text = text.replace("\n", ",").split(",")
    return [p.strip() for p in text if isinstance(p, str) and p.strip()]


def split_negatives(text: str | None, n: int) -> list[str | None] | None:
    """Negative prompts, one per line; an empty line or "-" keeps the default (the other stems).

    A negative prompt may itself hold commas ("drums, piano"), hence lines, not commas.
    """
    if text is None or not text.strip():
        return None
    lines = [line.strip() for line in text.split("\n")]
    if len(lines) == n + 1 and not lines[-1]:
        lines = lines[:-1]  # a final newline
    if len(lines) != n:
        raise app_error(f"Give one negative prompt per line for each of the {n} stems ({len(lines)} lines given); "
                        "leave a line empty or write '-' to keep the default (the other stems).")
    return [None if line in ("", "-") else line for line in lines]


def parse_seed(value: Any) -> int:
    """A seed from the UI or the API; empty draws one (31 bits, so a browser shows it exactly)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return secrets.randbits(31)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise app_error(f"The seed must be a whole number such as 42, or empty for a random one; got {value!r}.") \
            from None
    if not math.isfinite(number) or number != int(number) or number < 0:
        raise app_error(f"The seed must be a whole number >= 0, or empty for a random one; got {value!r}.")
    return int(number)


def parse_gamma(value: Any, name: str) -> float | None:
    """γ from a field: empty (or 0) = the default √(G+1); "inf" = no coupling on that side."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise app_error(f"{name} must be a positive number or 'inf', or empty for the default √(G+1); "
                        f"got {value!r}.") from None
    if number == 0:
        return None
    if not number > 0:
        raise app_error(f"{name} must be positive (or empty for the default √(G+1)); got {value!r}.")
    return number


def _int_steps(value: Any, limit: int) -> int:
    try:
        steps = float(value)
    except (TypeError, ValueError):
        raise app_error(f"Steps must be a whole number from 1 to {limit}; got {value!r}.") from None
    if not (math.isfinite(steps) and steps == int(steps) and 1 <= steps <= limit):
        raise app_error(f"Steps must be a whole number from 1 to {limit}; got {value!r}.")
    return int(steps)


COUPLING_FIELD_MAX = 1000.0  # σ; no schedule starts above it, so this value unties the stems at every step


def _float(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise app_error(f"{name} must be a number from {low:g} to {high:g}; got {value!r}.") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise app_error(f"{name} must be a number from {low:g} to {high:g}; got {value!r}.")
    return number


def _number(value: Any, name: str) -> float:
    """A number from a field; its range is checked once, by the pipeline's `Settings`."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise app_error(f"{name} must be a number; got {value!r}.") from None


def file_path(upload: Any) -> str | None:
    """The server path of an upload (Gradio gives a str, a FileData or a dict with "path")."""
    if upload is None:
        return None
    if isinstance(upload, (str, os.PathLike)):
        return str(upload)
    path = upload.get("path") if isinstance(upload, dict) else getattr(upload, "path", None)
    return str(path) if path else None


def check_upload(upload: Any, name: str, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Decodes an uploaded file to validated mono float32 [T] at `sample_rate` Hz.

    Refuses, with a what-to-do sentence: no file, a file type that is not audio, a file that
    does not decode (corrupt), silence, NaN, and audio longer than `max_seconds`.
    """
    path = file_path(upload)
    if path is None:
        raise app_error(f"Upload the {name} first (wav, flac, ogg or mp3).")
    suffix = Path(path).suffix.lower()
    if suffix not in AUDIO_EXTENSIONS:
        raise app_error(f"{Path(path).name}: {suffix or 'files without an extension'} is not a supported audio "
                        f"format; upload one of {', '.join(e.lstrip('.') for e in AUDIO_EXTENSIONS)} "
                        "(wav, flac, ogg or mp3 are safest).")
    try:
        return audio_io.load_audio(path, sample_rate, name=f"the {name} ({Path(path).name})",
                                   max_seconds=max_seconds)
    except (ValueError, FileNotFoundError) as e:
        # The user knows the file by its name; the server's upload path means nothing to them.
        name = Path(path).name
        message = str(e).replace(path, name)
        raise app_error(_sentence(f"the file {message}" if message.startswith(name) else message)) from None


# -- output files ----------------------------------------------------------------------------------
SPECTROGRAM_FLOOR_DB = -80.0


def spectrogram_png(audio: np.ndarray, sample_rate: int, path: Path, rows: int = 128, width: int = 800) -> Path:
    """A compact spectrogram picture of mono `audio` [T]: [rows, width] pixels, 0 Hz at the bottom.

    Every picture uses one colour scale (`SPECTROGRAM_FLOOR_DB` .. 0 dBFS, magma), the one of
    `gmsdi.viz.plot_stems`, so stems can be compared by colour. No axes: ~100× faster than a
    matplotlib figure, which matters when a run shows nine of them.
    """
    from matplotlib.image import imsave

    from gmsdi.viz import log_spectrogram

    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    n_fft = 1024
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    hop = max(64, math.ceil(len(x) / width))
    spec = log_spectrogram(x, sample_rate, n_fft=n_fft, hop=hop, floor_db=SPECTROGRAM_FLOOR_DB)
    bins = spec.shape[0] - 1  # drop Nyquist so the bins split evenly
    spec = spec[:bins].reshape(rows, bins // rows, -1).max(axis=1) if bins % rows == 0 else spec
    # a fixed width (nearest frame per column), so short and long audio fill the same box
    spec = spec[:, np.minimum((np.arange(width) * spec.shape[1]) // width, spec.shape[1] - 1)]
    imsave(path, spec[::-1], cmap="magma", vmin=SPECTROGRAM_FLOOR_DB, vmax=0.0, format="png")
    return path


@dataclass
class Output:
    """The files of one run, in the result's stem order.

    Attributes:
        result: what the pipeline returned.
        names: stem names (the result's keys).
        stems: one 32-bit float wav per stem.
        images: one spectrogram png per stem.
        mix, mix_image: the mix's wav and png.
        zip: wav/, flac/ and settings.json.
        seed: the seed used.
        seconds: wall-clock time of the run (model and files).
    """

    result: Result
    names: list[str]
    stems: list[Path]
    images: list[Path]
    mix: Path
    mix_image: Path
    zip: Path
    seed: int
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, device: str) -> str:
        s = self.result.settings
        return (f"**{s.get('task', 'run')}** · {len(self.names)} stems · {self.result.seconds:.2f} s of audio · "
                f"{s.get('steps', '?')} {s.get('sampler', '')} steps · seed {self.seed} · "
                f"{self.seconds:.1f} s on {device}")


def write_outputs(result: Result, folder: Path, task: str, seed: int) -> Output:
    """Writes a result's wav and flac files, spectrograms and zip into `folder`."""
    wav = result.save(folder / "wav", "wav")  # [stems..., mix, settings.json]
    flac = result.save(folder / "flac", "flac")
    (folder / "png").mkdir(parents=True, exist_ok=True)
    names = list(result.stems)
    images = [spectrogram_png(a, result.sample_rate, folder / "png" / f"{i}.png")
              for i, a in enumerate(result.stems.values())]
    mix_image = spectrogram_png(result.mix, result.sample_rate, folder / "png" / "mix.png")
    zip_path = folder / f"gmsdi-{task}-seed{seed}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in [*wav, *flac]:
            zf.write(f, f.relative_to(folder).as_posix())
        zf.write(wav[-1], "settings.json")
    return Output(result, names, wav[:-2], images, wav[-2], mix_image, zip_path, seed)


# -- cancellation ----------------------------------------------------------------------------------
def new_run(token: dict | None) -> threading.Event:
    """A fresh cancel flag for a run, registered in the session's `token` (a `gr.State` dict).

    Each run gets its own flag, so a stop meant for an old run cannot leak into the next one.
    """
    flag = threading.Event()
    if isinstance(token, dict):
        token["run"] = flag
    return flag


def request_cancel(token: dict | None) -> None:
    """Sets the cancel flag of the session's current run (the Stop button)."""
    flag = token.get("run") if isinstance(token, dict) else None
    if flag is not None:
        flag.set()


def gradio_dropped() -> Callable[[], bool]:
    """A check that turns True once Gradio has dropped the event that called this function.

    Gradio cancels the asyncio task of a cancelled event (a client's `job.cancel()`, a closed
    tab), but the worker thread running the model cannot be killed; the sampler callback asks
    this check, so the thread stops at the next step instead of running on unseen. It reads
    Gradio's queue (internal), so it only answers True if it saw the event active at the start.
    """
    try:
        from gradio.context import LocalContext

        blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
        queue = blocks._queue  # noqa: SLF001 - no public way to ask whether an event is still running

        def active() -> bool:
            return any(evt._id == event_id for job in list(queue.active_jobs) if job for evt in job)

        if event_id is None or not active():
            return lambda: False
    except Exception:  # not inside a Gradio event, or Gradio's internals moved: rely on the flag
        return lambda: False

    def dropped() -> bool:
        try:
            return not active()
        except Exception:
            return False

    return dropped


def sampler_callback(progress: Progress | None, flag: threading.Event | None,
                     dropped: Callable[[], bool] | None = None) -> Callable[[dict], bool]:
    """The pipeline callback: feeds the progress bar; returns True (cancel) once a stop was asked."""

    def callback(info: dict) -> bool:
        if progress is not None:
            what = f"{info.get('task', 'sampling')}: step {info['step'] + 1}/{info['total']}"
            if info.get("chunks", 1) > 1:
                what += f", window {info['chunk'] + 1}/{info['chunks']}"
            if info.get("parts", 1) > 1:
                what += f", pass {info['part'] + 1}/{info['parts']}"
            progress(float(info["progress"]), what)
        return bool((flag is not None and flag.is_set()) or (dropped is not None and dropped()))

    return callback


# -- the tasks -------------------------------------------------------------------------------------
class AppTasks:
    """The app's four tasks over one pipeline; each returns an `Output` or raises `gr.Error`.

    Args:
        pipeline: the model.
        config: limits and defaults.
        workdir: where run folders go (default: a new temporary folder).
    """

    def __init__(self, pipeline: GMSDIPipeline, config: AppConfig | None = None,
                 workdir: str | os.PathLike[str] | None = None) -> None:
        self.pipeline = pipeline
        self.config = config or AppConfig()
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="gmsdi-app-"))
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def device(self) -> str:
        return str(self.pipeline.device)

    @property
    def sample_rate(self) -> int:
        return self.pipeline.sample_rate

    def _run_folder(self) -> Path:
        cutoff = time.time() - self.config.keep_seconds
        for old in self.workdir.iterdir():
            try:
                if old.is_dir() and old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        return Path(tempfile.mkdtemp(prefix="run-", dir=self.workdir))

    # shared checks
    def _common(self, steps: Any, guidance: Any, seed: Any, sampler: str | None, churn: Any,
                default_guidance: float) -> dict[str, Any]:
        """Checked steps, guidance (None or "" = `default_guidance`), seed, sampler and churn."""
        if guidance is None or guidance == "":
            guidance = default_guidance
        out: dict[str, Any] = {
            "steps": _int_steps(steps, self.config.max_steps),
            "guidance": _number(guidance, "The guidance weight"),
            "seed": parse_seed(seed),
        }
        if sampler:
            if sampler not in SAMPLERS:
                raise app_error(f"Unknown sampler {sampler!r}; choose one of {', '.join(sorted(SAMPLERS))}.")
            out["sampler"] = sampler
        if churn is not None and churn != "":
            out["s_churn"] = _number(churn, "Churn")
        return out

    @staticmethod
    def _coupling(coupling: Any) -> dict[str, Any]:
        """`coupling_sigma_min` from a field (None or "" = the pipeline's default); above the
        largest σ of any schedule (`COUPLING_FIELD_MAX`) the stems are never tied."""
        if coupling is None or coupling == "":
            return {}
        return {"coupling_sigma_min": _float(coupling, "'Tie stems to the mix down to σ'", 0.0, COUPLING_FIELD_MAX)}

    def _stem_count(self, n: int) -> None:
        if n > self.config.max_stems:
            raise app_error(f"{n} stems asked for, more than this app's limit of {self.config.max_stems}; "
                            "remove some stems and try again.")

    def _run(self, task: str, call: Callable[..., Result], kwargs: dict[str, Any], progress: Progress | None,
             flag: threading.Event | None) -> Output:
        t0 = time.perf_counter()
        seed = kwargs["seed"]
        callback = sampler_callback(progress, flag, gradio_dropped())
        if progress is not None:
            progress(0.0, f"{task}: starting")
        try:
            set_threads(self.config.threads)
            result = call(**kwargs, callback=callback)
        except Cancelled:
            raise app_error("Stopped before the end; nothing was kept. Press the button again to start over.",
                             title="Stopped") from None
        except (ValueError, FileNotFoundError) as e:
            raise user_error(e) from None
        except (MemoryError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and "out of memory" not in str(e).lower():
                raise
            raise app_error("The model ran out of memory; try shorter audio, fewer stems or fewer at once.") from None
        for warning in result.settings.get("warnings", []):
            gr.Warning(warning[0].upper() + warning[1:] + ".")
        if progress is not None:
            progress(1.0, f"{task}: writing files")
        out = write_outputs(result, self._run_folder(), task, seed)
        out.seconds = time.perf_counter() - t0
        return out

    def generate(self, prompts: Sequence[str], negatives: Sequence[str | None] | None = None,
                 gamma_x: float | None = None, gamma_y: Any = None, seconds: Any = 4.0, steps: Any = None,
                 guidance: Any = None, seed: Any = None, sampler: str | None = None, churn: Any = None,
                 coupling: Any = None, progress: Progress | None = None,
                 flag: threading.Event | None = None) -> Output:
        """Generates one stem per prompt (`GMSDIPipeline.generate`); guidance None = the app's default,
        coupling: the σ below which the stems run untied (`Settings.coupling_sigma_min`; None = default)."""
        prompts = [p.strip() for p in prompts if p and p.strip()]
        if not prompts:
            raise app_error("Type at least one prompt, e.g. 'bass' (one per stem).")
        self._stem_count(len(prompts))
        seconds = _float(seconds, "The duration (seconds)", 0.1, self.config.max_seconds)
        kwargs = self._common(steps if steps is not None else self.config.generate_steps, guidance, seed, sampler,
                              churn, self.config.generate_guidance)
        kwargs.update(prompts=prompts, negative_prompts=list(negatives) if negatives else None, seconds=seconds,
                      gamma_x=gamma_x, gamma_y=parse_gamma(gamma_y, "γ_y"), **self._coupling(coupling))
        return self._run("generate", self.pipeline.generate, kwargs, progress, flag)

    def accompany(self, locked: Sequence[tuple[str, Any]], prompts: Sequence[str],
                  negatives: Sequence[str | None] | None = None, gamma_x: float | None = None, gamma_y: Any = None,
                  steps: Any = None, guidance: Any = None, seed: Any = None, sampler: str | None = None,
                  churn: Any = None, coupling: Any = None, progress: Progress | None = None,
                  flag: threading.Event | None = None) -> Output:
        """Generates `prompts` to fit the locked stems [(name, upload or array at the model rate)];
        coupling as in `generate`."""
        if not locked:
            raise app_error("Lock at least one stem first: generate stems and tick 'lock' on those to keep, "
                            "or upload audio into a stem slot.")
        prompts = [p.strip() for p in prompts if p and p.strip()]
        if not prompts:
            raise app_error("Every stem is locked, so there is nothing to regenerate: untick 'lock' on the stems "
                            "to regenerate, or add a stem with a prompt.")
        self._stem_count(len(locked) + len(prompts))
        stems: dict[str, np.ndarray] = {}
        for name, source in locked:
            name = (name or "").strip()
            if not name:
                raise app_error("A locked stem has no prompt: name what it plays (e.g. 'bass') so the model knows.")
            if name in stems:
                raise app_error(f"Two locked stems are both called {name!r}; give them different prompts "
                                f"(e.g. '{name}' and 'second {name}').")
            audio = source if isinstance(source, np.ndarray) else check_upload(
                source, f"locked stem {name!r}", self.sample_rate, self.config.max_seconds)
            stems[name] = audio
        kwargs = self._common(steps if steps is not None else self.config.generate_steps, guidance, seed, sampler,
                              churn, self.config.generate_guidance)
        kwargs.update(locked=stems, prompts=prompts, negative_prompts=list(negatives) if negatives else None,
                      sample_rate=self.sample_rate, gamma_x=gamma_x, gamma_y=parse_gamma(gamma_y, "γ_y"),
                      **self._coupling(coupling))
        return self._run("accompany", self.pipeline.accompany, kwargs, progress, flag)

    def separate(self, mix: Any, prompts: Sequence[str] | str, method: str = DEFAULT_METHOD, rest_prompt: str = "",
                 steps: Any = None, guidance: Any = None, seed: Any = None, churn: Any = None,
                 progress: Progress | None = None, flag: threading.Event | None = None,
                 dirac: str | None = None) -> Output:
        """Separates (`separator`), extracts (`extractor`: one stem and the rest) or ensembles.
        dirac: the separator's form, "constrained" (MSDM; None) or "projected" (`Settings.dirac`)."""
        if method not in METHODS:
            raise app_error(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
        if dirac not in (None, "", *DIRAC_MODES):
            raise app_error(f"Unknown separator form {dirac!r}; choose one of {', '.join(DIRAC_MODES)}.")
        prompts = split_prompts(prompts)
        if method == "extractor":
            if len(prompts) != 1:
                raise app_error("The extractor takes one stem name, e.g. 'bass'" +
                                (f"; got {len(prompts)}: use the separator for several." if prompts else "."))
        elif len(prompts) < 2:
            raise app_error(f"Name at least two stems that play in the mix, e.g. 'bass, drums' (got {len(prompts)}); "
                            "to pull out a single stem, choose the extractor.")
        self._stem_count(len(prompts))
        audio = check_upload(mix, "mix", self.sample_rate, self.config.max_seconds)
        kwargs = self._common(steps if steps is not None else self.config.separate_steps, guidance, seed, None,
                              churn, self.config.separate_guidance)
        kwargs.update(mix=audio, sample_rate=self.sample_rate, dirac=dirac or None)
        if method == "extractor":
            kwargs.update(prompt=prompts[0], rest_prompt=(rest_prompt or "").strip() or None)
            return self._run("extract", self.pipeline.extract, kwargs, progress, flag)
        if method == "ensemble":
            return self._run("ensemble", self.pipeline.ensemble, {**kwargs, "prompts": prompts}, progress, flag)
        return self._run("separate", self.pipeline.separate, {**kwargs, "prompts": prompts}, progress, flag)


__all__ = [
    "AUDIO_EXTENSIONS", "DEFAULT_METHOD", "DEFAULT_PROMPT_SET", "EXAMPLES_DIR", "METHODS", "PROMPT_SETS",
    "AppConfig", "AppTasks",
    "Output", "app_error", "check_upload", "file_path", "gradio_dropped", "new_run", "parse_gamma",
    "parse_seed", "request_cancel", "sampler_callback", "spectrogram_png", "split_negatives", "split_prompts",
    "user_error", "write_outputs",
]
