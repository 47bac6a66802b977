"""The event classes: each renders, and simple features tell them and their attributes apart."""

from __future__ import annotations

import numpy as np
import pytest
import signal_checks as sc

from ezaudio.synth import classes
from ezaudio.synth.scenes import render_event
from ezaudio.synth.sources import BY_NAME, CLASSES

SR = 16000


def render(name: str, seed: int = 0, seconds: float = 3.0, sr: int = SR, **attributes):
    audio, _trimmed, params = render_event(name, attributes, np.random.default_rng(seed), sr,
                                           seconds)  # fmt: skip
    return audio, params


def test_at_least_sixteen_classes_with_unique_names() -> None:
    assert len(classes()) >= 16
    assert len(set(classes())) == len(classes()) == len(CLASSES)


@pytest.mark.parametrize("name", classes())
@pytest.mark.parametrize("sr", [8000, 16000, 44100])
def test_every_class_renders_finite_audible_audio_within_its_slot(name: str, sr: int) -> None:
    pitch = {"pitch": "high"} if BY_NAME[name].pitched and sr == 8000 else {}  # near Nyquist
    audio, _params = render(name, seed=3, seconds=2.5, sr=sr, **pitch)
    assert audio.ndim == 1 and np.isfinite(audio).all()
    assert 0.05 * sr <= audio.shape[0] <= round(2.5 * sr)
    assert np.max(np.abs(audio)) == pytest.approx(1.0)  # unit peak before mixing
    assert sc.rms_envelope(audio, sr).max() > 0.05  # not silent
    again, _ = render(name, seed=3, seconds=2.5, sr=sr, **pitch)
    np.testing.assert_array_equal(audio, again)  # seeded


TRAINS = ("footsteps", "clock", "drum")  # end with their last hit: up to one interval short


@pytest.mark.parametrize("name", [c.name for c in CLASSES if not c.countable])
def test_continuous_classes_last_the_asked_length(name: str) -> None:
    audio, _ = render(name, seconds=3.0, space="close")
    shortest = 3.0 - (1.0 if name in TRAINS else 0.2)
    assert shortest <= audio.shape[0] / SR <= 3.0


@pytest.mark.parametrize("name", [c.name for c in CLASSES if c.pitched])
def test_pitch_moves_the_spectral_centroid(name: str) -> None:
    for seed in range(3):
        low = sc.spectral_centroid(render(name, seed, pitch="low")[0], SR)
        high = sc.spectral_centroid(render(name, seed, pitch="high")[0], SR)
        assert high > 1.2 * low, (seed, low, high)


def test_classes_differ_in_spectral_centroid() -> None:
    def centroid(name: str) -> float:
        return float(
            np.mean([sc.spectral_centroid(render(name, seed)[0], SR) for seed in range(3)])
        )

    low = {name: centroid(name) for name in ("engine", "knocking")}
    high = {name: centroid(name) for name in ("bird", "rain", "clock", "alarm")}
    assert max(low.values()) < 400 < 1500 < min(high.values()), (low, high)


# (class, smoothing of the envelope in s, least gap between bursts in s)
COUNTED = [
    ("knocking", 0.0, 0.06), ("dog_bark", 0.0, 0.06), ("alarm", 0.0, 0.06), ("bird", 0.0, 0.06),
    ("piano", 0.0, 0.06), ("plucked_string", 0.0, 0.06), ("car_horn", 0.05, 0.06),
    ("whistle", 0.05, 0.06), ("bell", 0.05, 0.06), ("telephone", 0.3, 0.7),
]  # fmt: skip


@pytest.mark.parametrize(("name", "smooth", "gap"), COUNTED)
def test_counted_events_have_that_many_bursts(name: str, smooth: float, gap: float) -> None:
    assert BY_NAME[name].countable
    for count in (1, 2, 3):
        for seed in range(3):
            audio, params = render(name, seed, seconds=4.0, count=count, space="close")
            assert len(params["hits"]) == count
            assert sc.count_bursts(audio, SR, gap, smooth) == count, (count, seed)


def test_counts_hold_when_the_slot_is_tight() -> None:
    for name in ("knocking", "dog_bark", "alarm"):
        audio, params = render(name, 1, seconds=BY_NAME[name].min_seconds, count=3, space="close")
        assert len(params["hits"]) == 3
        assert sc.count_bursts(audio, SR) == 3


def test_the_siren_pitch_moves_and_steady_tones_do_not() -> None:
    def spread(name: str, seed: int) -> float:
        freqs = sc.dominant_frequencies(render(name, seed, seconds=4.0)[0], SR)
        return float(np.percentile(freqs, 90) / np.percentile(freqs, 10))

    for seed in range(3):
        assert spread("siren", seed) > 1.4
        for steady in ("car_horn", "whistle", "alarm"):
            assert spread(steady, seed) < 1.1


def test_clock_ticks_are_periodic_at_the_drawn_rate_and_speed_changes_it() -> None:
    rates = {}
    for speed in ("slow", "fast"):
        audio, params = render("clock", 2, seconds=4.0, speed=speed, space="close")
        ticks = sc.burst_times(audio, SR)
        intervals = np.diff(ticks)
        assert len(ticks) >= 4
        assert np.std(intervals) < 0.05 * np.mean(intervals)  # periodic
        assert 1 / np.mean(intervals) == pytest.approx(params["ticks_per_s"], rel=0.05)
        rates[speed] = 1 / np.mean(intervals)
    assert rates["fast"] > 2 * rates["slow"]


def test_reverb_spaces_lengthen_the_decay() -> None:
    dry, _ = render("knocking", 0, seconds=3.0, count=1, space="close")
    hall, params = render("knocking", 0, seconds=3.0, count=1, space="large_hall")
    assert params["reverb"]["rt60_s"] >= 1.6
    assert hall.shape[0] > dry.shape[0] + 0.5 * SR


def test_bad_attributes_are_refused() -> None:
    with pytest.raises(ValueError, match="no attribute"):
        render("rain", pitch="high")
    with pytest.raises(ValueError, match="count"):
        render("dog_bark", count=4)
