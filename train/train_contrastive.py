"""Train the contrastive text–audio encoder E_contr on SynthSlakh mixture crops and their tag prompts.

The encoder (`gmsdi.text.contrastive`) maps mixture audio and prompts into one space with the
symmetric InfoNCE loss; crops with the same instrument set are positives of each other. A GMSDI
model can then train on mixtures with **no tags** by conditioning on the audio branch
(`train/configs/notags.yaml`, issue #8), and generate from the text branch at inference.

    # CPU smoke run (renders a tiny SynthSlakh set first if missing)
    python train/train_contrastive.py --config train/configs/contrastive_tiny.yaml
    # the bundled encoder (data: python -m gmsdi.data.synth --preset default --out data/synthslakh)
    nohup python train/train_contrastive.py --config train/configs/contrastive.yaml > runs/contrastive.log 2>&1 &
    python train/train_contrastive.py --config train/configs/contrastive.yaml \\
        --export assets/contrastive-synthslakh.safetensors
    # its retrieval and zero-shot figures on the test split (docs/RESULTS.md)
    python -m gmsdi.eval retrieval

The training crops are read once and kept as log-mel spectrograms (runs/<name>/features-*.pt),
with a random gain of ±gain_db applied per crop and step. Outputs in runs/<name>/: ckpt.pt
(written atomically; rerun to resume), train.csv, val.csv (validation recall and presence AUC).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from gmsdi.eval import retrieval  # noqa: E402
from gmsdi.text.contrastive import ContrastiveEncoder, build_contrastive, contrastive_loss  # noqa: E402
from gmsdi.training import append_csv, ensure_synthslakh, run_parser, save_checkpoint  # noqa: E402


@dataclass
class ContrastiveTrainConfig:
    """Everything a run needs; its checkpoint stores it, so it resumes with its own settings."""

    name: str = "contrastive"
    out_dir: str = "runs"
    encoder: dict = field(default_factory=lambda: {"preset": "default"})
    root: str = "data/synthslakh"
    render_tracks: int = 0  # render a SynthSlakh set of this many tracks into `root` if it is empty
    crop_seconds: float = 2.048
    train_crops: int = 20000
    val_crops: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    max_steps: int = 3000
    gain_db: float = 6.0
    log_every: int = 25
    ckpt_every: int = 250
    val_every: int = 500
    seed: int = 0


def load_config(path: Path | None, overrides: list[str]) -> ContrastiveTrainConfig:
    data = yaml.safe_load(path.read_text()) if path else {}
    data = data or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set expects KEY=VALUE, got {item!r}")
        data[key] = yaml.safe_load(value)
    known = {f.name for f in fields(ContrastiveTrainConfig)}
    unknown = set(data) - known
    if unknown:
        raise SystemExit(f"error: unknown config fields {sorted(unknown)}; valid: {sorted(known)}")
    return ContrastiveTrainConfig(**data)


@torch.no_grad()
def features(encoder: ContrastiveEncoder, cfg: ContrastiveTrainConfig, split: str, n: int, seed: int,
             cache: Path) -> dict:
    """Log-mels (float16 [N, M, F]), tags and prompts of N crops of a split, cached in `cache`."""
    if cache.exists():
        return torch.load(cache, weights_only=False)
    mels, tags, prompts, pooled = [], [], [], []
    bar = tqdm(total=n, desc=f"reading {split} crops", dynamic_ncols=True)
    for audio, t, p in retrieval.iter_crops(cfg.root, split, n, seed=seed, crop_seconds=cfg.crop_seconds,
                                            sample_rate=encoder.sample_rate, batch_size=64):
        keep = [i for i, tt in enumerate(t) if tt]  # a crop with nothing playing has no prompt to pair
        mels.append(encoder.audio.logmel(audio[keep]).half())
        tags += [t[i] for i in keep]
        prompts += [p[i] for i in keep]
        pooled.append(encoder.text_base.encode([p[i] for i in keep]).pooled.half())
        bar.update(len(t))
    bar.close()
    # The base text encoder is frozen, so its pooled vectors are computed once here.
    out = {"logmel": torch.cat(mels), "tags": tags, "prompts": prompts, "text_base": torch.cat(pooled)}
    save_checkpoint(cache, out)
    return out


@torch.no_grad()
def validate(encoder: ContrastiveEncoder, val: dict) -> dict:
    encoder.train(False)
    emb = torch.cat([encoder.logmel_features(m.float()) for m in val["logmel"].split(256)])
    rec = retrieval.retrieval_recall(emb, val["tags"], encoder)
    classes = sorted({c for t in val["tags"] for c in t})
    scores = retrieval.presence_scores(emb, classes, encoder)
    # the mean AUC over the classes that have one (the thresholds do not enter it)
    auc = retrieval.presence_metrics(scores, val["tags"], classes, np.zeros(len(classes)))["mean"]["auc"]
    encoder.train(True)
    return {**{k: v for k, v in rec.items() if "@" in k}, "presence_auc": auc}


def train(cfg: ContrastiveTrainConfig) -> Path:
    run = Path(cfg.out_dir) / cfg.name
    run.mkdir(parents=True, exist_ok=True)
    ckpt_path = run / "ckpt.pt"
    # A rerun resumes with the config it is given (e.g. a larger max_steps); the encoder's shape
    # must match the checkpoint's.
    state = torch.load(ckpt_path, weights_only=False) if ckpt_path.exists() else None
    ensure_synthslakh(cfg.root, "train", cfg.render_tracks)
    enc_cfg = dict(cfg.encoder)
    encoder = build_contrastive(enc_cfg.pop("preset", "default"), seed=cfg.seed, **enc_cfg)
    params = [p for n, p in encoder.named_parameters() if not n.startswith("text_base.")]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if state is not None:
        encoder.load_state_dict(state["encoder"], strict=False)
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"resumed {run} at step {step}", flush=True)
    else:
        (run / "config.yaml").write_text(yaml.safe_dump(asdict(cfg)))
    n_params = sum(p.numel() for p in params)
    print(f"contrastive encoder: {n_params / 1e6:.2f} M trained parameters (the base text encoder is frozen)")
    tr = features(encoder, cfg, "train", cfg.train_crops, cfg.seed, run / "features-train.pt")
    val = features(encoder, cfg, "validation", cfg.val_crops, cfg.seed + 1, run / "features-validation.pt")
    groups = [tuple(t) for t in tr["tags"]]
    n = len(groups)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    encoder.train(True)
    bar = tqdm(total=cfg.max_steps, initial=step, desc=cfg.name, dynamic_ncols=True)
    t_last, acc, count = time.perf_counter(), 0.0, 0
    while step < cfg.max_steps:
        idx = torch.randint(n, (min(cfg.batch_size, n),), generator=gen)
        mel = tr["logmel"][idx].float()
        gain_db = (torch.rand(len(idx), 1, 1, generator=gen) * 2 - 1) * cfg.gain_db
        mel = mel + gain_db * (math.log(10) / 10)  # a gain of g dB adds g·ln(10)/10 to a log power
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / cfg.max_steps))
        for g in opt.param_groups:
            g["lr"] = lr
        loss = contrastive_loss(encoder.logmel_features(mel), encoder.project_text(tr["text_base"][idx].float()),
                                encoder.logit_scale,
                                groups=[groups[i] for i in idx.tolist()])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        acc, count = acc + loss.item(), count + 1
        bar.update(1)
        if step % cfg.log_every == 0:
            now = time.perf_counter()
            row = {"step": step, "loss": acc / count, "lr": lr, "temperature": encoder.logit_scale.exp().item(),
                   "sec_per_step": (now - t_last) / count, "time": time.time()}
            append_csv(run / "train.csv", row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            t_last, acc, count = now, 0.0, 0
        if step % cfg.val_every == 0 or step == cfg.max_steps:
            metrics = validate(encoder, val)
            append_csv(run / "val.csv", {"step": step, **metrics})
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            save_checkpoint(ckpt_path, {"config": asdict(cfg), "step": step, "optimizer": opt.state_dict(),
                                     "encoder": {k: v for k, v in encoder.state_dict().items()
                                                 if not k.startswith("text_base.")}})
    bar.close()
    return ckpt_path


def export(cfg: ContrastiveTrainConfig, out: Path) -> Path:
    ckpt_path = Path(cfg.out_dir) / cfg.name / "ckpt.pt"
    if not ckpt_path.exists():
        raise FileNotFoundError(f"no checkpoint at {ckpt_path}; train first")
    state = torch.load(ckpt_path, weights_only=False)
    cfg = ContrastiveTrainConfig(**state["config"])
    enc_cfg = dict(cfg.encoder)
    encoder = build_contrastive(enc_cfg.pop("preset", "default"), seed=cfg.seed, **enc_cfg)
    encoder.load_state_dict(state["encoder"], strict=False)
    path = encoder.save(out, metadata={"step": str(state["step"]), "run": cfg.name})
    print(f"wrote {path} (step {state['step']}, {path.stat().st_size / 1e6:.1f} MB)")
    return path


def get_parser() -> argparse.ArgumentParser:
    return run_parser(__doc__, "write the trained encoder (safetensors + config) instead of training")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    cfg = load_config(args.config, args.set)
    try:
        if args.export:
            export(cfg, args.export)
        else:
            train(cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
