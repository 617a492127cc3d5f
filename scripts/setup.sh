#!/usr/bin/env bash
# Set up gmsdi on a fresh clone: Debian packages (when root), a virtual environment in .venv,
# and the Python packages, with torch pinned by constraints.txt so nothing pulls a CUDA build.
# Safe to run again: it only installs what is missing.
#   bash scripts/setup.sh          # runtime packages
#   bash scripts/setup.sh --dev    # plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; [ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}

need_apt=()
lists=packages.txt; [ $DEV = 1 ] && lists="packages.txt packages-dev.txt"
for pkg in $(cat $lists | grep -v '^#'); do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: not root, so the Debian packages ${need_apt[*]} were not installed." >&2
    echo "setup: ask an administrator to run: sudo apt-get install ${need_apt[*]}" >&2
    echo "setup: (rendering SynthSlakh needs fluidsynth and a soundfont; the rest works without)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.gmsdi-installed
want=$(cat requirements.txt requirements-dev.txt constraints.txt pyproject.toml | sha256sum | cut -c1-16)
have=$(cat "$stamp" 2>/dev/null || true)
# a --dev install (stamp <hash>-1) also serves the runtime (<hash>-0): test.sh then app.sh installs nothing twice
if [ "$have" != "$want-$DEV" ] && [ "$have" != "$want-1" ]; then
  echo "setup: installing Python packages (torch pinned by constraints.txt)"
  .venv/bin/python -m pip install -q --upgrade pip
  req=requirements.txt; [ $DEV = 1 ] && req=requirements-dev.txt
  .venv/bin/python -m pip install -q -c constraints.txt -r "$req"
  .venv/bin/python -m pip install -q -c constraints.txt --no-deps -e .
  echo "$want-$DEV" > "$stamp"
fi
echo "setup: ready (.venv)"
