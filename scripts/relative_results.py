"""Rewrites the committed result and settings JSON files so they hold no machine-specific paths.

    python scripts/relative_results.py            # every JSON file git tracks
    python scripts/relative_results.py --check    # list the files that would change; status 1 if any

Paths into the repository become repo-relative and temporary folders are dropped
(`gmsdi.fileio.relative_paths`); nothing else in a file changes (indentation and key order stay).
New results are written this way already (the evaluation, `Result.save`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gmsdi.fileio import relative_paths, relativize_json_files  # noqa: E402


def tracked_json() -> list[Path]:
    """The JSON files git tracks in this repository."""
    names = subprocess.run(["git", "ls-files", "*.json"], cwd=REPO, check=True, capture_output=True,
                           text=True).stdout.split()
    return [REPO / n for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list the files that hold machine paths")
    args = parser.parse_args(argv)
    files = tracked_json()
    if args.check:
        import json

        stale = [f for f in files if relative_paths(json.loads(f.read_text())) != json.loads(f.read_text())]
        for f in stale:
            print(f.relative_to(REPO))
        return 1 if stale else 0
    for f in relativize_json_files(files):
        print(f"rewrote {f.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
