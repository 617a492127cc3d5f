#!/usr/bin/env bash
# The output examples in assets/examples/ (issue #4): a 4-stem generation, an accompaniment of one
# locked stem, and a separation of a SynthSlakh test mix, all by the bundled model through the CLI,
# as small mono Ogg Vorbis files with each run's settings.json; then the instrument probe
# (`python -m gmsdi.eval instruments`) says what each stem sounds like, into
# benchmarks/results/eval/instruments-files-examples.json (docs/RESULTS.md shows it).
#
#   bash scripts/make_examples.sh            # about four minutes on a 2-core CPU
#   CHECKPOINT=path.safetensors bash scripts/make_examples.sh   # another model than the bundled one
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

CK=()
if [[ -n "${CHECKPOINT:-}" ]]; then CK=(--checkpoint "$CHECKPOINT"); fi
rm -rf "$OUT/generation" "$OUT/accompaniment" "$OUT/separation"
$PY -m gmsdi generate bass drums guitar piano --seconds 8 --seed 0 --format ogg --quiet "${CK[@]}" --out "$OUT/generation"
$PY -m gmsdi accompany --locked "bass=$BASS" --prompts drums guitar piano --seed 0 --format ogg --quiet \
    "${CK[@]}" --out "$OUT/accompaniment"
$PY -m gmsdi separate "$OUT/synthslakh_test_3.ogg" --prompts bass drums "synth lead" --seed 0 --format ogg \
    --quiet "${CK[@]}" --out "$OUT/separation"
du -sh "$OUT/generation" "$OUT/accompaniment" "$OUT/separation"
FILES=()
for stem in bass drums guitar piano; do FILES+=("$OUT/generation/stems/$stem.ogg=$stem"); done
for stem in drums guitar piano; do FILES+=("$OUT/accompaniment/stems/$stem.ogg=$stem"); done
for stem in bass drums synth_lead; do FILES+=("$OUT/separation/stems/$stem.ogg=$stem"); done
$PY -m gmsdi.eval instruments --quiet --tag=-examples --files "${FILES[@]}"
