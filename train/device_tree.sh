#!/usr/bin/env bash
# What travels to a lent GPU machine is the working tree: tracked files and untracked files git does
# not ignore, 64 MiB in all with the carried paths. The tracked weights, pictures and notebooks (~50 MB)
# would leave no room for data, so before the calls of train/RUNS.md ("bands-gpu") this untracks
# everything the training there does not read and ignores it locally; `restore` puts the index and
# .git/info/exclude back exactly. No file in the working tree is touched. Never commit while slim.
#   bash train/device_tree.sh slim      # then the device calls
#   bash train/device_tree.sh restore   # at once after them
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
state=.git/device-tree
case ${1:-} in
slim)
    [[ -e $state ]] && { echo "already slim ($state exists); run restore first" >&2; exit 1; }
    git diff --cached --quiet || { echo "the index has staged changes; commit or unstage them first" >&2; exit 1; }
    mkdir -p "$state" .git/info
    touch .git/info/exclude
    cp .git/info/exclude "$state/exclude"
    keep='^(gmsdi/|train/[^/]*\.(py|sh)$|train/configs/|\.gitignore$|pyproject\.toml$)'
    git ls-files | grep -Ev "$keep" > "$state/untracked" || true
    git ls-files --others --exclude-standard | grep -Ev "$keep" > "$state/others" || true
    git rm -r -q --cached --pathspec-from-file="$state/untracked"
    cat "$state/untracked" "$state/others" | sed 's|^|/|' >> .git/info/exclude
    ;;
restore)
    [[ -e $state ]] || { echo "not slim: nothing to restore" >&2; exit 1; }
    git reset -q
    cp "$state/exclude" .git/info/exclude
    rm -r "$state"
    ;;
*)
    echo "usage: device_tree.sh slim|restore" >&2
    exit 2
    ;;
esac
echo "travels: $(git ls-files --cached --others --exclude-standard -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes"
