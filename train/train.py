"""Train the text-conditioned waveform diffusion model S(y, z, σ) on mixtures and their tags.

One script for a laptop CPU, one GPU or many (METHOD.md §2). The model sees only mixture crops
and the tags of the instruments that play in them (the loader's mixture mode); isolated stems are
read only for the prompt-sensitivity probe at validation. The baselines of the evaluation train with
the same script on separated stems instead (`DataConfig.source`). The config is a YAML file in
train/configs/ (fields: `TrainConfig` below); any field can be overridden on the command line.

    # CPU smoke run (renders a tiny SynthSlakh set first if it is missing), as in CI:
    python train/train.py --config train/configs/tiny.yaml
    # the bundled model: render the data once, then train in the background; rerun to resume
    python -m gmsdi.data.synth --preset default --out data/synthslakh
    nohup python train/train.py --config train/configs/bands.yaml > runs/bands.log 2>&1 &
    # one or many GPUs, bf16 where supported (multi-node: see `accelerate launch --help`)
    accelerate launch --num_processes 4 train/train.py --config train/configs/bands.yaml
    # override fields, e.g. a warm start from the bundled weights with a new run name
    python train/train.py --config train/configs/bands.yaml \
        --set name=ft init_from=assets/gmsdi-synthslakh.safetensors
    # ... or grow the bundled network as it starts: more blocks per level, bottleneck self-attention, a
    # per-bin refiner, attention over bands ("model.unet.band_attn_levels=[0,1]") or a deep filter with phase
    # features (model.unet.filter_taps=5 model.unet.phase_features=true), harmonic features
    # ("model.unet.harmonic_features=[0.25,0.5,2,3,4]"), each starting as a no-op
    # (`gmsdi.models.bandunet.load_grown`)
    python train/train.py --config train/configs/bands.yaml --set name=grow \
        init_from=assets/gmsdi-synthslakh.safetensors "model.unet.num_blocks=[1,2,2]" \
        model.unet.self_attn_bottleneck=true
    # write the inference checkpoint (EMA weights + config, safetensors) of a run; the bundled one in bf16
    python train/train.py --config train/configs/bands.yaml --export assets/gmsdi-synthslakh.safetensors \
        --export-dtype bf16
    # a fresh checkout has no runs/<name>/ckpt.pt: continue the run from its committed export, at the export's
    # step, with a fresh optimizer that warms up again (`continue_from`)
    nohup python train/train.py --config train/configs/emph.yaml \
        --set continue_from=train/resume/emph.safetensors > runs/emph.log 2>&1 &
    # the evaluation's baselines on the same data with the same budget (`data.source`; issue #6)
    nohup python train/train.py --config train/configs/msdm.yaml > runs/msdm.log 2>&1 &
    nohup python train/train.py --config train/configs/weak_msdm.yaml > runs/weak_msdm.log 2>&1 &
    python train/train.py --config train/configs/msdm.yaml --export assets/msdm-synthslakh.safetensors
    python train/train.py --config train/configs/weak_msdm.yaml --export assets/weak-msdm-synthslakh.safetensors

Outputs in runs/<name>/: ckpt.pt (config, model, EMA, optimizer, step; written atomically, so
training resumes after kill -9), train.csv, val.csv (loss per σ), sensitivity.csv (prompt
sensitivity per σ), samples/*.wav.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Sampler  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from gmsdi.data import slakh  # noqa: E402
from gmsdi.data.classes import PAPER_STEMS  # noqa: E402
from gmsdi.data.prompts import class_phrase, compose, stem_prompt  # noqa: E402
from gmsdi.eval.sensitivity import probe_set, prompt_sensitivity  # noqa: E402
from gmsdi.models import ModelConfig, build_model, load_metadata, load_model, model_config, save_model  # noqa: E402
from gmsdi.models.bandunet import load_grown  # noqa: E402
from gmsdi.models.spectral import SpectralErrorWeight, Stft  # noqa: E402
from gmsdi.sampling import get_sigmas_karras, sample_heun  # noqa: E402
from gmsdi.text import TextEmbedding, build_text_encoder  # noqa: E402
from gmsdi.training import append_csv, ensure_synthslakh, run_parser, save_checkpoint  # noqa: E402

VAL_SIGMAS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
SOURCES = ("mixtures", "stems_joint", "stems_single")


@dataclass
class DataConfig:
    """Where the mixtures come from and how they are cropped."""

    root: str = "data/synthslakh"
    train_split: str = "train"
    val_split: str = "validation"
    sample_rate: int = 16000
    crop_seconds: float = 2.048  # rounded down to a length the network accepts
    min_active_s: float = 0.25
    num_workers: int = 1
    # When `root` has no tracks and render_tracks > 0, render a SynthSlakh set there first.
    render_tracks: int = 0
    render_seconds: float = 12.0
    render_seed: int = 0
    # Extra mixtures from random subsets of the stems. This CHANGES THE DATA SETTING (the model
    # then sees stems, which GMSDI does not assume), so it is off by default and logged.
    submix: bool = False
    submix_fraction: float = 0.5
    # What the model learns from (`SOURCES`). "mixtures" is GMSDI's setting; the baselines of the
    # evaluation (issue #6) see separated stems of `stem_classes`: "stems_joint" stacks them as
    # channels of one unconditional model (MSDM), "stems_single" gives one active class per crop
    # with its class as the prompt (weakly-supervised MSDM).
    source: str = "mixtures"
    stem_classes: tuple[str, ...] = PAPER_STEMS


@dataclass
class TrainConfig:
    """Everything a run needs; a checkpoint stores it, so a run resumes with its own settings."""

    name: str = "run"
    out_dir: str = "runs"
    model: dict = field(default_factory=lambda: {"preset": "default"})
    data: DataConfig = field(default_factory=DataConfig)
    init_from: str = ""  # an exported .safetensors to start from (weights only)
    # An export of this run (`--export`, its metadata holds the step) to continue from when the run folder has no
    # ckpt.pt, as on a fresh checkout (ckpt.pt, with the optimizer, is not committed): model and EMA start from
    # its weights, the step counter and the data order from its step, and a fresh optimizer warms up again over
    # `warmup_steps` (`learning_rate`'s `restart`).
    continue_from: str = ""
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 500
    # Cosine decay from lr to lr·lr_min_ratio between lr_decay_start and lr_decay_steps (0: constant).
    lr_decay_steps: int = 0
    # Step where the cosine begins (0: at the end of warm-up). A later start holds lr constant until then: a
    # warmup-stable-decay schedule whose cooldown can be added to a run trained at a constant rate, on resume.
    lr_decay_start: int = 0
    lr_min_ratio: float = 0.05
    max_steps: int = 100_000
    # Gain augmentation: each crop scaled by a gain drawn uniformly in this range (dB); (0, 0) is off.
    gain_db: tuple[float, float] = (0.0, 0.0)
    grad_clip: float = 1.0
    # The loss weighed per frequency (`SpectralErrorWeight`): bin k's error counts (P_k + floor·mean P)^(−α),
    # P the mean power spectrum of `loss_spectral_crops` training crops; 0 = the plain mean square. The
    # minimiser stays the posterior mean; the validation loss stays the plain one.
    loss_spectral_alpha: float = 0.0
    loss_spectral_floor: float = 1e-3
    loss_spectral_crops: int = 256
    ema_decay: float = 0.999
    p_uncond: float = 0.1  # prompt dropout: the null prompt "" for classifier-free guidance
    # What z is during training (`CONDITIONS`). "tags": the prompt composed from the crop's tags
    # (METHOD.md §2). "audio": no tags at all; z = E_contr(y), the audio-branch embedding of the
    # mixture crop itself (issue #8); the model's text encoder must then be a contrastive one
    # (model.text_encoder: "contrastive:PATH"), whose text branch embeds prompts at inference.
    condition: str = "tags"
    # Prompts that name a random subset of the crop's instruments. Off by default: it teaches
    # "bass" to mean "a mix with bass in it", which fights single-source parameterisation.
    p_tag_subset: float = 0.0
    mixed_precision: str = "auto"  # auto = bf16 on a GPU that supports it, else fp32
    # Training prompts encoded from a parts table (gmsdi.text.table) instead of the model's text
    # encoder, which it must have been made with: for machines where the text model cannot go.
    text_table: str = ""
    # Wall-clock budget (s) of this invocation, 0 = none. After 100 steps the run measures its
    # speed and sets max_steps (and a cosine's end, lr_decay_steps) to end inside the budget; at
    # the budget it stops, checkpoints and writes samples as at max_steps. For lent machines.
    time_budget_s: float = 0.0
    seed: int = 0
    log_every: int = 25
    val_every: int = 1000  # 0: no validation (it needs the validation split's stems)
    val_batches: int = 4
    sensitivity_items: int = 48
    ckpt_every: int = 250
    sample_every: int = 2000
    sample_prompts: tuple[str, ...] = ("bass", "drums", "piano", "bass, drums, guitar, piano")
    sample_seconds: float = 4.096
    sample_steps: int = 40

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def _from_dict(cls, d: dict):
    """Build a (nested) config dataclass from a dict, rejecting unknown keys with their names."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; valid: {sorted(names)}")
    kw = {}
    for k, v in d.items():
        if k == "data" and isinstance(v, dict):
            v = _from_dict(DataConfig, v)
        elif isinstance(v, list):
            v = tuple(v)
        default = names[k].default
        if isinstance(default, float | int) and not isinstance(default, bool) and isinstance(v, str | int):
            try:  # YAML 1.1 reads "1e-3" as a string
                v = type(default)(float(v)) if isinstance(default, float) else int(v)
            except ValueError as e:
                raise ValueError(f"{cls.__name__}.{k} must be a number, got {v!r}") from e
        kw[k] = v
    return cls(**kw)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """A `TrainConfig` from YAML plus `key=value` overrides (`data.root=...`, values parsed as YAML)."""
    raw: dict = {}
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config {path} does not exist; see train/configs/ for examples")
        raw = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return _from_dict(TrainConfig, raw)


class StepSampler(Sampler[int]):
    """Indices start_step*B, start_step*B + 1, ...: item i of the dataset is a fixed random crop,
    so a resumed run sees exactly the batches it would have seen."""

    def __init__(self, start: int, total: int) -> None:
        self.start, self.total = start, total

    def __iter__(self):
        return iter(range(self.start, self.total))

    def __len__(self) -> int:
        return self.total - self.start


class SubmixDataset(torch.utils.data.Dataset):
    """The `submix` data setting: item i is, with probability `fraction`, a mixture of a random
    subset of the stems of a crop (tagged with their classes), else mixture item i."""

    def __init__(self, mixtures: slakh.MixtureDataset, stems: slakh.StemsDataset, fraction: float,
                 seed: int) -> None:
        self.mixtures, self.stems, self.fraction, self.seed = mixtures, stems, fraction, seed

    def __len__(self) -> int:
        return len(self.mixtures)

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, 7, i])
        if rng.random() >= self.fraction:
            return self.mixtures[i]
        item = self.stems[i % len(self.stems)]
        active = [k for k, a in enumerate(item["active"].tolist()) if a] or list(range(len(item["classes"])))
        keep = sorted(rng.choice(active, size=int(rng.integers(1, len(active) + 1)), replace=False).tolist())
        tags = [item["classes"][k] for k in keep]
        # The rows are per class (no program names), so a part is a class phrase or description.
        return {"audio": item["stems"][keep].sum(0, keepdim=True), "tags": tags, "programs": [],
                "prompt": compose([stem_prompt(t, None, rng) for t in tags], rng),
                "track": item["track"], "start": item["start"]}


class LossModule(nn.Module):
    """forward(x, σ, cond) -> per-example loss, so that DDP sees the loss as a forward pass; `error_weight`
    (e.g. a `SpectralErrorWeight`) replaces the error's mean square."""

    def __init__(self, denoiser: nn.Module, error_weight: nn.Module | None = None) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.error_weight = error_weight

    def forward(self, x, sigma, cond, noise=None):
        return self.denoiser.loss(x, sigma, cond, noise=noise, error_weight=self.error_weight)


def spectral_error_weight(cfg: TrainConfig, segment: int) -> SpectralErrorWeight | None:
    """`loss_spectral_alpha` > 0: the weighting from the mean power spectrum of `loss_spectral_crops` training
    crops (items at evenly spaced indices of the seeded training set: the same crops on every start with the same
    data, seed and batch size, so a resumed run weighs as before)."""
    if cfg.loss_spectral_alpha == 0:
        return None
    if cfg.loss_spectral_crops < 1:
        raise ValueError(f"loss_spectral_crops must be at least 1, got {cfg.loss_spectral_crops}")
    stft = Stft(1024, 256)  # SpectralErrorWeight's default frames
    if segment % stft.hop:
        raise ValueError(f"loss_spectral_alpha weighs the error in {stft.hop}-sample STFT frames; the crop of "
                         f"{segment} samples is not a multiple of {stft.hop} (set data.crop_seconds so that it is)")
    ds = build_data(cfg, segment, cfg.loss_spectral_crops, 0).dataset
    power = torch.zeros(stft.bins, dtype=torch.float64)
    for i in np.linspace(0, len(ds) - 1, cfg.loss_spectral_crops).round().astype(int):
        power += stft.analyze(ds[int(i)]["audio"].reshape(-1, segment)).abs().pow(2).mean((0, -1)).double()
    return SpectralErrorWeight.from_power(power, cfg.loss_spectral_alpha, cfg.loss_spectral_floor)


CONDITIONS = ("tags", "audio")


def check_condition(cfg: TrainConfig, text_encoder) -> None:
    """The conditioning mode must fit the data source and the prompt encoder."""
    if cfg.condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {cfg.condition!r}")
    if cfg.condition == "audio":
        if cfg.data.source != "mixtures":
            raise ValueError("condition=audio trains on mixtures (data.source=mixtures)")
        if not hasattr(text_encoder, "encode_audio"):
            raise ValueError("condition=audio needs a contrastive text encoder with an audio branch; set "
                             "model.text_encoder to 'contrastive' or 'contrastive:PATH' (train one with "
                             "train/train_contrastive.py)")


def conditioning(cfg: TrainConfig, text_encoder, audio: torch.Tensor, prompts: list[str], device) -> TextEmbedding:
    """z for a batch: the prompts' text embeddings, or with condition=audio E_contr(audio) where the
    prompt is not the null prompt "" (so prompt dropout still trains the unconditional model)."""
    if cfg.condition == "tags":
        return text_encoder.encode(prompts, device=device)
    drop = torch.tensor([p == "" for p in prompts])
    return text_encoder.encode_audio(audio, sample_rate=cfg.data.sample_rate, device=device).with_null(drop)


def training_text_encoder(cfg: TrainConfig, model_cfg: ModelConfig):
    """The prompt encoder of training: the model's own, or with `text_table` a parts table made with it."""
    if not cfg.text_table:
        return build_text_encoder(model_cfg.text_encoder)
    from gmsdi.text.table import PartsTable

    table = PartsTable.load(cfg.text_table)
    if table.encoder != model_cfg.text_encoder:
        raise ValueError(f"text_table {cfg.text_table} was made with {table.encoder!r} but the model's text "
                         f"encoder is {model_cfg.text_encoder!r}; rebuild it with `python -m gmsdi.text.table "
                         f"--encoder {model_cfg.text_encoder} --out {cfg.text_table}`")
    return table


def fit_time_budget(cfg: TrainConfig, step: int, step0: int, t_start: float, marks: dict) -> None:
    """`time_budget_s`: 100 steps in, set max_steps (and a cosine's end) from the speed of steps 20-100
    (the first ones start workers and tune kernels); at the budget, end the run at this step.
    `step0`/`t_start`: the step and time this invocation began; `marks` keeps the time of step 20."""
    now = time.perf_counter()
    elapsed = now - t_start
    if elapsed >= cfg.time_budget_s:
        cfg.max_steps = min(cfg.max_steps, step)
    elif step == step0 + 20:
        marks["t20"] = now
    elif step == step0 + 100:
        per_step = (now - marks["t20"]) / 80
        planned = step + int((cfg.time_budget_s - elapsed) / per_step)
        if cfg.lr_decay_steps == cfg.max_steps or cfg.lr_decay_steps > planned:
            cfg.lr_decay_steps = planned
        cfg.max_steps = min(cfg.max_steps, planned)
        tqdm.write(f"time budget {cfg.time_budget_s:.0f} s at {per_step:.3f} s/step: max_steps {cfg.max_steps}, "
                   f"lr_decay_steps {cfg.lr_decay_steps}")


def build_model_config(cfg: TrainConfig) -> ModelConfig:
    """The model config of a new run: a preset (`model.preset`) with `model.*` fields overridden;
    the training crop sets `segment_samples` (rounded down to a length the network accepts)."""
    spec = dict(cfg.model)
    base = model_config(spec.pop("preset", "default")).to_dict()
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    base["sample_rate"] = cfg.data.sample_rate
    if cfg.data.source == "stems_joint":  # MSDM: one channel per stem class
        want = len(cfg.data.stem_classes)
        got = dict(spec.get("unet") or {}).get("in_channels")
        if got is not None and got != want:
            raise ValueError(f"model.unet.in_channels={got} but data.source=stems_joint stacks {want} stem "
                             f"classes {list(cfg.data.stem_classes)}; leave in_channels unset or set {want}")
        base["unet"]["in_channels"] = want
    multiple = ModelConfig.from_dict(base).unet.length_multiple
    base["segment_samples"] = max(multiple, int(cfg.data.crop_seconds * cfg.data.sample_rate) // multiple * multiple)
    return ModelConfig.from_dict(base)


def decay_start(cfg: TrainConfig) -> int:
    """The step where the cosine begins: the later of the end of warm-up and `lr_decay_start`."""
    return max(cfg.warmup_steps, cfg.lr_decay_start)


def learning_rate(cfg: TrainConfig, step: int, restart: int = 0) -> float:
    """The learning rate at `step` (0-based): linear warm-up, constant until `lr_decay_start` (or the end
    of warm-up), then cosine decay to `lr * lr_min_ratio` at `lr_decay_steps` (0: constant throughout).
    A run continued at step `restart` > 0 (`continue_from`) with a fresh optimizer warms up again from there."""
    lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    start = decay_start(cfg)
    if cfg.lr_decay_steps > start and step >= start:
        t = min(1.0, (step - start) / (cfg.lr_decay_steps - start))
        lr = cfg.lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
    if restart > 0:
        lr *= min(1.0, (step - restart + 1) / max(1, cfg.warmup_steps))
    return lr


def continued_state(cfg: TrainConfig, model: nn.Module) -> int:
    """Loads `cfg.continue_from`'s weights into `model` and returns the step they were exported at.

    Raises:
        ValueError: with `init_from` also set, when the export has no step in its metadata, or when its model config
            (shapes, σ_d, emphasis) is not this run's.
    """
    if cfg.init_from:
        raise ValueError("set init_from (new weights for a new run) or continue_from (this run's export), not both")
    meta = load_metadata(cfg.continue_from)
    if "step" not in meta:
        raise ValueError(f"continue_from {cfg.continue_from} has no step in its metadata: continue only from a "
                         "file written by `train.py --export`")
    source = load_model(cfg.continue_from)
    if source.model_config != model.model_config:  # equal shapes are not enough: σ_d or the emphasis may differ
        raise ValueError(f"continue_from {cfg.continue_from} is not this run's model (its model config differs "
                         "from the run's); continue with the config that trained it")
    model.load_state_dict(source.state_dict(), strict=True)
    return int(meta["step"])


def check_schedule(cfg: TrainConfig) -> None:
    """A cosine must end after it starts: `lr_decay_steps` is 0 (constant) or past `lr_decay_start` and the
    warm-up, else the rate would silently stay constant."""
    start = decay_start(cfg)
    if cfg.lr_decay_steps and cfg.lr_decay_steps <= start:
        raise ValueError(f"lr_decay_steps={cfg.lr_decay_steps} ends the cosine before it starts (step {start}: "
                         f"the later of warmup_steps and lr_decay_start); set lr_decay_steps above {start}, or 0 "
                         "for a constant rate")


def check_source(d: DataConfig) -> None:
    if d.source not in SOURCES:
        raise ValueError(f"unknown data.source {d.source!r}; valid names are {list(SOURCES)}")
    if d.source != "mixtures" and d.submix:
        raise ValueError(f"data.submix applies to data.source=mixtures only, not {d.source!r}")


def stem_crops(cfg: TrainConfig, split: str, crop_s: float, n: int, seed: int):
    """The baselines' crops (`gmsdi.data.supervised`) for `data.source` stems_joint / stems_single."""
    from gmsdi.data.supervised import JointStemsDataset, SingleStemDataset

    d = cfg.data
    kind = JointStemsDataset if d.source == "stems_joint" else SingleStemDataset
    return kind(d.root, split, classes=d.stem_classes, sample_rate=d.sample_rate, crop_seconds=crop_s,
                crops_per_epoch=n, seed=seed, min_active_s=d.min_active_s, activity_cache=Path(d.root) / ".activity")


def build_data(cfg: TrainConfig, segment: int, batches: int, start_step: int):
    """The training DataLoader (`data.source`: mixture crops by default) starting at `start_step`."""
    d = cfg.data
    check_source(d)
    crop_s = segment / d.sample_rate
    n = batches * cfg.batch_size
    if d.source != "mixtures":
        ds = stem_crops(cfg, d.train_split, crop_s, n, cfg.seed)
        return DataLoader(ds, batch_size=cfg.batch_size, sampler=StepSampler(start_step * cfg.batch_size, n),
                          num_workers=d.num_workers, collate_fn=slakh.collate_mixtures, persistent_workers=False,
                          prefetch_factor=4 if d.num_workers else None)
    ds = slakh.MixtureDataset(d.root, d.train_split, sample_rate=d.sample_rate, crop_seconds=crop_s,
                              crops_per_epoch=n, seed=cfg.seed, min_active_s=d.min_active_s,
                              activity_cache=Path(d.root) / ".activity")
    if d.submix:
        stems = slakh.StemsDataset(d.root, d.train_split, classes=_all_classes(d.root, d.train_split),
                                   sample_rate=d.sample_rate, crop_seconds=crop_s, seed=cfg.seed,
                                   crops_per_epoch=n)
        ds = SubmixDataset(ds, stems, d.submix_fraction, cfg.seed)
    sampler = StepSampler(start_step * cfg.batch_size, n)
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=d.num_workers,
                      collate_fn=slakh.collate_mixtures, persistent_workers=False,
                      prefetch_factor=4 if d.num_workers else None)


def _all_classes(root: str, split: str) -> tuple[str, ...]:
    return tuple(sorted({c for t in slakh.list_tracks(root, split) for c in t.classes}))


def ensure_data(cfg: TrainConfig) -> None:
    """Render a small SynthSlakh set into `data.root` when it is empty and the config asks for it."""
    d = cfg.data
    ensure_synthslakh(d.root, d.train_split, d.render_tracks, d.render_seed, d.render_seconds, d.sample_rate)


class Validator:
    """Fixed validation crops and noise: the loss per σ and the prompt-sensitivity probe."""

    def __init__(self, cfg: TrainConfig, segment: int, text_encoder, device) -> None:
        d = cfg.data
        crop_s = segment / d.sample_rate
        g = torch.Generator().manual_seed(1234)
        if d.source == "mixtures":
            mixtures = slakh.MixtureDataset(d.root, d.val_split, sample_rate=d.sample_rate, crop_seconds=crop_s,
                                            crops_per_epoch=cfg.val_batches * cfg.batch_size, seed=99,
                                            activity_cache=Path(d.root) / ".activity")
        else:  # the baselines: the loss on their own kind of crop
            mixtures = stem_crops(cfg, d.val_split, crop_s, cfg.val_batches * cfg.batch_size, 99)
        batch = slakh.collate_mixtures([mixtures[i] for i in range(len(mixtures))])
        self.mix = batch["audio"]
        self.mix_cond = conditioning(cfg, text_encoder, self.mix, batch["prompt"], device)
        self.mix_noise = torch.randn(self.mix.shape, generator=g)
        self.device = device
        self.text_encoder, self.probe = text_encoder, None
        if d.source == "stems_joint":  # unconditional: no prompt to probe
            return
        # Isolated validation stems (read only here), one class active at a time.
        classes = _all_classes(d.root, d.val_split)
        if len(classes) > 1:  # a split with one class has no wrong prompt to probe with
            self.probe = probe_set(d.root, d.val_split, cfg.sensitivity_items, segment, d.sample_rate, seed=5,
                                   classes=classes, generator=g)

    @torch.no_grad()
    def run(self, model: nn.Module, chunk: int = 16) -> tuple[dict, dict]:
        """Returns ({σ: weighted EDM loss on mixtures}, {σ: {prompt kind: denoising MSE on stems}})."""
        model.eval()
        dev = self.device
        losses = {}
        for s in VAL_SIGMAS:
            vals = []
            for i in range(0, len(self.mix), chunk):
                x = self.mix[i:i + chunk].to(dev)
                vals.append(model.loss(x, torch.full((len(x),), s, device=dev), self.mix_cond[i:i + chunk],
                                       noise=self.mix_noise[i:i + chunk].to(dev)))
            losses[s] = torch.cat(vals).mean().item()
        sens = (prompt_sensitivity(model, self.text_encoder, self.probe, VAL_SIGMAS, chunk, dev)
                if self.probe is not None else {})
        model.train()
        return losses, sens


def export(cfg: TrainConfig, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write the run's EMA weights and model config as an inference checkpoint (safetensors); with
    `dtype` (bf16) the weights are stored in that dtype."""
    ckpt = cfg.run_dir / "ckpt.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint at {ckpt}; train first")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = build_model(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["ema"])
    extra = {"step": str(state["step"]), "run": cfg.name, "train_config": yaml.safe_dump(state["config"])}
    data = state["config"].get("data", {})
    if data.get("source", "mixtures") != "mixtures":  # the baselines say what they were trained on
        extra["source"] = data["source"]
        extra["stems"] = ",".join(data.get("stem_classes", PAPER_STEMS))
    return save_model(out, model, metadata=extra, dtype=dtype)


@torch.no_grad()
def write_samples(model: nn.Module, cfg: TrainConfig, text_encoder, step: int, device,
                  segment_multiple: int) -> None:
    """A few prompted samples (Heun, Karras schedule) to listen to during training."""
    model.eval()
    sr = cfg.data.sample_rate
    n = int(cfg.sample_seconds * sr) // segment_multiple * segment_multiple
    g = torch.Generator().manual_seed(cfg.seed)
    channels = model.model_config.unet.in_channels
    if channels > 1:  # MSDM: one joint, unconditional sample; a file per stem and their sum
        x = torch.randn(1, channels, n, generator=g).to(device)
        edm = model.config
        sigmas = get_sigmas_karras(cfg.sample_steps, edm.sigma_min, edm.sigma_max, device=device)
        out = model.decode(sample_heun(model, x * sigmas[0], sigmas, extra_args={"cond": None}))[0].cpu().numpy()
        folder = cfg.run_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        for name, audio in zip([*cfg.data.stem_classes, "mix"], [*out, out.sum(0)], strict=True):
            sf.write(folder / f"step{step:07d}_{name}.wav", np.clip(audio, -1, 1), sr)
        model.train()
        return
    prompts = list(cfg.sample_prompts)
    x = torch.randn(len(prompts), 1, n, generator=g).to(device)
    edm = model.config
    sigmas = get_sigmas_karras(cfg.sample_steps, edm.sigma_min, edm.sigma_max, device=device)
    cond = text_encoder.encode(prompts, device=device)
    out = model.decode(sample_heun(model, x * sigmas[0], sigmas, extra_args={"cond": cond}))
    folder = cfg.run_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    for p, audio in zip(prompts, out.cpu().numpy(), strict=True):
        name = p.replace(", ", "+").replace(" ", "_")
        sf.write(folder / f"step{step:07d}_{name}.wav", np.clip(audio[0], -1, 1), sr)
    model.train()


def resolve_mixed_precision(requested: str) -> tuple[str, str]:
    """The autocast precision Accelerate gets for `cfg.mixed_precision`, and a note when it differs.

    "auto" is bf16 on a GPU that supports it, else fp32 ("no"). An explicit "bf16" on a machine with no GPU and a
    CPU without bf16 instructions (AMX-BF16 or AVX-512-BF16) trains in fp32 instead: there bf16 is emulated, and a
    step of the `logbands-emph` run took 62 s against 2.8 s in fp32 (AMD EPYC, AVX2 only; train/RUNS.md, session 28).
    The checkpoint stores fp32 weights either way, so a run may resume on either kind of machine.
    """
    from gmsdi.pipeline.engine import cpu_has_fast_bf16

    if requested == "auto":
        return ("bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"), ""
    if requested == "bf16" and not torch.cuda.is_available() and not cpu_has_fast_bf16():
        return "no", ("mixed_precision bf16: this CPU has no bf16 instructions (AMX-BF16 or AVX-512-BF16), where "
                      "bf16 is emulated (a training step about 20x slower than in fp32): training in fp32 instead")
    return requested, ""


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) the run `cfg.name`; returns the last logged values."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    mp, note = resolve_mixed_precision(cfg.mixed_precision)
    if note:
        print(note, flush=True)
    check_source(cfg.data)
    accelerator = Accelerator(mixed_precision=mp)
    if cfg.time_budget_s > 0 and accelerator.num_processes > 1:
        raise ValueError("time_budget_s plans the run from one process's clock; with several processes set "
                         "max_steps instead")
    device = accelerator.device
    if device.type == "cuda":  # fixed shapes: let cuDNN pick its fastest convolutions
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    run = cfg.run_dir
    if accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        ensure_data(cfg)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)

    ckpt_path = run / "ckpt.pt"
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.is_file() else None
    model_cfg = ModelConfig.from_dict(state["model_config"]) if state is not None else build_model_config(cfg)
    model = build_model(model_cfg, seed=cfg.seed)
    if state is None and cfg.init_from:
        source = load_model(cfg.init_from)
        try:
            grown = load_grown(model, source.state_dict(), source.model_config.unet)
        except ValueError as e:
            raise ValueError(f"init_from {cfg.init_from} does not fit this model ({e}); a run may only add a "
                             "per-bin refiner, bottleneck self-attention, residual blocks, band attention, phase "
                             "or harmonic features (after the source's) or filter taps to the source's network "
                             "(model.unet.refine_channels, self_attn_bottleneck, num_blocks, band_attn_levels, "
                             "phase_features, harmonic_features, filter_taps)"
                             ) from None
        if grown:  # each starts as a no-op, so the model starts as the source
            accelerator.print(f"init_from {cfg.init_from}: new parts start as no-ops: {', '.join(grown)}")
        old_gain, new_gain = source.model_config.unet.band_gain, model_cfg.unet.band_gain
        if old_gain != new_gain:  # the gain means something else now: relearn it, keep everything else
            model.net.unembed.reset_gain()
            accelerator.print(f"init_from {cfg.init_from}: band_gain {old_gain!r} -> {new_gain!r}, gain head zeroed")
    step = restart = 0
    if state is None and cfg.continue_from:
        step = restart = continued_state(cfg, model)
        accelerator.print(f"continued {run} from {cfg.continue_from} at step {step}; the optimizer warms up again "
                          f"over {cfg.warmup_steps} steps")
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step, restart = state["step"], state.get("restart", 0)
        accelerator.print(f"resumed {run} at step {step}")
    text_encoder = training_text_encoder(cfg, model_cfg).to(device)
    check_condition(cfg, text_encoder)
    check_schedule(cfg)

    multiple = model_cfg.unet.length_multiple
    segment = model_cfg.segment_samples
    loader = build_data(cfg, segment, cfg.max_steps, step)
    error_weight = spectral_error_weight(cfg, segment)
    if error_weight is not None:
        w_db = 10 * error_weight.weights.log10()
        accelerator.print(f"loss weighed per frequency (α {cfg.loss_spectral_alpha:g}): bin weights "
                          f"{w_db.min():.1f} to {w_db.max():.1f} dB around their mean")
    loss_module = LossModule(model, error_weight)
    loss_module, opt, loader = accelerator.prepare(loss_module, opt, loader)
    ema.to(device)
    validator = (Validator(cfg, segment, text_encoder, device)
                 if accelerator.is_main_process and cfg.val_every > 0 else None)
    if accelerator.is_main_process and state is None:
        (run / "config.yaml").write_text(yaml.safe_dump(asdict(cfg)))
        n_params = sum(p.numel() for p in model.parameters())
        submix = "ON (this changes the data setting)" if cfg.data.submix else "off"
        accelerator.print(f"model: {n_params / 1e6:.2f} M parameters; segment {segment} samples; "
                          f"mixed precision {mp}; submix {submix}")
        if cfg.data.source != "mixtures":
            accelerator.print(f"data source {cfg.data.source} (a baseline: it sees separated stems of "
                              f"{', '.join(cfg.data.stem_classes)})")

    rng = np.random.default_rng([cfg.seed, step])
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1_000_003 + step)
    # The noise is drawn where it is used (on a GPU, a CPU draw of a large batch costs as much as a step).
    gen_noise = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
    t_start, step0, budget_marks = time.perf_counter(), step, {}
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not accelerator.is_main_process, desc=cfg.name,
               dynamic_ncols=True)
    last: dict = {}
    t_last, loss_acc, n_acc = time.perf_counter(), 0.0, 0
    for batch in loader:
        if step >= cfg.max_steps:
            break
        prompts = []
        for tags, prompt in zip(batch["tags"], batch["prompt"], strict=True):
            if rng.random() < cfg.p_uncond:
                prompts.append("")
            elif cfg.p_tag_subset > 0 and len(tags) > 1 and rng.random() < cfg.p_tag_subset:
                keep = rng.choice(len(tags), size=int(rng.integers(1, len(tags))), replace=False)
                prompts.append(compose([class_phrase(tags[k]) for k in sorted(keep)], rng))
            else:
                prompts.append(prompt)
        x = batch["audio"].to(device)
        cond = conditioning(cfg, text_encoder, batch["audio"], prompts, device)
        if cfg.gain_db != (0.0, 0.0):
            lo, hi = cfg.gain_db
            gain_db = lo + (hi - lo) * torch.rand(len(x), generator=gen)
            x = x * (10 ** (gain_db / 20)).to(device)[:, None, None]
        sigma = model.sample_training_sigmas(len(x), generator=gen).to(device)
        noise = torch.randn(x.shape, generator=gen_noise, device=gen_noise.device)
        lr = learning_rate(cfg, step, restart)
        for group in opt.param_groups:
            group["lr"] = lr
        with accelerator.autocast():
            loss = loss_module(x, sigma, cond, noise).mean()
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(loss_module.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(list(ema.parameters()),
                                 list(accelerator.unwrap_model(loss_module).denoiser.parameters()), 1 - decay)
        loss_acc += loss.item()
        n_acc += 1
        bar.update(1)
        if cfg.time_budget_s > 0:
            fit_time_budget(cfg, step, step0, t_start, budget_marks)
        if not accelerator.is_main_process:
            continue
        if step % cfg.log_every == 0:
            now = time.perf_counter()
            last = {"step": step, "loss": loss_acc / n_acc, "lr": lr, "grad_norm": float(grad_norm),
                    "sec_per_step": (now - t_last) / n_acc, "time": time.time()}
            append_csv(run / "train.csv", last)
            bar.set_postfix(loss=f"{last['loss']:.4f}", s_per_step=f"{last['sec_per_step']:.2f}")
            t_last, loss_acc, n_acc = now, 0.0, 0
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            save_checkpoint(ckpt_path, {
                "config": asdict(cfg), "model_config": model_cfg.to_dict(), "step": step, "restart": restart,
                "model": accelerator.unwrap_model(loss_module).denoiser.state_dict(),
                "ema": ema.state_dict(), "optimizer": opt.state_dict()})
        if validator is not None and (step % cfg.val_every == 0 or step == cfg.max_steps):
            losses, sens = validator.run(ema)
            append_csv(run / "val.csv", {"step": step, **{f"loss@{s}": v for s, v in losses.items()}})
            for s, kinds in sens.items():
                append_csv(run / "sensitivity.csv", {"step": step, "sigma": s, **kinds})
            ratio = np.mean([k["wrong_over_own"] for k in sens.values()]) if sens else math.nan
            tqdm.write(f"step {step}: val loss {np.mean(list(losses.values())):.4f}, "
                       f"prompt sensitivity wrong/own {ratio:.3f}")
            last.update({"val_loss": float(np.mean(list(losses.values()))), "wrong_over_own": float(ratio)})
        if cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.max_steps):
            write_samples(ema, cfg, text_encoder, step, device, multiple)
    bar.close()
    accelerator.wait_for_everyone()
    return last


def get_parser() -> argparse.ArgumentParser:
    p = run_parser(__doc__, "write the run's EMA weights as an inference checkpoint and exit")
    p.add_argument("--export-dtype", choices=("fp32", "bf16"), default="fp32",
                   help="storage dtype of the exported weights (bf16 halves the file)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        if args.export:
            dtype = {"fp32": None, "bf16": torch.bfloat16}[args.export_dtype]
            print(f"wrote {export(cfg, args.export, dtype)}")
            return 0
        last = train(cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print({k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
