"""Convert the MTT_musicnn TensorFlow checkpoint to `assets/musicnn_mtt.npz`, and verify the torch port.

Run once, in a separate environment that has TensorFlow (never in the project's .venv):

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install "tensorflow-cpu==2.15.1" "numpy<2" librosa soundfile
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0      # its metadata pins numpy<1.17; 1.26 works
    /tmp/tfenv/bin/pip install -c constraints.txt torch==2.13.0   # only for `verify`

    /tmp/tfenv/bin/python scripts/convert_musicnn.py convert     # → assets/musicnn_mtt.npz
    /tmp/tfenv/bin/python scripts/convert_musicnn.py verify      # TF vs torch on a few clips;
                                                                 # → tests/data/musicnn_reference.npz

`convert` reads the checkpoint shipped inside the musicnn wheel (`musicnn/MTT_musicnn/`), renames
and transposes its 792 k parameters to the names of `gmsdi.eval.musicnn.MusiCNNExtractor`, and adds
librosa's mel filter bank (so the port needs no librosa) and the tag names. Adam slots are dropped.

`verify` runs the original `musicnn.extractor.extractor` (librosa front-end + TF graph) and the torch
port on the same clips: SynthSlakh test mixtures if `data/synthslakh` exists, plus synthetic clips.
It reports the max abs difference of the penultimate / pooled features and of the taggram, twice:
network only (the torch net fed musicnn's own log-mel patches) and end to end (the torch front-end
too). It stores one clip, its TF log-mel patch and the TF outputs in tests/data/musicnn_reference.npz
so that the tests check the port without TensorFlow. Everything runs on one thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "assets" / "musicnn_mtt.npz"
REFERENCE = ROOT / "tests" / "data" / "musicnn_reference.npz"
OUTPUTS = ("penultimate", "max_pool", "mean_pool", "taggram")

# TF variable scope → torch module, in the order musicnn.models.build_musicnn creates the layers.
_BATCH_NORMS = {
    "batch_normalization": "net.input_bn",
    "batch_normalization_1": "net.timbral.0.bn",
    "batch_normalization_2": "net.timbral.1.bn",
    "batch_normalization_3": "net.temporal.0.bn",
    "batch_normalization_4": "net.temporal.1.bn",
    "batch_normalization_5": "net.temporal.2.bn",
    "batch_normalization_6": "net.midend_bn.0",
    "batch_normalization_7": "net.midend_bn.1",
    "batch_normalization_8": "net.midend_bn.2",
    "batch_normalization_9": "net.pool_bn",
    "batch_normalization_10": "net.dense_bn",
}
_CONV2D = {  # kernels [kT, kF, 1, C] over (time, mel) → torch Conv2d [C, 1, kT, kF]
    "conv2d": "net.timbral.0.conv",
    "conv2d_1": "net.timbral.1.conv",
    "conv2d_2": "net.temporal.0.conv",
    "conv2d_3": "net.temporal.1.conv",
    "conv2d_4": "net.temporal.2.conv",
}
_CONV1D = {  # kernels [7, C_in, 1, C_out] that span all features → torch Conv1d [C_out, C_in, 7]
    "conv2d_5": "net.midend.0",
    "conv2d_6": "net.midend.1",
    "conv2d_7": "net.midend.2",
}
_DENSE = {"dense": "net.dense", "dense_1": "net.classifier"}  # [in, out] → Linear [out, in]


def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def checkpoint_prefix() -> str:
    import musicnn

    # The wheel stores the checkpoint as MTT_musicnn/.index, .data-00000-of-00001: prefix "MTT_musicnn/".
    return os.path.join(os.path.dirname(musicnn.__file__), "MTT_musicnn") + "/"


def convert(out: Path = ASSET) -> dict[str, np.ndarray]:
    tf = _quiet_tf()
    import librosa
    from musicnn import configuration

    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint_prefix())
    get = reader.get_tensor
    state: dict[str, np.ndarray] = {}
    for scope, name in _BATCH_NORMS.items():
        state[f"{name}.weight"] = get(f"{scope}/gamma")
        state[f"{name}.bias"] = get(f"{scope}/beta")
        state[f"{name}.running_mean"] = get(f"{scope}/moving_mean")
        state[f"{name}.running_var"] = get(f"{scope}/moving_variance")
    for scope, name in _CONV2D.items():
        state[f"{name}.weight"] = get(f"{scope}/kernel").transpose(3, 2, 0, 1)
        state[f"{name}.bias"] = get(f"{scope}/bias")
    for scope, name in _CONV1D.items():
        state[f"{name}.weight"] = get(f"{scope}/kernel")[:, :, 0, :].transpose(2, 1, 0)
        state[f"{name}.bias"] = get(f"{scope}/bias")
    for scope, name in _DENSE.items():
        state[f"{name}.weight"] = get(f"{scope}/kernel").T
        state[f"{name}.bias"] = get(f"{scope}/bias")
    model_vars = {k for k in reader.get_variable_to_shape_map() if "Adam" not in k and "power" not in k}
    used = {f"{s}/{v}" for s in _BATCH_NORMS for v in ("gamma", "beta", "moving_mean", "moving_variance")}
    used |= {f"{s}/{v}" for s in (*_CONV2D, *_CONV1D, *_DENSE) for v in ("kernel", "bias")}
    if model_vars != used:
        raise RuntimeError(f"checkpoint variables not mapped: {sorted(model_vars ^ used)}")
    state["frontend.mel_basis"] = librosa.filters.mel(sr=configuration.SR, n_fft=configuration.FFT_SIZE,
                                                      n_mels=configuration.N_MELS)
    state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    state["labels"] = np.array(configuration.MTT_LABELS)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **state)
    n_params = sum(v.size for k, v in state.items() if k.startswith("net.") and "running" not in k)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {n_params:,} parameters, librosa {librosa.__version__})")
    return state


def _clips(n_mixes: int, seconds: float) -> list[tuple[str, np.ndarray]]:
    """Music from SynthSlakh test mixtures (when rendered) and synthetic signals, 16 kHz float32."""
    import soundfile as sf
    import soxr

    sr, n = 16_000, int(seconds * 16_000)
    clips = []
    for mix in sorted((ROOT / "data" / "synthslakh" / "test").glob("*/mix.flac"))[:n_mixes]:
        y, file_sr = sf.read(mix, dtype="float32", always_2d=True)
        y = y.mean(1)
        if file_sr != sr:
            y = soxr.resample(y, file_sr, sr).astype(np.float32)
        start = min(len(y) // 3, max(0, len(y) - n))  # skip the (often sparse) intro
        clips.append((f"{mix.parent.name}/mix", y[start:start + n]))
    rng = np.random.default_rng(0)
    t = np.arange(n) / sr
    chord = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    clicks = np.zeros(n)
    clicks[:: sr // 4] = 1.0
    drums = np.convolve(clicks, np.exp(-np.arange(800) / 80) * rng.standard_normal(800), mode="same") * 0.5
    clips.append(("synthetic/chord+noise", (chord + 0.01 * rng.standard_normal(n)).astype(np.float32)))
    clips.append(("synthetic/clicks", drums.astype(np.float32)))
    clips.append(("synthetic/chirp", (0.3 * np.sin(2 * np.pi * (50 * t + 600 * t**2))).astype(np.float32)))
    return clips


def verify(n_mixes: int = 4, seconds: float = 9.0, reference: Path = REFERENCE) -> dict[str, float]:
    tf = _quiet_tf()
    import soundfile as sf
    import torch

    torch.set_num_threads(1)
    one_thread = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    session = tf.compat.v1.Session
    tf.compat.v1.Session = lambda *a, **k: session(*a, **{"config": one_thread, **k})
    from musicnn import extractor

    # musicnn 0.1.0's extractor refills 'penultimate' (and cnn1..3) with the first batch's values for
    # every later batch (a stale variable in its loop); one batch holding all patches avoids that.
    extractor.config.BATCH_SIZE = 10_000

    sys.path.insert(0, str(ROOT))
    from gmsdi.eval.musicnn import PATCH_FRAMES, load_musicnn

    port = load_musicnn(ASSET)
    worst = {f"{scope}/{k}": 0.0 for scope in ("net", "e2e") for k in (*OUTPUTS, "logmel")}
    worst.pop("net/logmel")
    stored = None
    clips = _clips(n_mixes, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        for name, wav in clips:
            path = os.path.join(tmp, "clip.wav")
            sf.write(path, wav, 16_000, subtype="FLOAT")
            taggram, _, feats = extractor.extractor(path, model="MTT_musicnn", input_length=3, extract_features=True)
            tf_out = {"taggram": taggram, **{k: feats[k] for k in OUTPUTS[:3]}}
            batch, _ = extractor.batch_data(path, PATCH_FRAMES, PATCH_FRAMES)
            with torch.no_grad():
                net = port.net(torch.from_numpy(batch.astype(np.float32)))
                e2e = port(torch.from_numpy(wav))
                logmel = port.patches(torch.from_numpy(wav))
            line = [f"{name:28s} {batch.shape[0]} patches"]
            for k in OUTPUTS:
                d_net = float(np.abs(net[k].numpy() - tf_out[k]).max())
                d_e2e = float(np.abs(e2e[k].numpy() - tf_out[k]).max())
                worst[f"net/{k}"] = max(worst[f"net/{k}"], d_net)
                worst[f"e2e/{k}"] = max(worst[f"e2e/{k}"], d_e2e)
                scale = float(np.abs(tf_out[k]).max())
                line.append(f"{k} (max {scale:.2g}) net {d_net:.2e} e2e {d_e2e:.2e}")
            d_mel = float(np.abs(logmel.numpy() - batch).max())
            worst["e2e/logmel"] = max(worst["e2e/logmel"], d_mel)
            line.append(f"logmel {d_mel:.2e}; top tags {[_top(tf_out['taggram'])]}")
            print(" | ".join(line))
            if stored is None:  # the first clip (real music when rendered) becomes the test reference
                n = 48_000  # 3 s: exactly one patch
                sf.write(path, wav[:n], 16_000, subtype="FLOAT")
                taggram, _, feats = extractor.extractor(path, model="MTT_musicnn", input_length=3,
                                                        extract_features=True)
                batch, _ = extractor.batch_data(path, PATCH_FRAMES, PATCH_FRAMES)
                stored = {"name": np.array(name), "wav": wav[:n], "logmel": batch.astype(np.float32),
                          "taggram": taggram.astype(np.float32),
                          **{k: feats[k].astype(np.float32) for k in OUTPUTS[:3]}}
    reference.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(reference, **stored)
    print(f"{len(clips)} clips of {seconds:g} s; worst max abs difference over all clips and patches:")
    for k, v in worst.items():
        print(f"  {k:16s} {v:.3e}")
    print(f"wrote {reference} ({stored['name']})")
    return worst


def _top(taggram: np.ndarray, k: int = 3) -> str:
    from musicnn.configuration import MTT_LABELS

    return ", ".join(MTT_LABELS[i] for i in np.argsort(-taggram.mean(0))[:k])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("convert", help="TF checkpoint → assets/musicnn_mtt.npz")
    v = sub.add_parser("verify", help="compare the TF model and the torch port; write the test reference")
    v.add_argument("--mixes", type=int, default=4, help="SynthSlakh test mixtures to use, if rendered")
    v.add_argument("--seconds", type=float, default=9.0, help="clip length (3 s per patch)")
    args = parser.parse_args(argv)
    if args.command == "convert":
        convert()
    else:
        verify(args.mixes, args.seconds)


if __name__ == "__main__":
    main()
