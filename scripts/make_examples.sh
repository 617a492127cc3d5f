#!/usr/bin/env bash
# The output examples in assets/examples/: a 4-stem generation, an accompaniment of one
# locked stem, and a separation of a SynthSlakh test mix, through the CLI, as small mono Ogg Vorbis
# files with each run's settings.json; then the instrument probe (`python -m gmsdi.eval instruments`)
# says what each stem sounds like, into benchmarks/results/eval/instruments-files-examples.json
# (docs/RESULTS.md shows it).
#
# Everything runs at the defaults a user gets with no tuning: the bundled model, the pipeline's
# guidance, negatives and steps; only the seeds are fixed. The separation is the app's default method,
# the ensemble (`python -m gmsdi ensemble`: per stem the separator or the extractor, as assets/ensemble.json
# chose on the validation split), of a test mix.
#
#   bash scripts/make_examples.sh                        # a few minutes on a 2-core CPU
#   CHECKPOINT=other.safetensors bash scripts/make_examples.sh
#
# The separation and the accompaniment use Track01319 of the default SynthSlakh test split (finger
# bass, brush kit, electric piano; never seen in training), seconds 1-9, where all three play; it is
# rendered again here: the mix becomes assets/examples/synthslakh_test_4.ogg, its bass the locked stem.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=assets/examples
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Track01319 exactly as `python -m gmsdi.data.synth --preset default` renders it (seed 2024, 32 s)
$PY -m gmsdi.data.synth --out "$TMP/ex" --tracks 1 --seed 2024 --seconds 32 --split test --start-index 1319 \
    --workers 1 >/dev/null
$PY - "$TMP/ex/test/Track01319" "$OUT/synthslakh_test_4.ogg" "$TMP/bass.flac" <<'PY'
import sys, pathlib, soundfile as sf, yaml
track, mix_out, bass_out = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
meta = yaml.safe_load((track / "metadata.yaml").read_text())
mix, rate = sf.read(track / "mix.flac", dtype="float32")
sf.write(mix_out, mix[rate:9 * rate], rate, format="OGG", subtype="VORBIS")
bass = next(n for n, s in sorted(meta["stems"].items()) if s["stem_class"] == "bass")
x, _ = sf.read(track / "stems" / f"{bass}.flac", dtype="float32")
sf.write(bass_out, x[rate:9 * rate], rate)
PY

CK=()
[ -n "${CHECKPOINT:-}" ] && CK=(--checkpoint "$CHECKPOINT")
rm -rf "$OUT/generation" "$OUT/accompaniment" "$OUT/separation"
$PY -m gmsdi generate bass drums guitar piano --seconds 8 --seed 0 --format ogg --quiet "${CK[@]}" \
    --out "$OUT/generation"
$PY -m gmsdi accompany --locked "bass=$TMP/bass.flac" --prompts drums guitar piano --seed 0 --format ogg --quiet \
    "${CK[@]}" --out "$OUT/accompaniment"
$PY -m gmsdi ensemble "$OUT/synthslakh_test_4.ogg" --prompts bass drums piano --seed 0 --format ogg --quiet \
    "${CK[@]}" --out "$OUT/separation"
du -sh "$OUT/generation" "$OUT/accompaniment" "$OUT/separation"
FILES=()
for stem in bass drums guitar piano; do FILES+=("$OUT/generation/stems/$stem.ogg=$stem"); done
for stem in drums guitar piano; do FILES+=("$OUT/accompaniment/stems/$stem.ogg=$stem"); done
for stem in bass drums piano; do FILES+=("$OUT/separation/stems/$stem.ogg=$stem"); done
$PY -m gmsdi.eval instruments --quiet --tag=-examples --files "${FILES[@]}"
# the spectrograms the README and assets/examples/README.md show: stems and mix on one dB scale
$PY - "$OUT" <<'PY'
import sys, pathlib, soundfile as sf
from gmsdi.viz import plot_stems
out = pathlib.Path(sys.argv[1])
for task in ("generation", "accompaniment", "separation"):
    signals = {}
    for f in sorted((out / task / "stems").glob("*.ogg")):
        signals[f.stem], rate = sf.read(f, dtype="float32")
    signals["mix"], rate = sf.read(out / task / "mix.ogg", dtype="float32")
    plot_stems(signals, rate, out / f"{task}.png", title=task)
    print(f"wrote {out / task}.png")
PY
