"""The report's look section: a run whose picture was not committed gets its row and command, not a broken link."""

from __future__ import annotations

import json
from pathlib import Path

from gmsdi.eval.report import REPO_ROOT, look_section


def _record(tag: str, picture: str) -> dict:
    c = {"real": {"mean": 16.0}, "coloured_noise": {"mean": 4.0}, "generated": {"mean": 7.0}}
    return {"checkpoint": {"path": f"runs/{tag}.safetensors", "sha256": "0" * 64}, "picture": picture,
            "tf_contrast": {"bass": c}, "command": f"python benchmarks/look.py --tag {tag}"}


def test_a_missing_picture_is_named_and_not_linked(tmp_path: Path) -> None:
    shown = "docs/app_screenshot.png"  # a committed picture
    assert (REPO_ROOT / shown).is_file()
    (tmp_path / "a.json").write_text(json.dumps(_record("a", shown)))
    (tmp_path / "b.json").write_text(json.dumps(_record("b", "docs/look_nowhere.png")))
    text = "\n".join(look_section(tmp_path, REPO_ROOT / "docs" / "RESULTS.md"))
    assert "![a](app_screenshot.png)" in text
    assert "look_nowhere" not in text and "*b (picture not committed): `python benchmarks/look.py --tag b`*" in text
