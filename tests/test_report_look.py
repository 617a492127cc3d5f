"""The report's look section (a run whose picture was not committed gets its row and command, not a broken
link), its FAD degradation table, and the FAD rows of candidate checkpoints."""

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


def test_the_fad_degradation_table_reads_its_record(tmp_path: Path) -> None:
    from gmsdi.eval.report import fad_degrade_section

    assert "Not measured yet: `python benchmarks/fad_degrade.py`." in fad_degrade_section(tmp_path / "none.json")
    rec = {"sets": {"mix": {"real": 12.5, "random phase": 30.26}, "bass": {"real": 11.2, "random phase": 27.31}},
           "clips": 20, "seconds": 6.0, "command": "python benchmarks/fad_degrade.py "}
    (tmp_path / "r.json").write_text(json.dumps(rec))
    text = "\n".join(fad_degrade_section(tmp_path / "r.json"))
    assert "| set | real | random phase |" in text and "| bass | 11.20 | 27.31 |" in text
    assert "20 clips of 6 s per set; `python benchmarks/fad_degrade.py`." in text


def test_a_tagged_gmsdi_fad_run_is_a_candidate_row_and_another_models_file_is_not() -> None:
    from gmsdi.eval.methods import MODELS
    from gmsdi.eval.report import fad_section

    def run(fad: float, **model) -> dict:
        return {"results": {"fad": fad, "mixture_consistency": 1.5}, "clips": 20, "seconds": 6.0,
                "command": "python -m gmsdi.eval fad", "model": {"checkpoint_sha256": "ab" * 32, **model}}

    results = {"fad-generation-gmsdi-emph-10k": {**run(44.865, run="emph", step=10000),
                                                 "negative_prompts": ["drums", "bass, guitar, piano"]},
               "fad-generation-gmsdi-notags": run(70.9)}
    status = {name: {"exists": True} for name in MODELS}
    text = "\n".join(fad_section(results, status))
    assert "| GMSDI candidate `emph-10k` (emph, step 10000) | 44.865 | 1.5000 | 20 × 6 |" in text
    assert "negative prompts 'drums', 'bass, guitar, piano'" in text
    assert "candidate `notags`" not in text  # gmsdi-notags is a model of its own
    status["gmsdi"]["sha256"] = "ab" * 32  # the candidate's file became the bundled one
    assert "(emph, step 10000), **the bundled checkpoint** | 44.865 |" in "\n".join(fad_section(results, status))
