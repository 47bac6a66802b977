"""Reading, resampling and writing audio files (``ezaudio.data.audio``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from ezaudio.data.audio import read_audio, resample, write_audio
from ezaudio.errors import AudioFileError

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None


def sine(seconds: float, rate: int, frequency: float = 440.0, amplitude: float = 0.5):
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_stereo_file_is_mixed_to_mono_by_the_mean(tmp_path: Path) -> None:
    left, right = sine(0.25, 16000, 440), sine(0.25, 16000, 1000, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    audio, rate = read_audio(path)
    assert rate == 16000
    assert audio.dtype == np.float32 and audio.shape == (4000,)
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-7)


def test_mono_float_wav_reads_back_bit_exact(tmp_path: Path) -> None:
    wave = sine(0.1, 24000)
    path = tmp_path / "mono.wav"
    sf.write(path, wave, 24000, subtype="FLOAT")
    audio, rate = read_audio(path, sample_rate=24000)  # same rate: no resampling
    assert rate == 24000
    np.testing.assert_array_equal(audio, wave)


@pytest.mark.parametrize(("source", "target"), [(44100, 24000), (16000, 24000), (48000, 16000)])
def test_resampling_gives_the_expected_length(tmp_path: Path, source: int, target: int) -> None:
    path = tmp_path / "one_second.wav"
    sf.write(path, sine(1.0, source), source, subtype="FLOAT")
    audio, rate = read_audio(path, sample_rate=target)
    assert rate == target
    assert abs(len(audio) - target) <= 1
    # a 440 Hz tone stays a 440 Hz tone of the same level
    spectrum = np.abs(np.fft.rfft(audio[: target // 2 * 2]))
    peak_hz = np.argmax(spectrum) * target / (target // 2 * 2)
    assert abs(peak_hz - 440) <= 2
    middle = audio[target // 4 : 3 * target // 4]
    assert abs(np.abs(middle).max() - 0.5) < 0.01


def test_resample_matches_soxr_and_is_identity_at_equal_rates() -> None:
    wave = sine(0.5, 44100)
    np.testing.assert_array_equal(resample(wave, 44100, 44100), wave)
    expected = soxr.resample(wave, 44100, 24000, quality="HQ")
    np.testing.assert_allclose(resample(wave, 44100, 24000), expected, atol=1e-7)


def test_wav_round_trip_is_exact(tmp_path: Path) -> None:
    wave = sine(0.2, 16000) * 1.5  # float WAV keeps values beyond [-1, 1] too
    path = write_audio(tmp_path / "out.wav", wave, 16000)
    data, rate = sf.read(path, dtype="float32")
    info = sf.info(str(path))
    assert rate == 16000 and info.format == "WAV" and info.subtype == "FLOAT"
    np.testing.assert_array_equal(data, wave)


def test_flac_round_trip_is_24_bit_accurate_and_clipped(tmp_path: Path) -> None:
    wave = sine(0.2, 16000)
    wave[:10] = 2.0  # out of range: clipped, not wrapped
    path = write_audio(tmp_path / "out.flac", wave, 16000)
    data, rate = sf.read(path, dtype="float32")
    info = sf.info(str(path))
    assert rate == 16000 and info.format == "FLAC" and info.subtype == "PCM_24"
    assert data.shape == wave.shape
    np.testing.assert_allclose(data[:10], 1.0, atol=1e-6)
    np.testing.assert_allclose(data[10:], wave[10:], atol=2**-22)


def test_multichannel_write_takes_channels_first(tmp_path: Path) -> None:
    stereo = np.stack([sine(0.1, 16000), -sine(0.1, 16000)])  # [C, N]
    data, _ = sf.read(write_audio(tmp_path / "s.wav", stereo, 16000), dtype="float32")
    assert data.shape == (1600, 2)
    np.testing.assert_array_equal(data.T, stereo)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_write_refuses_non_finite_samples(tmp_path: Path, bad: float) -> None:
    wave = sine(0.1, 16000)
    wave[5] = bad
    with pytest.raises(AudioFileError, match="NaN or infinite"):
        write_audio(tmp_path / "out.wav", wave, 16000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.mp3", "out.ogg", "out"])
def test_write_refuses_other_suffixes(tmp_path: Path, name: str) -> None:
    with pytest.raises(AudioFileError, match=r"\.wav or \.flac"):
        write_audio(tmp_path / name, sine(0.1, 16000), 16000)
    assert list(tmp_path.iterdir()) == []


def test_write_under_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(AudioFileError, match="not a folder"):
        write_audio(tmp_path / "file.txt" / "out.wav", sine(0.1, 16000), 16000)


def test_write_creates_missing_folders(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a" / "b" / "out.flac", sine(0.1, 16000), 16000)
    assert path.is_file() and sf.info(str(path)).frames == 1600


def test_failing_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that dies half-way leaves neither the target nor its temporary file."""
    real_write = sf.write

    def dies_half_way(file, data, *args, **kwargs):
        real_write(file, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sf, "write", dies_half_way)
    with pytest.raises(AudioFileError, match="No space left on device"):
        write_audio(tmp_path / "out.wav", sine(0.5, 16000), 16000)
    assert list(tmp_path.iterdir()) == []


def test_failing_write_keeps_an_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = write_audio(tmp_path / "out.wav", sine(0.1, 16000), 16000)
    before = target.read_bytes()

    def fails(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sf, "write", fails)
    with pytest.raises(AudioFileError):
        write_audio(target, np.zeros(100, np.float32), 16000)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


@pytest.mark.skipif(resource is None, reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_full_disk_is_an_audio_file_error_and_leaves_no_file(tmp_path: Path, suffix: str):
    """libsndfile reports a full disk as its own RuntimeError; it must become an AudioFileError."""
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 200_000).astype(np.float32)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, hard))
    try:
        with pytest.raises(AudioFileError, match="cannot write") as info:
            write_audio(tmp_path / f"big{suffix}", noise, 16000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError) as info:
        read_audio(tmp_path / "absent.wav")
    assert "not found" in without_path(info, tmp_path / "absent.wav")


def test_read_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioFileError) as info:
        read_audio(path)
    assert without_path(info, path).startswith("cannot read audio")
    assert "\n" not in str(info.value)


def without_path(error: pytest.ExceptionInfo[AudioFileError], path: Path) -> str:
    """The message with the file name removed, so a word in the path cannot match."""
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ").replace(str(path), "<path>")


def test_read_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "zero_bytes.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioFileError) as info:
        read_audio(path)
    assert "empty" in without_path(info, path)


def test_read_file_with_a_header_but_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "no_frames.wav"
    sf.write(path, np.zeros((0,), np.float32), 16000)
    assert os.path.getsize(path) > 0
    with pytest.raises(AudioFileError, match="no audio samples"):
        read_audio(path)


def test_read_folder(tmp_path: Path) -> None:
    folder = tmp_path / "clip.wav"
    folder.mkdir()
    with pytest.raises(AudioFileError) as info:
        read_audio(folder)
    assert "is a folder" in without_path(info, folder)


def test_read_refuses_non_finite_samples(tmp_path: Path) -> None:
    wave = sine(0.1, 16000)
    wave[3] = np.nan
    path = tmp_path / "bad_sample.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError) as info:
        read_audio(path)
    assert "NaN" in without_path(info, path)
