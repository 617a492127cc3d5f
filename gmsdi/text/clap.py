"""LAION-CLAP as GMSDI's contrastive encoder `E_contr` (METHOD.md §2), from local files only.

The paper conditions its no-tag model on LAION-CLAP: `z = E_contr(y)` of the mixture audio in
training, the text-branch embedding of each source's prompt at inference. `LaionClapEncoder`
offers the interface of our own `gmsdi.text.contrastive.ContrastiveEncoder`:

    encode(prompts)      -> TextEmbedding, tokens [B, 1, D] = pooled [B, D], L2-normalised
    encode_audio(wave)   -> the same layout from waveforms [B, T] (resampled to 48 kHz)

so it can stand in for it anywhere (`model.text_encoder: "clap:PATH"` in a training config).

Two kinds of files load, and nothing is downloaded:

* a directory in Hugging Face CLAP format (a local copy of e.g. `laion/clap-htsat-unfused` or
  `laion/larger_clap_music`): `config.json` (model_type "clap"), the weights, the tokenizer files
  and `preprocessor_config.json`. It runs with transformers' `ClapModel`, which gmsdi already
  depends on; nothing extra is needed.
* an original LAION checkpoint (`.pt`, e.g. `music_audioset_epoch_15_esc_90.14.pt`): needs the
  `laion_clap` package (`pip install "gmsdi[clap]"`) and a local copy of `roberta-base`, which
  laion_clap builds its text branch from. laion_clap needs torchvision and numpy<2, so it usually
  lives in a separate environment; converting the checkpoint once with transformers'
  `convert_clap_original_pytorch_to_hf.py` and passing the directory avoids it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gmsdi.text.base import CachedPromptEncoder, import_transformers
from gmsdi.text.embedding import TextEmbedding

CLAP_SAMPLE_RATE = 48000
"""The rate (Hz) LAION-CLAP's audio branch was trained at."""

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")
PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
HF_LAYOUT = (
    "a Hugging Face CLAP directory holds config.json (model_type 'clap'), the weights (model.safetensors "
    "or pytorch_model.bin), the tokenizer (tokenizer.json, or vocab.json + merges.txt, with "
    "tokenizer_config.json) and preprocessor_config.json; save all of them from a machine with the model, "
    "e.g. ClapModel/ClapProcessor.from_pretrained('laion/clap-htsat-unfused').save_pretrained(DIR)"
)
PACKAGE_HINT = (
    'install the optional extra with `pip install "gmsdi[clap]"` (laion_clap needs torchvision and '
    "numpy<2, so use a separate environment), or convert the checkpoint once to the Hugging Face format "
    "with transformers' convert_clap_original_pytorch_to_hf.py and pass that directory instead"
)


def _missing_hf_files(path: Path) -> list[str]:
    """What a Hugging Face CLAP directory lacks, as readable descriptions (empty when complete)."""
    names = {p.name for p in path.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not names & set(WEIGHT_FILES):
        missing.append("weights (" + " or ".join(WEIGHT_FILES[::2]) + ")")
    if not names & set(TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json, or vocab.json + merges.txt)")
    elif "vocab.json" in names and "tokenizer.json" not in names and "merges.txt" not in names:
        missing.append("merges.txt (the BPE merges that go with vocab.json)")
    if not names & set(PREPROCESSOR_FILES):
        missing.append("preprocessor_config.json (the ClapFeatureExtractor settings)")
    return missing


@contextlib.contextmanager
def _fixed_rng(seed: int = 0) -> Iterator[None]:
    """Seeds numpy's and Python's global RNGs for the block, then restores them.

    CLAP's feature extraction draws from them (the crop of audio longer than 10 s; for fusion
    models, which item of a short batch takes the fusion path), so the same audio always gets the
    same embedding and the caller's random streams are left as they were.
    """
    # The legacy global RNG on purpose: it is the one the feature extractors draw from.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


@contextlib.contextmanager
def _roberta_base_at(text_model_path: Path) -> Iterator[None]:
    """Makes `from_pretrained("roberta-base")` load `text_model_path` for the block.

    transformers reads a name that is an existing directory as a local model, so the block runs
    in a temporary working directory whose `roberta-base` links to `text_model_path`.
    """
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="gmsdi-clap-") as tmp:
        os.symlink(text_model_path.resolve(), Path(tmp) / "roberta-base", target_is_directory=True)
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(cwd)


def _as_batch(wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    wave = torch.as_tensor(wave)
    if wave.ndim == 3 and wave.shape[1] == 1:
        wave = wave[:, 0]
    if wave.ndim != 2:
        raise ValueError(f"expected audio [B, T] or [B, 1, T], got {tuple(wave.shape)}")
    return wave


class _HFClap(nn.Module):
    """transformers' `ClapModel` with its tokenizer and feature extractor."""

    def __init__(self, model: nn.Module, tokenizer: Any, feature_extractor: Any, max_length: int) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        cfg = model.config
        self.dim = int(cfg.projection_dim)
        self.sample_rate = int(feature_extractor.sampling_rate)
        # RoBERTa numbers positions from pad_token_id + 1, so that many fewer tokens fit.
        room = int(cfg.text_config.max_position_embeddings) - int(cfg.text_config.pad_token_id or 0) - 1
        self.max_length = max(2, min(max_length, room))
        self.truncation = "fusion" if cfg.audio_config.enable_fusion else "rand_trunc"

    @staticmethod
    def _pooled(out: Any) -> torch.Tensor:
        # transformers >= 5 returns an output object whose pooler_output is the projected
        # embedding; older versions return the embedding tensor itself.
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def text(self, prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        device = next(self.model.parameters()).device
        out = self.model.get_text_features(input_ids=batch["input_ids"].to(device),
                                           attention_mask=batch["attention_mask"].to(device))
        return self._pooled(out)

    def audio(self, wave: np.ndarray) -> torch.Tensor:
        with _fixed_rng():
            feats = self.feature_extractor(list(wave), sampling_rate=self.sample_rate, truncation=self.truncation,
                                           return_tensors="pt")
        p = next(self.model.parameters())
        out = self.model.get_audio_features(input_features=feats["input_features"].to(p.device, p.dtype),
                                            is_longer=feats["is_longer"].to(p.device))
        return self._pooled(out)


class _OriginalClap(nn.Module):
    """laion_clap's `CLAP_Module` holding an original LAION checkpoint."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.sample_rate = CLAP_SAMPLE_RATE
        with torch.no_grad():  # laion_clap does not say D; one prompt tells it
            self.dim = int(self.text(["music"]).shape[-1])

    def text(self, prompts: list[str]) -> torch.Tensor:
        return self.module.get_text_embedding(prompts, use_tensor=True)

    def audio(self, wave: np.ndarray) -> torch.Tensor:
        with _fixed_rng():
            return self.module.get_audio_embedding_from_data(x=torch.from_numpy(wave), use_tensor=True)


class LaionClapEncoder(CachedPromptEncoder):
    """A frozen LAION-CLAP model as a `PromptEncoder` with an audio branch (`E_contr`).

    Build with `from_pretrained(path)`. Both branches give one-token `TextEmbedding`s in CLAP's
    joint space: tokens [B, 1, D] equal to pooled [B, D], L2-normalised (D is the model's
    projection width, 512 for the LAION releases); "" is the null embedding.

    Attributes:
        dim: D.
        sample_rate: the rate (Hz) the audio branch expects, 48000; `encode_audio` resamples
            audio given at another rate.
        source_path: the directory or checkpoint it was loaded from.

    Args:
        backend: the loaded model (built by `from_pretrained`).
        source_path: where it came from.
        cache_size: LRU cache of encoded prompts; 0 disables it.
        batch_size: prompts per text-branch call when many are new.
    """

    def __init__(self, backend: nn.Module, source_path: str, cache_size: int = 4096, batch_size: int = 64) -> None:
        super().__init__(cache_size=cache_size)
        self.backend = backend
        self.backend.requires_grad_(False)
        self.dim = int(backend.dim)
        self.sample_rate = int(backend.sample_rate)
        self.source_path = source_path
        self.batch_size = batch_size
        self.train(False)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        device: torch.device | str = "cpu",
        text_model_path: str | os.PathLike[str] | None = None,
        amodel: str | None = None,
        enable_fusion: bool | None = None,
        max_length: int = 77,
        cache_size: int = 4096,
        batch_size: int = 64,
    ) -> LaionClapEncoder:
        """Loads LAION-CLAP from local files; nothing is downloaded.

        Args:
            path: a Hugging Face CLAP directory (config.json, weights, tokenizer files,
                preprocessor_config.json), or an original LAION checkpoint file (.pt).
            device: where the model goes.
            text_model_path: for a .pt checkpoint, a local roberta-base directory (config.json and
                tokenizer files: laion_clap builds its text branch from it); default a directory
                `roberta-base` next to the checkpoint. Unused for a Hugging Face directory.
            amodel: for a .pt checkpoint, laion_clap's audio model name; default "HTSAT-tiny"
                for the 630k-* checkpoints and "HTSAT-base" for the others (music_*, *_speech_*).
            enable_fusion: for a .pt checkpoint, whether it is a fusion model; default whether
                its file name contains "fusion".
            max_length: token budget per prompt (77 as LAION-CLAP's tokenizer); longer prompts
                are cut.
            cache_size: LRU cache of encoded prompts; 0 disables it.
            batch_size: prompts per text-branch call when many are new.

        Raises:
            FileNotFoundError: `path` (or `text_model_path`) does not exist, or the directory
                lacks files (they are listed).
            ValueError: the directory holds another kind of model, the file is no checkpoint,
                or a .pt checkpoint has no roberta-base directory.
            ImportError: a .pt checkpoint without the laion_clap package.
        """
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(
                f"no LAION-CLAP model at {str(p)!r}; pass a local Hugging Face CLAP directory or an original "
                "LAION .pt checkpoint (nothing is downloaded)"
            )
        if p.is_dir():
            backend = cls._load_hf(p, max_length)
        elif p.suffix.lower() in CHECKPOINT_SUFFIXES:
            backend = cls._load_original(p, text_model_path, amodel, enable_fusion, device)
        else:
            raise ValueError(
                f"{str(p)!r} is neither a directory nor a LAION checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}); "
                f"{HF_LAYOUT}"
            )
        return cls(backend, str(p), cache_size=cache_size, batch_size=batch_size).to(device)

    @staticmethod
    def _load_hf(path: Path, max_length: int) -> _HFClap:
        config = path / "config.json"
        if config.is_file():  # the kind of model first: another model lacks more than files
            try:
                model_type = json.loads(config.read_text()).get("model_type")
            except (OSError, ValueError, AttributeError) as e:
                raise ValueError(f"{str(config)!r} is not a readable JSON model config: {e}") from e
            if model_type != "clap":
                raise ValueError(
                    f"{str(path)!r} holds a {model_type!r} model, not CLAP (config.json model_type must be "
                    "'clap'); a plain text encoder directory is used as `model.text_encoder: PATH` without the "
                    "'clap:' prefix"
                )
        missing = _missing_hf_files(path)
        if missing:
            raise FileNotFoundError(
                f"the LAION-CLAP directory {str(path)!r} lacks {', '.join(missing)}; {HF_LAYOUT}"
            )
        transformers = import_transformers()
        model = transformers.ClapModel.from_pretrained(str(path), local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        feature_extractor = transformers.ClapFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        return _HFClap(model.eval(), tokenizer, feature_extractor, max_length)

    @staticmethod
    def _load_original(path: Path, text_model_path: str | os.PathLike[str] | None, amodel: str | None,
                       enable_fusion: bool | None, device: torch.device | str) -> _OriginalClap:
        if text_model_path is None:
            sibling = path.parent / "roberta-base"
            if not sibling.is_dir():
                raise ValueError(
                    f"the LAION checkpoint {str(path)!r} needs a local roberta-base directory (laion_clap builds "
                    "its text branch and tokenizer from it): pass text_model_path=DIR or put it next to the "
                    f"checkpoint as {str(sibling)!r}"
                )
            text_model_path = sibling
        text_dir = Path(text_model_path)
        if not (text_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"no roberta-base model at {str(text_dir)!r} (a directory with config.json, vocab.json, merges.txt "
                "and the weights, e.g. saved with RobertaModel/RobertaTokenizer.save_pretrained)"
            )
        # transformers must not try the network for "roberta-base" (HF_HUB_OFFLINE before the import).
        import_transformers()
        ckpt = str(path.resolve())
        name = path.name.lower()
        amodel = amodel or ("HTSAT-tiny" if name.startswith("630k") else "HTSAT-base")
        enable_fusion = "fusion" in name if enable_fusion is None else enable_fusion
        with _roberta_base_at(text_dir):
            try:
                import laion_clap
            except ImportError as e:
                raise ImportError(f"loading the LAION checkpoint {ckpt!r} needs the laion_clap package ({e}); "
                                  f"{PACKAGE_HINT}") from e
            module = laion_clap.CLAP_Module(enable_fusion=enable_fusion, amodel=amodel, device=str(device))
            module.load_ckpt(ckpt, verbose=False)
        return _OriginalClap(module.eval())

    # -- the PromptEncoder interface -------------------------------------------------------------
    def _encode_uncached(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        with torch.no_grad():
            for start in range(0, len(prompts), self.batch_size):
                emb = F.normalize(self.backend.text(prompts[start : start + self.batch_size]).float(), dim=-1).cpu()
                out.extend((e[None].clone(), e.clone()) for e in emb)
        return out

    def audio_features(self, wave: torch.Tensor | np.ndarray, sample_rate: int | None = None) -> torch.Tensor:
        """Waveforms [B, T] or [B, 1, T] -> L2-normalised CLAP audio embeddings [B, D] (no gradients).

        Args:
            wave: float audio in [-1, 1].
            sample_rate: its rate (Hz); default `self.sample_rate` (48000). Other rates are resampled.
                Audio shorter than 10 s is repeated and padded to 10 s; longer audio is cropped to
                10 s (or, for fusion models, fused), as LAION-CLAP does.
        """
        from gmsdi.audio import resample

        wave = _as_batch(wave).detach().float().cpu().numpy()
        rate = self.sample_rate if sample_rate is None else int(sample_rate)
        wave = np.stack([resample(w, rate, self.sample_rate) for w in wave]).astype(np.float32)
        with torch.no_grad():
            return F.normalize(self.backend.audio(wave).float(), dim=-1)

    @torch.no_grad()
    def encode_audio(self, wave: torch.Tensor | np.ndarray, sample_rate: int | None = None,
                     device: torch.device | str | None = None) -> TextEmbedding:
        """Audio-branch conditioning z = E_contr(y) for B waveforms.

        Args:
            wave: [B, T] or [B, 1, T] float audio.
            sample_rate: its rate (Hz); default `self.sample_rate` (48000). Other rates are resampled.
            device: where the result goes; default the encoder's device.

        Returns:
            `TextEmbedding` with tokens [B, 1, D], an all-True mask and pooled [B, D].
        """
        emb = self.audio_features(wave, sample_rate=sample_rate).cpu()
        emb_ = TextEmbedding(tokens=emb[:, None], mask=torch.ones(len(emb), 1, dtype=torch.bool), pooled=emb)
        return emb_.to(device if device is not None else self.device)

    def extra_repr(self) -> str:
        return f"source_path={self.source_path!r}, dim={self.dim}, sample_rate={self.sample_rate}"


__all__ = ["CLAP_SAMPLE_RATE", "LaionClapEncoder"]
