#!/usr/bin/env bash
# Train on a lent GPU machine (the `device` tool): run from the repository root there, with the
# chunks of train/device_pack.py under .dev/data*/, the parts table under .dev/common/ and the
# wheels the machine lacks under .whl/ (train/RUNS.md, "bands-gpu", has the procedure).
#   bash train/device_run.sh smoke            # 25 steps: imports, data, speed and memory
#   bash train/device_run.sh train SECONDS    # train for SECONDS, export bf16 weights to $OUT
# Further KEY=VALUE arguments override fields of train/configs/bands-gpu.yaml.
set -euo pipefail
mode=${1:?usage: device_run.sh smoke|train [SECONDS] [KEY=VALUE ...]}
shift
budget=0
if [[ $mode == train ]]; then budget=${1:?train needs a time budget in seconds}; shift; fi
out=${OUT:-/tmp/out}
mkdir -p "$out"
if [[ ! -d /tmp/site/soundfile ]] && compgen -G ".whl/*.whl" >/dev/null; then
    ${PYTHON:-python3} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
py=${PYTHON:-python3}
# One SynthSlakh root over every chunk that has arrived.
mkdir -p /tmp/gmsdi-data/train
for d in .dev/data*/train/Track*; do ln -sfn "$PWD/$d" /tmp/gmsdi-data/train/; done
echo "tracks: $(ls /tmp/gmsdi-data/train | wc -l) from $(ls -d .dev/data* | tr '\n' ' ')"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
if [[ $mode == smoke ]]; then
    (while sleep 5; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done) 2>/dev/null &
    rm -rf runs/smoke
    $py train/train.py --config train/configs/bands-gpu.yaml --set name=smoke max_steps=25 log_every=5 \
        ckpt_every=100000 sample_every=0 "$@"
    cat runs/smoke/train.csv
    exit 0
fi
(while sleep 15; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done) > "$out/gpu.log" 2>&1 &
$py train/train.py --config train/configs/bands-gpu.yaml --set time_budget_s="$budget" "$@" 2>&1 \
    | tee "$out/train.log" || true
$py train/train.py --config train/configs/bands-gpu.yaml --set "$@" --export /tmp/bands-gpu.safetensors --export-dtype bf16
split -b 15M -d /tmp/bands-gpu.safetensors "$out/bands-gpu.safetensors.part"
tar -cf "$out/run.tar" -C runs bands-gpu/train.csv bands-gpu/config.yaml bands-gpu/samples
sha256sum /tmp/bands-gpu.safetensors
ls -la "$out"
