#!/usr/bin/env bash
# What chose the settings of the output examples (scripts/make_examples.sh, assets/examples/README.md),
# measured again with the instrument probe into benchmarks/results/examples/:
#   instruments-files-separation.json: the Dirac separator (guidance 5, drums constrained) and the
#     default ensemble (guidance 2; assets/ensemble.json: the extractor for every stem) on the two test
#     mixes where bass, drums and piano alone play for 8 s (Track01263 12.5-20.5 s, Track01319 1-9 s);
#   instruments-files-generation.json: the 8 s four-stem generation with the examples' negative
#     prompts, seeds 0-2;
#   instruments-files-accompaniment.json: the accompaniment of Track01319's bass, seeds 0-4.
#
#   bash scripts/choose_examples.sh            # about 8 minutes on a 2-core CPU
#
# The stems are scored as the samplers wrote them (wav); the examples are Ogg Vorbis, and a stem the
# probe is unsure of can flip with the encoding (seed 0's generated piano: piano as wav, bass as ogg).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RESULTS=benchmarks/results/examples
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
CK=(--checkpoint "${CHECKPOINT:-assets/gmsdi-synthslakh-13k.safetensors}" --quiet)

for index in 1263 1319; do  # as the default preset renders them (python -m gmsdi.data.synth --preset default)
  $PY -m gmsdi.data.synth --out "$TMP/data" --tracks 1 --seed 2024 --seconds 32 --split test \
      --start-index "$index" --workers 1 >/dev/null
done
$PY - "$TMP" <<'PY'
import sys, pathlib, soundfile as sf, yaml
tmp = pathlib.Path(sys.argv[1])
for name, start in (("Track01263", 12.5), ("Track01319", 1.0)):
    track = tmp / "data" / "test" / name
    mix, rate = sf.read(track / "mix.flac", dtype="float32")
    a = int(start * rate)
    sf.write(tmp / f"{name}.wav", mix[a:a + 8 * rate], rate)
    meta = yaml.safe_load((track / "metadata.yaml").read_text())
    bass = next(n for n, s in sorted(meta["stems"].items()) if s["stem_class"] == "bass")
    x, _ = sf.read(track / "stems" / f"{bass}.flac", dtype="float32")
    sf.write(tmp / f"{name}-bass.wav", x[a:a + 8 * rate], rate)
PY

FILES=()
for t in Track01263 Track01319; do
  $PY -m gmsdi separate "$TMP/$t.wav" --prompts bass drums piano --constrained drums --guidance 5 --seed 0 \
      "${CK[@]}" --out "$TMP/separator-$t"
  $PY -m gmsdi ensemble "$TMP/$t.wav" --prompts bass drums piano --seed 0 "${CK[@]}" --out "$TMP/ensemble-$t"
  for m in separator ensemble; do
    for s in bass drums piano; do FILES+=("$TMP/$m-$t/stems/$s.wav=$s"); done
  done
done
$PY -m gmsdi.eval instruments --quiet --results "$RESULTS" --tag=-separation --files "${FILES[@]}"

NEG=(--negative - - "bass, drums, guitar, piano" "bass, drums")
FILES=()
for seed in 0 1 2; do
  $PY -m gmsdi generate bass drums guitar piano "${NEG[@]}" --guidance 10 --seconds 8 --seed "$seed" \
      "${CK[@]}" --out "$TMP/generation-$seed"
  for s in bass drums guitar piano; do FILES+=("$TMP/generation-$seed/stems/$s.wav=$s"); done
done
$PY -m gmsdi.eval instruments --quiet --results "$RESULTS" --tag=-generation --files "${FILES[@]}"

FILES=()
for seed in 0 1 2 3 4; do
  $PY -m gmsdi accompany --locked "bass=$TMP/Track01319-bass.wav" --prompts drums guitar piano \
      --negative - "bass, drums, guitar, piano" "bass, drums" --guidance 10 --seed "$seed" "${CK[@]}" \
      --out "$TMP/accompaniment-$seed"
  for s in drums guitar piano; do FILES+=("$TMP/accompaniment-$seed/stems/$s.wav=$s"); done
done
$PY -m gmsdi.eval instruments --quiet --results "$RESULTS" --tag=-accompaniment --files "${FILES[@]}"
