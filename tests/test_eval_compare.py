"""`python -m gmsdi.eval compare`: the paired per-window difference of two separation records."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gmsdi.eval.cli import main
from gmsdi.eval.compare import paired_difference


def _record(sisdr: np.ndarray, mix: np.ndarray, tracks: list[str], starts: list[int],
            active: np.ndarray | None = None) -> dict:
    w = {"track": tracks, "start": starts, "end": [s + 10 for s in starts], "sisdr": sisdr.tolist(),
         "sisdr_mixture": mix.tolist()}
    if active is not None:
        w["active"] = active.astype(int).tolist()
    return {"kind": "separation", "stems": ["bass", "drums"], "results": {"per_window": w}}


def test_paired_difference_matches_the_difference_of_means_and_its_standard_error():
    rng = np.random.default_rng(0)
    mix = rng.normal(0, 20, (6, 2))
    a = mix + rng.normal(3, 1, (6, 2))
    shift = np.array([[0.5, -1.0]]) + rng.normal(0, 0.1, (6, 2))
    b = a + shift
    tracks, starts = ["t1"] * 3 + ["t2"] * 3, [0, 10, 20] * 2
    out = paired_difference(_record(a, mix, tracks, starts), _record(b, mix, tracks, starts))
    assert out["windows"] == 6 and out["dropped"] == 0
    assert out["mean"]["bass"] == pytest.approx(shift[:, 0].mean())
    assert out["mean"]["drums"] == pytest.approx(shift[:, 1].mean())
    assert out["mean"]["All"] == pytest.approx(out["b"]["All"] - out["a"]["All"])
    assert out["sem"]["bass"] == pytest.approx(shift[:, 0].std(ddof=1) / math.sqrt(6))
    # the windows' own spread (tens of dB) does not enter the paired error
    assert out["sem"]["bass"] < 0.1


def test_paired_difference_pairs_windows_by_track_and_start_and_drops_diverged_ones():
    mix = np.zeros((3, 2))
    a = _record(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), mix, ["t1", "t1", "t2"], [0, 10, 0])
    # B in another order, one window of A missing, one extra, one diverged (NaN)
    b = _record(np.array([[7.0, 8.0], [np.nan, 1.0], [2.0, 2.0]]), mix, ["t2", "t1", "t3"], [0, 0, 0])
    out = paired_difference(a, b)
    assert (out["windows"], out["dropped"], out["only_a"], out["only_b"]) == (1, 1, 1, 1)
    assert out["mean"]["bass"] == pytest.approx(2.0) and out["mean"]["drums"] == pytest.approx(2.0)


def test_the_difference_where_a_stem_plays_leaves_out_its_silent_windows():
    mix = np.zeros((3, 2))
    active = np.array([[1, 1], [1, 0], [0, 1]])
    a = _record(np.zeros((3, 2)), mix, ["t"] * 3, [0, 10, 20], active)
    b = _record(np.array([[1.0, 2.0], [3.0, 50.0], [-40.0, 4.0]]), mix, ["t"] * 3, [0, 10, 20], active)
    out = paired_difference(a, b)
    assert out["active"] == pytest.approx({"bass": 2.0, "drums": 3.0})
    assert out["active_windows"] == {"bass": 2, "drums": 2}
    assert out["mean"]["bass"] == pytest.approx(-12.0)


def test_records_that_cannot_be_paired_are_clear_errors():
    mix = np.zeros((1, 2))
    a = _record(np.ones((1, 2)), mix, ["t1"], [0])
    with pytest.raises(ValueError, match="share no window"):
        paired_difference(a, _record(np.ones((1, 2)), mix, ["t9"], [0]))
    with pytest.raises(ValueError, match="not a separation record"):
        paired_difference(a, {"kind": "fad"})
    other = _record(np.ones((1, 2)), mix, ["t1"], [0]) | {"stems": ["bass", "piano"]}
    with pytest.raises(ValueError, match="different stems"):
        paired_difference(a, other)


def test_the_compare_command_prints_the_table_and_refuses_a_missing_file(tmp_path, capsys):
    mix = np.zeros((2, 2))
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(_record(np.array([[1.0, 1.0], [2.0, 2.0]]), mix, ["t1", "t1"], [0, 10])))
    pb.write_text(json.dumps(_record(np.array([[2.0, 1.0], [3.0, 2.0]]), mix, ["t1", "t1"], [0, 10])))
    assert main(["compare", str(pa), str(pb)]) == 0
    table = capsys.readouterr().out
    assert "2 paired windows" in table and "+1.00 ± 0.00" in table
    assert main(["compare", str(pa), str(tmp_path / "missing.json")]) == 2
    assert "no such record" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["compare", str(pa), str(tmp_path / "bad.json")]) == 2
