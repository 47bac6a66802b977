"""The peak ceiling of written audio: one gain for the whole clip, only when over."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ezaudio.data.peak import check_ceiling, limit_peak, parse_ceiling, peak_dbfs
from ezaudio.errors import InvalidInputError


def test_peak_dbfs() -> None:
    assert peak_dbfs(np.array([0.0, -0.5, 0.25], np.float32)) == pytest.approx(-6.0206, abs=1e-4)
    assert peak_dbfs(np.array([2.0], np.float32)) == pytest.approx(6.0206, abs=1e-4)
    assert peak_dbfs(np.zeros(4, np.float32)) == -math.inf
    assert peak_dbfs(np.zeros(0, np.float32)) == -math.inf


def test_a_clip_over_the_ceiling_is_turned_down_by_one_gain() -> None:
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(1000) * 0.6).astype(np.float32)  # peaks near 2
    before = peak_dbfs(audio)
    out, gain_db = limit_peak(audio, -1.0)
    assert out.dtype == np.float32 and out.shape == audio.shape
    assert peak_dbfs(out) == pytest.approx(-1.0, abs=1e-4)
    assert gain_db == pytest.approx(-1.0 - before, abs=1e-9) and gain_db < 0
    ratio = out / audio  # the same factor for every sample: the shape is kept
    np.testing.assert_allclose(ratio, 10 ** (gain_db / 20), rtol=1e-5)
    assert np.abs(audio).max() > 1  # the input is left as it was


@pytest.mark.parametrize("ceiling", [0.0, -1.0])
def test_a_clip_under_the_ceiling_or_silent_is_left_exactly(ceiling: float) -> None:
    quiet = np.array([0.1, -0.3, 0.2], np.float32)  # -10.5 dBFS
    at_ceiling = np.array([0.5, -(10 ** (ceiling / 20))], np.float32)
    for audio in (quiet, np.zeros(5, np.float32), at_ceiling):
        out, gain_db = limit_peak(audio, ceiling)
        assert out is audio and gain_db == 0.0
    loud = np.array([1.5, -0.2], np.float32)
    assert limit_peak(loud, None) == (loud, 0.0)  # no ceiling: as the model made it


@pytest.mark.parametrize("bad", [0.5, -61.0, math.nan, math.inf, True, "-1"])
def test_bad_ceilings_are_refused(bad) -> None:
    with pytest.raises(InvalidInputError, match="ceiling must be a number of dBFS"):
        check_ceiling(bad)
    with pytest.raises(InvalidInputError):
        limit_peak(np.ones(3, np.float32), bad)


def test_parse_ceiling() -> None:
    assert parse_ceiling("none") is None and parse_ceiling(" NONE ") is None
    assert parse_ceiling("-1") == -1.0 and parse_ceiling("0") == 0.0
    assert parse_ceiling("-60") == -60.0
    for bad in ("loud", "3", "-61", "nan", "inf", ""):
        with pytest.raises(InvalidInputError, match=r"--peak must be a number .* or 'none'"):
            parse_ceiling(bad)
