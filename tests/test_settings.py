"""`Settings`: every field checked once, where it is built, with a message that says what to do."""

from __future__ import annotations

import dataclasses
import math

import pytest

from gmsdi.pipeline import settings as limits
from gmsdi.pipeline.settings import GENERATION, SEPARATION, Settings


@pytest.mark.parametrize("overrides,message", [
    ({"sampler": "rk4"}, r"unknown sampler 'rk4'; valid names are \['euler', 'heun'\]"),
    ({"steps": 0}, f"steps must be a whole number from 1 to {limits.MAX_STEPS}"),
    ({"steps": limits.MAX_STEPS + 1}, "steps must be a whole number from 1"),
    ({"steps": 2.5}, "steps must be a whole number"),
    ({"steps": True}, "steps must be a whole number"),
    ({"resamples": 0}, "resamples must be a whole number from 1 \\(no correction\\) to 10"),
    ({"resamples": limits.MAX_RESAMPLES + 1}, "resamples must be a whole number"),
    ({"s_churn": -1.0}, "s_churn must be a number from 0 to 100"),
    ({"s_churn": limits.CHURN_RANGE[1] + 1}, "s_churn must be a number from 0 to 100"),
    ({"s_tmin": -1.0}, "s_tmin must be a number ≥ 0"),
    ({"s_tmin": math.nan}, "s_tmin must be a number ≥ 0"),
    ({"guidance": -0.5}, r"guidance must be a finite number from 0 to 20 \(1 = no guidance\)"),
    ({"guidance": limits.GUIDANCE_RANGE[1] + 1}, "guidance must be a finite number from 0 to 20"),
    ({"guidance": math.nan}, "guidance must be a finite number"),
    ({"guidance": (2.0, 30.0)}, "guidance must be a finite number"),
    ({"guidance": "2"}, "guidance must be a number or one number per stem"),
    ({"mix_guidance": -1.0}, "mix_guidance must be a finite number"),
    ({"guidance_sigma_min": -0.1}, "guidance_sigma_min must be a number ≥ 0"),
    ({"guidance_sigma_min": math.inf}, "guidance_sigma_min must be a number ≥ 0"),
    ({"guidance_sigma_min": 0.5, "guidance_sigma_max": 0.1},
     "guidance_sigma_max must be a number ≥ guidance_sigma_min"),
    ({"guidance_sigma_max": math.nan}, "guidance_sigma_max must be a number"),
    ({"gamma_x": 0.0}, "gamma_x must be positive \\(or inf"),
    ({"gamma_y": -1.0}, "gamma_y must be positive"),
    ({"gamma_mode": "log"}, "unknown gamma mode 'log'; valid names are"),
    ({"locked_noise": "pink"}, "unknown locked noise 'pink'"),
    ({"dirac": "exact"}, "unknown dirac form 'exact'"),
    ({"dirac": "projected", "constrained": 0}, "the projected form has none: leave constrained out"),
    ({"sigma_min": 0.0}, "sigma_min must be a positive number"),
    ({"sigma_max": math.inf}, "sigma_max must be a positive number"),
    ({"window_seconds": -1.0}, "window_seconds must be a positive number"),
    ({"rho": 0.0}, "rho must be a positive number"),
    ({"overlap": 1.0}, r"overlap is a fraction of the window in \[0, 1\)"),
    ({"overlap": -0.1}, "overlap is a fraction"),
    ({"negative_exclude": [("bass", "piano")]}, "negative_exclude must be a tuple of"),
    ({"negative_exclude": (("bass", ""),)}, "pairs of non-empty strings"),
    ({"negative_exclude": (("bass",),)}, "pairs of non-empty strings"),
    ({"negative_exclude": ((" bass", "piano"),)}, "without outer spaces"),
])
def test_each_limit_is_checked_where_settings_are_built(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        GENERATION.replace(**overrides)
    with pytest.raises(ValueError, match=message):  # dataclasses.replace checks too: there is no way around it
        dataclasses.replace(SEPARATION, **overrides)


def test_valid_settings_and_the_edges_of_each_range() -> None:
    lo, hi = limits.GUIDANCE_RANGE
    s = GENERATION.replace(steps=limits.MAX_STEPS, resamples=limits.MAX_RESAMPLES, guidance=hi, mix_guidance=lo,
                           s_churn=limits.CHURN_RANGE[1], gamma_x=math.inf, overlap=0.0)
    assert s.steps == limits.MAX_STEPS and s.gamma_x == math.inf
    assert GENERATION.replace(steps=None) == GENERATION  # None keeps the default


def test_unknown_setting_names_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['stpes'\]; valid names are \[.*'steps'"):
        GENERATION.replace(stpes=4)


def test_weights_per_stem() -> None:
    assert GENERATION.weights(3) == [GENERATION.guidance] * 3 and SEPARATION.weights(2) == [2.0, 2.0]
    assert GENERATION.replace(guidance=(1.0, 5.0)).weights(2) == [1.0, 5.0]
    with pytest.raises(ValueError, match=r"guidance needs one value per stem \(3\), got 2; give one number"):
        GENERATION.replace(guidance=(1.0, 5.0)).weights(3)


def test_defaults_are_valid_settings() -> None:
    for s in (limits.GENERATION, limits.SEPARATION, limits.MSDM_GENERATION, limits.MSDM_SEPARATION):
        assert isinstance(s, Settings) and s.replace() == s
    assert limits.MSDM_SEPARATION.guidance == 1.0
