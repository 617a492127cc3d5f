"""Pack a SynthSlakh training split into chunks small enough to travel to a lent GPU machine.

A call to such a machine carries at most 64 MiB of files, the repository included, and the
machine reaches no package registry. Training there needs only what `MixtureDataset` reads:
each track's mixture, `metadata.yaml` and per-stem MIDI (the crops' tags come from the MIDI), so
a chunk holds those and no stems. Mixtures are requantised to `--bits` (12 by default: the
quantisation noise, 1.4e-4 RMS, is 14x below the sampler's smallest noise level σ_min = 0.002)
and FLAC stores 12-bit audio in 63 % of the bytes of 16-bit. Chunks go to `OUT/data1`,
`OUT/data2`, ... (each a SynthSlakh root with a `train` split), one per call; a command there links
their tracks into one root (`train/device_run.sh`). `OUT/common` gets the parts table of the
prompt encoder (`gmsdi.text.table`), since the 88 MB text model cannot travel.

    python train/device_pack.py --out .dev --chunks 4 --chunk-mib 54
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from gmsdi.data import slakh


def requantise(audio: np.ndarray, bits: int) -> np.ndarray:
    """int16 audio `[T]` rounded to `bits` significant bits (kept in int16)."""
    step = 2 ** (16 - bits)
    return np.clip(np.round(audio.astype(np.int32) / step) * step, -32768, 32767).astype(np.int16)


def pack_track(track: slakh.Track, dest: Path, bits: int) -> int:
    """Copy one track's mixture (requantised), metadata and MIDI to `dest`; returns the bytes written."""
    dest.mkdir(parents=True, exist_ok=True)
    audio, sr = sf.read(track.mix_path, dtype="int16")
    sf.write(dest / "mix.flac", requantise(audio, bits), sr, format="FLAC", subtype="PCM_16")
    shutil.copy2(track.path / "metadata.yaml", dest / "metadata.yaml")
    shutil.copytree(track.path / "MIDI", dest / "MIDI", dirs_exist_ok=True)
    return sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/synthslakh")
    p.add_argument("--split", default="train")
    p.add_argument("--out", default=".dev")
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--chunk-mib", type=float, default=54.0, help="size of each chunk (MiB)")
    p.add_argument("--bits", type=int, default=12, help="bits kept per sample (8..16)")
    p.add_argument("--seed", type=int, default=0, help="order in which tracks are taken")
    args = p.parse_args(argv)
    if not 8 <= args.bits <= 16:
        print(f"error: --bits must be in 8..16, got {args.bits}", file=sys.stderr)
        return 2
    tracks = slakh.list_tracks(args.root, args.split)
    if not tracks:
        print(f"error: no tracks in {args.root}/{args.split}; render them with "
              "`python -m gmsdi.data.synth --preset default --out data/synthslakh`", file=sys.stderr)
        return 2
    order = np.random.default_rng(args.seed).permutation(len(tracks))
    out = Path(args.out)
    limit = int(args.chunk_mib * 2**20)
    i = 0
    for c in range(1, args.chunks + 1):
        root = out / f"data{c}"
        if root.exists():
            shutil.rmtree(root)
        size, n = 0, 0
        while i < len(order):
            track = tracks[order[i]]
            size += pack_track(track, root / args.split / track.name, args.bits)
            i, n = i + 1, n + 1
            if size > limit:  # over: take the last track back out
                shutil.rmtree(root / args.split / track.name)
                i, n = i - 1, n - 1
                break
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        print(f"{root}: {n} tracks, {size / 2**20:.1f} MiB")
    print(f"{i} of {len(tracks)} tracks packed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
