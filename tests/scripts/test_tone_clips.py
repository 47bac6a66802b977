"""scripts/world/tone_clips.py: deterministic tonal clips, a manifest (optionally mixed with
another), one-line errors."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "world"))
import tone_clips

RATE = 16000


def test_clips_are_determined_by_seed_and_index() -> None:
    first = tone_clips.tone_clip(3, seed=1, seconds=0.5, rate=RATE)
    assert first.shape == (RATE // 2,) and first.dtype == np.float32
    np.testing.assert_array_equal(first, tone_clips.tone_clip(3, seed=1, seconds=0.5, rate=RATE))
    assert not np.array_equal(first, tone_clips.tone_clip(4, seed=1, seconds=0.5, rate=RATE))
    assert not np.array_equal(first, tone_clips.tone_clip(3, seed=2, seconds=0.5, rate=RATE))
    assert 0.1 <= np.abs(first).max() <= 0.9


def test_clips_are_tonal_within_the_pitch_range() -> None:
    # spectral flatness (geometric / arithmetic mean of the power spectrum): ~0.56 for
    # white noise, under 0.15 for every one of these clips (under 0.05 but for the brief
    # strikes, whose faint noise floor fills the silence between hits); the strongest bin
    # lies between the lowest fundamental and the highest partial allowed
    def flatness(wave: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(wave * np.hanning(len(wave)))) ** 2 + 1e-20
        return float(np.exp(np.mean(np.log(power))) / np.mean(power))

    assert flatness(np.random.default_rng(0).normal(size=RATE)) > 0.5
    for index in range(24):
        wave = tone_clips.tone_clip(index, seed=0, seconds=1.0, rate=RATE)
        assert flatness(wave) < 0.15, index
        spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
        peak_hz = np.argmax(spectrum) * RATE / len(wave)
        assert tone_clips.LOWEST_HZ * 0.7 <= peak_hz <= 0.48 * RATE, (index, peak_hz)


def test_envelopes_stay_in_zero_one() -> None:
    rng = np.random.default_rng(0)
    for kind in tone_clips.ENVELOPES:
        env = tone_clips.envelope(kind, RATE, RATE, rng)
        assert env.shape == (RATE,) and env.min() >= 0.0 and env.max() <= 1.0 + 1e-9
        assert env.max() > 0.5, kind  # something sounds


def test_strikes_are_groups_of_short_hits() -> None:
    rng = np.random.default_rng(1)
    for _ in range(8):
        env = tone_clips.envelope("strikes", RATE, RATE, rng)  # one second
        onsets = np.flatnonzero((env[1:] > 0.99) & (env[:-1] < 0.5)) + 1  # jumps to ~1
        assert 2 <= len(onsets) <= 6
        assert np.all(np.diff(onsets) > 0.08 * RATE)  # spacings of 0.09-0.39 s
        # a hit has decayed (tau <= 80 ms) to under 0.3 after 0.1 s
        tail = onsets[-1] + RATE // 10
        if tail < RATE:
            assert env[tail] < 0.3


def test_first_envelopes_reproduce_the_first_tone_clips() -> None:
    # The bundled decoder learnt from clips drawn from held, decay and beeps only; allowing
    # strikes changes the draws, limiting the kinds gives those clips back.
    # (the digest is that of /work/tones/audio/tone_000005.wav of 2026-11-27, whose
    # samples the bundled decoder was trained on)
    assert tone_clips.FIRST_ENVELOPES == tone_clips.ENVELOPES[:3]
    first = tone_clips.tone_clip(5, 0, 1.0, RATE, tone_clips.FIRST_ENVELOPES)
    assert hashlib.sha256(first.tobytes()).hexdigest()[:16] == "718399836601b539"
    assert not np.array_equal(first, tone_clips.tone_clip(5, 0, 1.0, RATE))


def test_a_run_writes_clips_and_a_mixed_manifest(tmp_path, capsys) -> None:
    other = tmp_path / "world"
    (other / "audio").mkdir(parents=True)
    (other / "train.jsonl").write_text(
        json.dumps({"audio": "audio/a.wav", "caption": "a bell", "id": "a", "split": "train"})
        + "\n"
    )
    out = tmp_path / "tones"
    argv = [str(out), "--clips", "3", "--seconds", "0.25", "--mix-with", str(other / "train.jsonl")]
    assert tone_clips.main(argv) == 0
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == ["a", "tone_000000", "tone_000001", "tone_000002"]
    assert rows[0]["audio"] == str((other / "audio" / "a.wav").resolve())
    wave, rate = sf.read(out / rows[1]["audio"], dtype="float32")
    assert rate == RATE and len(wave) == RATE // 4
    np.testing.assert_array_equal(wave, tone_clips.tone_clip(0, 0, 0.25, RATE))
    assert "wrote 3 tone clips" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--clips", "0"], "--clips must be positive"),
        (["--rate", "8000"], "--rate must be at least"),
        (["--mix-with", "nowhere.jsonl"], "not found"),
    ],
)
def test_bad_options_are_one_line(tmp_path, capsys, extra, message) -> None:
    assert tone_clips.main([str(tmp_path / "out"), *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
