#!/usr/bin/env bash
# The output examples in assets/examples/ (issue #4): a 4-stem generation, an accompaniment of one
# locked stem, and a separation of a SynthSlakh test mix (the ensemble), through the CLI, as small
# mono Ogg Vorbis files with each run's settings.json; then the instrument probe (`python -m gmsdi.eval instruments`)
# says what each stem sounds like, into benchmarks/results/eval/instruments-files-examples.json
# (docs/RESULTS.md shows it).
#
# The model is the default run continued to step 13000 (assets/gmsdi-synthslakh-13k.safetensors,
# train/RUNS.md), and generation and accompaniment use negative-prompt guidance 10 instead of the
# default 2: measured with the probe on 8 four-stem songs, that is where stems are most often
# recognised as their instrument (0.59 of them, against 0.25 at guidance 2; docs/RESULTS.md).
#
#   bash scripts/make_examples.sh                                  # about seven minutes on a 2-core CPU
#   CHECKPOINT=assets/gmsdi-synthslakh.safetensors GUIDANCE=2 bash scripts/make_examples.sh  # bundled, defaults
#
# The accompaniment locks the bass of assets/examples/synthslakh_test_3.ogg; the script renders that
# track's stems again (the same seed as assets/examples/README.md) to get it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=assets/examples
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

$PY -m gmsdi.data.synth --out "$TMP/ex" --tracks 3 --seconds 8 --seed 5 --split test >/dev/null
TRACK=$(ls -d "$TMP"/ex/test/* | sort | sed -n 3p)
BASS=$($PY - "$TRACK" <<'PY'
import sys, pathlib, yaml
track = pathlib.Path(sys.argv[1])
meta = yaml.safe_load((track / "metadata.yaml").read_text())
print(next(track / "stems" / f"{name}.flac" for name, s in sorted(meta["stems"].items())
           if s["stem_class"] == "bass"))
PY
)

CK=(--checkpoint "${CHECKPOINT:-assets/gmsdi-synthslakh-13k.safetensors}")
W=(--guidance "${GUIDANCE:-10}")
rm -rf "$OUT/generation" "$OUT/accompaniment" "$OUT/separation"
$PY -m gmsdi generate bass drums guitar piano --seconds 8 --seed 0 --format ogg --quiet "${CK[@]}" "${W[@]}" \
    --out "$OUT/generation"
$PY -m gmsdi accompany --locked "bass=$BASS" --prompts drums guitar piano --seed 0 --format ogg --quiet \
    "${CK[@]}" "${W[@]}" --out "$OUT/accompaniment"
# the ensemble: per stem the separator or the extractor, as chosen on the validation split (assets/ensemble.json)
$PY -m gmsdi ensemble "$OUT/synthslakh_test_3.ogg" --prompts bass drums "synth lead" --seed 0 --format ogg \
    --quiet "${CK[@]}" --out "$OUT/separation"
du -sh "$OUT/generation" "$OUT/accompaniment" "$OUT/separation"
FILES=()
for stem in bass drums guitar piano; do FILES+=("$OUT/generation/stems/$stem.ogg=$stem"); done
for stem in drums guitar piano; do FILES+=("$OUT/accompaniment/stems/$stem.ogg=$stem"); done
for stem in bass drums synth_lead; do FILES+=("$OUT/separation/stems/$stem.ogg=$stem"); done
$PY -m gmsdi.eval instruments --quiet --tag=-examples --files "${FILES[@]}"
