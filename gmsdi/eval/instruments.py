"""Which instrument does a clip sound like? An instrument probe for generated and separated stems.

Issue #4 asks that the examples "sound like the named instruments". This module turns that into a
number: a small classifier over the data set's stem classes (SynthSlakh: bass, brass, drums, guitar,
organ, piano, reed, strings, synth_lead), trained on isolated stems of the training split and scored on
isolated stems of the test split (its ceiling), then applied to what a model outputs for a prompt.
A generated "bass" stem counts as a bass when the probe's top class is bass.

    audio [T] at 16 kHz -> 2.048 s windows (hop 1.024 s) -> log-mel -> conv net -> class logits
    clip prediction = mean of the softmax over its windows that are not silent

The network is the contrastive encoder's audio branch (`gmsdi.text.contrastive.AudioBranch`,
smaller widths) with one output per class. Training: random crops of one active stem class each
(`gmsdi.data.supervised.SingleStemDataset`), read once and kept as log-mels, a random gain of
±12 dB per crop and step, cross-entropy weighted by inverse class frequency, AdamW.

Reproduce: `python -m gmsdi.eval instruments --train` (writes `assets/instrument-probe.safetensors`
and its test-split accuracy), then `python -m gmsdi.eval instruments --models gmsdi ...` or
`--files FILE=CLASS ...`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gmsdi.text.contrastive import AudioBranch, ContrastiveConfig

BUNDLED_PROBE = Path(__file__).resolve().parents[2] / "assets" / "instrument-probe.safetensors"
FORMAT = "gmsdi.InstrumentProbe/1"
SILENCE_DB = -30.0  # windows this far below the clip's loudest window are not classified


@dataclass
class ProbeConfig:
    """The probe's shape and training recipe; stored in its checkpoint.

    Attributes:
        classes: the output classes, in order; empty = every stem class of the training split.
        sample_rate: audio rate (Hz); other rates are resampled.
        crop_seconds: window length (s); clips are classified window by window.
        widths: channels of the audio branch's residual conv blocks.
        hidden: width of the head MLP.
        crops, val_crops: training crops of the training split; validation crops (validation split).
        steps, batch_size, lr: AdamW steps, batch and learning rate (cosine decay).
        gain_db: random gain range (± dB) applied to each crop at each step.
        seed: crops, initialisation and batches.
        noise_class: the name of an extra class for what is not an instrument ("" = none). A probe
            that knows only real classes must put noise in one of them; with this class it can say
            "noise", so a noisy generated stem is not counted as its prompt's instrument.
        noise_crops: training crops of that class: half stationary Gaussian noise coloured to the
            spectrum of a random real crop (so every class's colour is covered), half windows of
            `noise_files`.
        noise_files: audio files of model outputs that are noise, not music (e.g. the waveform
            model's generated stems), drawn on for the noise class.
    """

    classes: tuple[str, ...] = ()
    sample_rate: int = 16000
    crop_seconds: float = 2.048
    widths: tuple[int, ...] = (64, 96, 128, 128)
    hidden: int = 128
    crops: int = 6000
    val_crops: int = 600
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    gain_db: float = 12.0
    seed: int = 0
    noise_class: str = ""
    noise_crops: int = 0
    noise_files: tuple[str, ...] = ()

    def branch_config(self) -> ContrastiveConfig:
        return ContrastiveConfig(sample_rate=self.sample_rate, widths=tuple(self.widths), dim=len(self.classes),
                                 hidden=self.hidden)


class InstrumentProbe(nn.Module):
    """Audio -> instrument class probabilities (see the module docstring).

    Args:
        config: classes, shape and recipe (`ProbeConfig`).
    """

    def __init__(self, config: ProbeConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ProbeConfig()
        self.branch = AudioBranch(self.config.branch_config())

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.config.classes)

    @property
    def window(self) -> int:
        """Window length in samples."""
        return int(round(self.config.crop_seconds * self.config.sample_rate))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, T] at `config.sample_rate` -> logits [B, C]."""
        return self.branch(wav)

    @torch.no_grad()
    def windows(self, audio: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """The non-silent windows [W, window] of one mono clip [T] (resampled to the probe's rate;
        shorter clips are zero-padded). W = 0 when the clip is silent."""
        from gmsdi.audio import resample

        x = torch.as_tensor(np.asarray(audio, dtype=np.float32)).flatten()
        if sample_rate != self.config.sample_rate:
            x = torch.from_numpy(resample(x.numpy(), sample_rate, self.config.sample_rate).astype(np.float32))
        n, hop = self.window, self.window // 2
        if len(x) < n:
            x = F.pad(x, (0, n - len(x)))
        starts = list(range(0, len(x) - n + 1, hop))
        if starts[-1] + n < len(x):
            starts.append(len(x) - n)
        w = torch.stack([x[s:s + n] for s in starts])
        rms = w.square().mean(-1).sqrt()
        if float(rms.max()) <= 1e-6:
            return w[:0]
        keep = 20 * torch.log10(rms / rms.max() + 1e-12) >= SILENCE_DB
        return w[keep]

    @torch.no_grad()
    def predict(self, audio: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray | None:
        """Class probabilities [C] of one mono clip [T]: the mean softmax over its non-silent
        windows; None for a silent clip."""
        w = self.windows(audio, sample_rate)
        if not len(w):
            return None
        device = next(self.parameters()).device
        return self.eval()(w.to(device)).softmax(-1).mean(0).cpu().numpy()

    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> Path:
        """Writes the weights and config as safetensors (atomically)."""
        from gmsdi.checkpoint_io import write_safetensors

        meta = {"gmsdi_format": FORMAT, "probe_config": json.dumps(asdict(self.config)), **(metadata or {})}
        return write_safetensors(path, self.state_dict(), meta)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None,
                        device: str | torch.device | None = None) -> InstrumentProbe:
        """Loads a probe written by `save` (None = the bundled `assets/instrument-probe.safetensors`).

        Raises:
            FileNotFoundError: no file there (the message says how to train one).
        """
        from gmsdi.checkpoint_io import read_safetensors

        path = Path(path) if path is not None else BUNDLED_PROBE
        if not path.is_file():
            raise FileNotFoundError(f"no instrument probe at {str(path)!r}; train one with "
                                    "`python -m gmsdi.eval instruments --train`")
        meta, state = read_safetensors(path)
        if meta.get("gmsdi_format") != FORMAT:
            raise ValueError(f"{path} is not an instrument probe (format {meta.get('gmsdi_format')!r}, "
                             f"expected {FORMAT!r})")
        d = json.loads(meta["probe_config"])
        d["classes"], d["widths"] = tuple(d["classes"]), tuple(d["widths"])
        d["noise_files"] = tuple(d.get("noise_files", ()))
        probe = cls(ProbeConfig(**d))
        probe.load_state_dict(state)
        return probe.to(device or "cpu").eval()


def read_crops(root: str | Path, split: str, classes: Sequence[str], n: int, crop_seconds: float,
               sample_rate: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """N random crops [N, T] of one active stem class each (`SingleStemDataset`) and their labels [N]
    (indices into `classes`)."""
    from torch.utils.data import DataLoader

    from gmsdi.data import slakh
    from gmsdi.data.supervised import SingleStemDataset

    ds = SingleStemDataset(root, split, classes=classes, sample_rate=sample_rate, crop_seconds=crop_seconds,
                           crops_per_epoch=n, seed=seed, activity_cache=Path(root) / ".activity")
    audio, labels = [], []
    for batch in DataLoader(ds, batch_size=64, collate_fn=slakh.collate_mixtures):
        audio.append(batch["audio"][:, 0])
        labels += [list(classes).index(t[0]) for t in batch["tags"]]
    return torch.cat(audio), torch.tensor(labels)


def _logmels(probe: InstrumentProbe, audio: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([probe.branch.logmel(audio[i:i + batch]) for i in range(0, len(audio), batch)])


def scores(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy figures of predictions.

    Args:
        probs: [N, C] class probabilities.
        labels: [N] true class indices.

    Returns:
        accuracy, balanced_accuracy (mean per-class recall over classes present), per_class recall
        with its count, and the confusion matrix [C, C] (rows true, columns predicted).
    """
    pred = probs.argmax(-1)
    c = len(classes)
    confusion = np.zeros((c, c), dtype=int)
    for t, p in zip(labels, pred, strict=True):
        confusion[t, p] += 1
    per_class = {name: {"recall": float(confusion[k, k] / confusion[k].sum()), "n": int(confusion[k].sum())}
                 for k, name in enumerate(classes) if confusion[k].sum()}
    return {"accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
            "balanced_accuracy": float(np.mean([v["recall"] for v in per_class.values()])) if per_class
            else float("nan"),
            "per_class": per_class, "classes": list(classes), "confusion": confusion.tolist()}


def train_probe(root: str | Path, config: ProbeConfig | None = None, progress: bool = False,
                ) -> tuple[InstrumentProbe, dict[str, Any]]:
    """Fits a probe on the training split's isolated stems.

    Args:
        root: a SynthSlakh / Slakh2100 folder with train and validation splits.
        config: classes and recipe (default `ProbeConfig()`); empty classes are filled in.

    Returns:
        the probe (eval mode), and {"validation": `scores` on the validation split's isolated stems,
        "history": the training loss every 50 steps}.
    """
    from tqdm.auto import tqdm

    from gmsdi.data.slakh import list_tracks

    cfg = config if config is not None else ProbeConfig()
    if not cfg.classes:
        cfg.classes = tuple(sorted({c for t in list_tracks(root, "train") for c in t.classes}))
    real_classes = tuple(c for c in cfg.classes if c != cfg.noise_class)
    if cfg.noise_class and cfg.noise_class not in cfg.classes:
        cfg.classes = (*cfg.classes, cfg.noise_class)
    torch.manual_seed(cfg.seed)
    probe = InstrumentProbe(cfg)
    audio, labels = read_crops(root, "train", real_classes, cfg.crops, cfg.crop_seconds, cfg.sample_rate, cfg.seed)
    if cfg.noise_class:
        audio, labels = _with_noise(cfg, audio, labels, noise_crops(audio, cfg.noise_crops, cfg.noise_files,
                                                                   cfg.sample_rate, cfg.seed))
    mels = _logmels(probe, audio)
    counts = torch.bincount(labels, minlength=len(cfg.classes)).float()
    weight = torch.where(counts > 0, counts.sum() / (len(cfg.classes) * counts.clamp(min=1)), torch.zeros(()))
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    probe.train()
    for step in tqdm(range(cfg.steps), disable=not progress, desc="instrument probe", unit="step"):
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(len(mels), (cfg.batch_size,), generator=gen)
        # a gain of g dB scales power by 10^(g/10): add its natural log to the log-mel
        gain = (torch.rand(cfg.batch_size, 1, 1, generator=gen) * 2 - 1) * cfg.gain_db * math.log(10) / 10
        loss = F.cross_entropy(probe.branch.features(mels[idx] + gain), labels[idx], weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            history.append({"step": step + 1, "loss": loss.item()})
    probe.eval()
    val_audio, val_labels = read_crops(root, "validation", real_classes, cfg.val_crops, cfg.crop_seconds,
                                       cfg.sample_rate, cfg.seed + 1)
    if cfg.noise_class:  # held-out coloured noise only: the model outputs were all used in training
        val_audio, val_labels = _with_noise(cfg, val_audio, val_labels, noise_crops(
            val_audio, max(1, cfg.val_crops // 10), (), cfg.sample_rate, cfg.seed + 1))
    return probe, {"validation": evaluate_crops(probe, val_audio, val_labels), "history": history}


def _with_noise(cfg: ProbeConfig, audio: torch.Tensor, labels: torch.Tensor,
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops [N, T] and labels [N] with the noise crops appended under the noise class's label."""
    label = torch.full((len(noise),), cfg.classes.index(cfg.noise_class), dtype=labels.dtype)
    return torch.cat([audio, noise]), torch.cat([labels, label])


def noise_crops(real: torch.Tensor, n: int, files: Sequence[str | os.PathLike[str]], sample_rate: int,
                seed: int) -> torch.Tensor:
    """[n, T] crops that are not instruments (see `ProbeConfig.noise_crops`): noise coloured to the
    spectrum of a random crop of `real` [M, T] at its level, and, when `files` are given, half of
    them random windows of those files (resampled to `sample_rate`, mono), each at a random level."""
    from gmsdi.audio import load_audio
    from gmsdi.eval.structure import coloured_noise

    rng = np.random.default_rng([seed, 41])
    length = real.shape[-1]
    n_files = n // 2 if files else 0
    out = []
    for i in rng.choice(len(real), n - n_files):
        ref = real[i].numpy()
        if not np.any(ref):
            ref = rng.standard_normal(length).astype(np.float32) * 0.05
        out.append(coloured_noise(ref[None], 1, length, rng)[0])
    sources = [a for a in (load_audio(f, sample_rate, name=f"noise file {f}") for f in files) if len(a) >= length]
    if files and not sources:
        raise ValueError(f"none of the noise files is at least {length / sample_rate:.2f} s of sound: {list(files)}")
    for _ in range(n_files):
        src = sources[rng.integers(len(sources))]
        start = int(rng.integers(len(src) - length + 1))
        crop = src[start:start + length]
        out.append(crop / max(float(np.sqrt(np.mean(crop**2))), 1e-6) * 10 ** (rng.uniform(-30, -15) / 20))
    return torch.from_numpy(np.stack(out).astype(np.float32)) if out else real[:0]


@torch.no_grad()
def evaluate_crops(probe: InstrumentProbe, audio: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Scores of the probe on crops [N, window] with labels [N] (one window each)."""
    probs = torch.cat([probe.eval()(audio[i:i + 256]).softmax(-1) for i in range(0, len(audio), 256)])
    return scores(probs.numpy(), labels.numpy(), probe.classes)


def classify(probe: InstrumentProbe, clips: Sequence[tuple[np.ndarray, int, str]]) -> dict[str, Any]:
    """Classifies clips with a named instrument each.

    Args:
        clips: (audio [T], sample rate in Hz, the named class) triples; the named class must be one
            of the probe's classes.

    Returns:
        `scores` over the non-silent clips, plus `silent` (how many were silent) and `clips`: per clip
        the predicted class and the probability of the named one.
    """
    known = set(probe.classes)
    bad = sorted({name for _, _, name in clips} - known)
    if bad:
        raise ValueError(f"the probe knows the classes {list(probe.classes)}, not {bad}")
    rows, probs, labels, silent = [], [], [], 0
    for audio, sr, name in clips:
        p = probe.predict(audio, sr)
        if p is None:
            silent += 1
            rows.append({"named": name, "predicted": None, "p_named": None})
            continue
        k = probe.classes.index(name)
        probs.append(p)
        labels.append(k)
        rows.append({"named": name, "predicted": probe.classes[int(p.argmax())], "p_named": float(p[k])})
    c = len(probe.classes)
    out = scores(np.array(probs).reshape(-1, c), np.array(labels, dtype=int), probe.classes)
    return {**out, "silent": silent, "clips": rows}


__all__ = ["BUNDLED_PROBE", "InstrumentProbe", "ProbeConfig", "classify", "evaluate_crops", "read_crops",
           "scores", "train_probe"]
