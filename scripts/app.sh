#!/usr/bin/env bash
# Set up a fresh clone (Debian packages when root, .venv, Python packages), then serve the app on
# the bundled model at http://127.0.0.1:7860. Extra arguments go to app.py:
#   bash scripts/app.sh                     # the bundled model
#   bash scripts/app.sh --tiny              # a tiny untrained model built in code (no checkpoint needed)
#   bash scripts/app.sh --host 0.0.0.0 --port 7861
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python app.py "$@"
