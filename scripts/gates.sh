#!/usr/bin/env bash
# The quality gates of the bundled model (issue #17), each beside the linear floor and with real and
# noise references, on this 2-core CPU. Results go to benchmarks/results/ and docs/; then
# `python -m gmsdi.eval report` rebuilds docs/RESULTS.md. About 40 minutes with nothing else running.
#
#   bash scripts/gates.sh                 # the bundled model and the floor
#   TAG=step8000 CHECKPOINT=runs/x.safetensors bash scripts/gates.sh     # another checkpoint
#
# Steps (each can be run alone):
#   1. look: spectrograms of 8 generated songs at the app's defaults beside real stems, and the
#      structure measure (tf contrast) of real stems, class-coloured noise and generated stems;
#   2. the instrument probe with a "noise" class (trained once; coloured noise and the waveform
#      model's outputs), then the share of generated stems it names as their prompt;
#   3. FAD, reduced protocol (20 clips of 6 s, 40 real tracks, overlapping musicnn patches):
#      reference (real / noise), four-stem generation and single-source generation;
#   4. separation SI-SDRi on the 12-track subset.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
TAG=${TAG:-bundled}
CK=(); [ -n "${CHECKPOINT:-}" ] && CK=(--checkpoint "gmsdi=$CHECKPOINT")
LOOK=(); [ -n "${CHECKPOINT:-}" ] && LOOK=(--checkpoint "$CHECKPOINT")
step=${1:-all}

if [ "$step" = all ] || [ "$step" = look ]; then
  $PY benchmarks/look.py --tag "$TAG" "${LOOK[@]}"
  $PY benchmarks/look.py --tag floor --checkpoint assets/floor-synthslakh.safetensors
fi
if [ "$step" = all ] || [ "$step" = probe ]; then
  [ -n "${RETRAIN_PROBE:-}" ] && $PY -m gmsdi.eval instruments --train --quiet --noise-crops 1500 \
      --noise-files benchmarks/data/waveform-model-outputs/*.ogg
  $PY -m gmsdi.eval instruments --models gmsdi floor --quiet "${CK[@]}" --tag="-$TAG"
fi
if [ "$step" = all ] || [ "$step" = fad ]; then
  FAD=(--clips 20 --hop-frames 16 --real-tracks 40 --quiet)
  $PY -m gmsdi.eval fad --task reference generation single-source --models gmsdi floor "${FAD[@]}" "${CK[@]}" \
      --variants "negative prompting (negative = the other instruments)"
fi
if [ "$step" = all ] || [ "$step" = separation ]; then
  SEP=(--tracks 12 --max-chunks 2 --quiet --no-cache)
  $PY -m gmsdi.eval separation --method gmsdi-separator gmsdi-extractor floor-separator "${SEP[@]}" "${CK[@]}"
fi
$PY -m gmsdi.eval report
