"""Audio preparation for the PANNs metrics: first channel, DC removal, 16 kHz (soxr), >= 2 s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from ezaudio.errors import AudioFileError, InvalidInputError
from ezaudio.eval.prepare import PrepareSettings, prepare_waveform, read_for_eval


def tone(seconds: float, rate: int, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_first_channel_not_a_mix() -> None:
    left = tone(3.0, 16000, 440.0)
    right = tone(3.0, 16000, 1000.0)
    stereo = np.stack([left, right], axis=1)  # [N, 2], soundfile's layout
    out = prepare_waveform(stereo, 16000)
    expected = left - left.astype(np.float64).mean()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    second = prepare_waveform(stereo, 16000, PrepareSettings(channel=1))
    np.testing.assert_allclose(second, right - right.astype(np.float64).mean(), atol=1e-6)


def test_dc_removed_before_resampling() -> None:
    wave = tone(3.0, 44100) + 0.3  # a DC offset of 0.3
    out = prepare_waveform(wave, 44100)
    assert abs(float(out.mean())) < 1e-3
    centred = (wave - wave.astype(np.float64).mean()).astype(np.float32)
    expected = soxr.resample(centred, 44100, 16000, quality="HQ")
    np.testing.assert_allclose(out, expected, atol=1e-6)
    kept = prepare_waveform(wave, 44100, PrepareSettings(remove_dc=False))
    assert abs(float(kept.mean()) - 0.3) < 1e-2


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 32000, 44100, 48000])
def test_length_at_16k(rate: int) -> None:
    out = prepare_waveform(tone(3.0, rate), rate)
    assert out.dtype == np.float32
    assert abs(out.shape[0] - 48000) <= 1


def test_short_clips_padded_to_two_seconds_with_zeros_at_the_end() -> None:
    wave = tone(0.5, 16000) + 0.1
    out = prepare_waveform(wave, 16000)
    assert out.shape == (32000,)
    np.testing.assert_allclose(out[:8000], wave - wave.astype(np.float64).mean(), atol=1e-6)
    assert not out[8000:].any()
    assert prepare_waveform(tone(2.5, 16000), 16000).shape == (40000,)  # longer: not cropped
    none = prepare_waveform(wave, 16000, PrepareSettings(min_seconds=0.0))
    assert none.shape == (8000,)


def test_read_for_eval_matches_the_array_path(tmp_path: Path) -> None:
    stereo = np.stack([tone(1.0, 22050, 300.0), tone(1.0, 22050, 700.0)], axis=1)
    path = tmp_path / "clip.wav"
    sf.write(path, stereo, 22050, subtype="FLOAT")
    out = read_for_eval(path)
    np.testing.assert_array_equal(out, prepare_waveform(stereo, 22050))
    assert out.shape == (32000,)


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="NaN"):
        prepare_waveform(np.array([0.0, np.nan], dtype=np.float32), 16000)
    with pytest.raises(InvalidInputError, match="no samples"):
        prepare_waveform(np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InvalidInputError, match="sample_rate"):
        prepare_waveform(np.zeros(10, dtype=np.float32), 0)
    with pytest.raises(InvalidInputError, match="channel 1"):
        prepare_waveform(np.zeros((10, 1), dtype=np.float32), 16000, PrepareSettings(channel=1))
    with pytest.raises(InvalidInputError, match="floating"):
        prepare_waveform(np.zeros(10, dtype=np.int16), 16000)
    with pytest.raises(InvalidInputError, match="min_seconds"):
        PrepareSettings(min_seconds=-1.0)
    with pytest.raises(AudioFileError, match="not found"):
        read_for_eval(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioFileError, match="cannot read"):
        read_for_eval(tmp_path / "bad.wav")
