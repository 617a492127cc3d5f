"""How well a contrastive text–audio encoder ties prompts to mixtures.

Protocol (ours; CLAP papers use one caption per clip, our captions are tag sets):

- **Crops**: N random mixture crops of a split (`MixtureDataset`, fixed seed), each with the set
  of instrument classes active in it. Its text is the class-level prompt of that set, in sorted
  order ("bass, drums, piano").
- **text→audio recall@k**: for each crop's text, the N crops are ranked by cosine similarity; a
  hit if one of the top k has exactly the same instrument set (two crops with the same set are
  indistinguishable by text, so either is a correct answer).
- **audio→text recall@k**: for each crop, the distinct texts of the N crops are ranked; a hit if
  its own text is among the top k.
- **Zero-shot instrument presence**: for each class, the similarity of every crop to the class's
  own prompt ("bass") scores its presence. We report the ROC AUC (threshold-free) and the
  accuracy at a per-class threshold fitted on another split (`fit_thresholds`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmsdi.data.prompts import class_phrase


def iter_crops(root: str | Path, split: str, n: int, seed: int = 0, crop_seconds: float = 2.048,
               sample_rate: int = 16000, batch_size: int = 64, num_workers: int = 0,
               ) -> Iterator[tuple[torch.Tensor, list[list[str]], list[str]]]:
    """N random mixture crops of a split in batches: (audio [b, T], tags, training-style prompts).

    The crops are `MixtureDataset`'s (track ∝ length, start redrawn while nothing plays), the
    same for the same seed; the prompts name the active instruments at random granularity.
    """
    from torch.utils.data import DataLoader

    from gmsdi.data import slakh

    ds = slakh.MixtureDataset(root, split, sample_rate=sample_rate, crop_seconds=crop_seconds, crops_per_epoch=n,
                              seed=seed, activity_cache=Path(root) / ".activity")
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=slakh.collate_mixtures)
    for batch in loader:
        yield batch["audio"][:, 0], batch["tags"], batch["prompt"]


@torch.no_grad()
def embed_crops(encoder: Any, root: str | Path, split: str, n: int, seed: int = 0, batch_size: int = 64,
                ) -> tuple[torch.Tensor, list[list[str]]]:
    """Audio-branch embeddings [N, D] of N crops of a split (`iter_crops`) and their tags."""
    embs, tags = [], []
    for audio, t, _ in iter_crops(root, split, n, seed=seed, sample_rate=encoder.sample_rate,
                                  batch_size=batch_size):
        embs.append(encoder.encode_audio(audio).pooled.cpu())
        tags += t
    return torch.cat(embs), tags


def evaluate_encoder(encoder: Any, root: str | Path, split: str = "test", fit_split: str = "validation",
                     crops: int = 1000, seed: int = 0, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Retrieval recall@1/@5 both ways and zero-shot presence on `split`; thresholds fitted on `fit_split`.

    Args:
        encoder: a contrastive encoder (`encode`, `encode_audio`, `sample_rate`).
        root: a Slakh-format data set.
        split, fit_split: the evaluated split and the one the presence thresholds come from.
        crops: N crops per split (2.048 s each).
        seed: the crops' seed.
        classes: the classes scored for presence; default those active in the evaluated crops.
    """
    audio, tags = embed_crops(encoder, root, split, crops, seed=seed)
    fit_audio, fit_tags = embed_crops(encoder, root, fit_split, crops, seed=seed + 1)
    if classes is None:
        classes = sorted({c for t in tags for c in t})
    thresholds = fit_thresholds(presence_scores(fit_audio, classes, encoder), fit_tags, classes)
    return {"split": split, "fit_split": fit_split, "seconds": 2.048,
            "retrieval": retrieval_recall(audio, tags, encoder),
            "presence": presence_metrics(presence_scores(audio, classes, encoder), tags, classes, thresholds)}


def tag_text(tags: Sequence[str]) -> str:
    """The class-level prompt of an instrument set, in sorted order: ("piano", "bass") -> "bass, piano"."""
    return ", ".join(class_phrase(t) for t in sorted(tags))


def retrieval_recall(audio: torch.Tensor, tags: Sequence[Sequence[str]], text_encoder: Any,
                     ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Recall@k both ways over N crops.

    Args:
        audio: L2-normalised audio embeddings [N, D].
        tags: the N crops' active instrument classes.
        text_encoder: has `encode(prompts) -> TextEmbedding` whose pooled rows share the audio space.
        ks: the k of recall@k.

    Returns:
        {"text_to_audio_r@k": ..., "audio_to_text_r@k": ..., "crops": N, "texts": distinct texts}.
    """
    texts = [tag_text(t) for t in tags]
    unique = sorted(set(texts))
    index = {t: i for i, t in enumerate(unique)}
    text_emb = text_encoder.encode(unique).pooled.float().cpu()  # [U, D]
    audio = audio.float().cpu()
    sims = text_emb @ audio.T  # [U, N]
    crop_text = torch.tensor([index[t] for t in texts])  # [N]
    out: dict[str, float] = {"crops": len(texts), "texts": len(unique)}
    queries = crop_text  # one text query per crop, as in CLAP's per-caption protocol
    order = sims[queries].argsort(dim=1, descending=True)  # [N, N]
    ranked_text = crop_text[order]
    order_t = sims.T.argsort(dim=1, descending=True)  # [N, U]
    for k in ks:
        out[f"text_to_audio_r@{k}"] = float((ranked_text[:, :k] == queries[:, None]).any(dim=1).float().mean())
        out[f"audio_to_text_r@{k}"] = float((order_t[:, :k] == crop_text[:, None]).any(dim=1).float().mean())
    return out


def presence_scores(audio: torch.Tensor, classes: Sequence[str], text_encoder: Any) -> np.ndarray:
    """Cosine similarity of each crop to each class's prompt: [N, C]."""
    text = text_encoder.encode([class_phrase(c) for c in classes]).pooled.float().cpu()
    return (audio.float().cpu() @ text.T).numpy()


def _labels(tags: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    return np.array([[c in t for c in classes] for t in tags], dtype=bool)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The area under the ROC curve (Mann-Whitney U with ties split); NaN if one class is absent."""
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def fit_thresholds(scores: np.ndarray, tags: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """Per class, the similarity threshold with the best balanced accuracy on these crops: [C]."""
    labels = _labels(tags, classes)
    out = np.zeros(len(classes))
    for c in range(len(classes)):
        s, y = scores[:, c], labels[:, c]
        cands = np.unique(s)
        if not y.any() or y.all():
            out[c] = np.inf if not y.any() else -np.inf
            continue
        best = max(cands, key=lambda t: (s[y] >= t).mean() + (s[~y] < t).mean())
        out[c] = best
    return out


def presence_metrics(scores: np.ndarray, tags: Sequence[Sequence[str]], classes: Sequence[str],
                     thresholds: np.ndarray) -> dict[str, Any]:
    """Per class and mean: ROC AUC, accuracy and balanced accuracy at `thresholds`, prevalence."""
    labels = _labels(tags, classes)
    per = {}
    for c, name in enumerate(classes):
        y, pred = labels[:, c], scores[:, c] >= thresholds[c]
        bal = ((pred[y].mean() if y.any() else np.nan) + ((~pred[~y]).mean() if (~y).any() else np.nan)) / 2
        per[name] = {"auc": roc_auc(scores[:, c], y), "accuracy": float((pred == y).mean()),
                     "balanced_accuracy": float(bal), "prevalence": float(y.mean())}
    keys = ("auc", "accuracy", "balanced_accuracy")
    def _mean(values: list[float]) -> float:  # over the classes that have a value (AUC needs both labels)
        values = [v for v in values if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    mean = {k: _mean([per[n][k] for n in classes]) for k in keys}
    return {"per_class": per, "mean": mean}


__all__ = ["embed_crops", "evaluate_encoder", "fit_thresholds", "iter_crops", "presence_metrics", "presence_scores",
           "retrieval_recall", "roc_auc", "tag_text"]
