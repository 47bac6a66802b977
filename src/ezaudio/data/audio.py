"""Reading and writing audio files: soundfile for I/O, soxr for resampling."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ezaudio.errors import AudioFileError
from ezaudio.nn.component import write_atomic

WRITE_FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}


def read_audio(
    path: str | os.PathLike[str], sample_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 [N], mixing channels by their mean (as librosa does),
    resampled to ``sample_rate`` with soxr (HQ) when given. Returns (audio, rate)."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: file not found")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, expected an audio file")
    if path.is_file() and path.stat().st_size == 0:
        raise AudioFileError(f"{path}: the file is empty (0 bytes)")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [N, channels]
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as error:
        raise AudioFileError(f"{path}: cannot read audio ({_first_line(error)})") from error
    if audio.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no audio samples")
    mono = audio.mean(axis=1).astype(np.float32)  # [N]
    if not np.isfinite(mono).all():
        raise AudioFileError(f"{path}: audio contains NaN or infinite samples")
    if sample_rate is not None and rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
        rate = sample_rate
    return mono, int(rate)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample [N] or [N, C] float audio with soxr's high-quality filter."""
    if source_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, source_rate, target_rate, quality="HQ").astype(np.float32)


def write_audio(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int) -> Path:
    """Write mono [N] (or [C, N]) float audio as WAV (float32) or FLAC (24-bit), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise AudioFileError(f"{path}: output must end in .wav or .flac")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.T  # soundfile wants [N, C]
    if not np.isfinite(audio).all():
        raise AudioFileError(f"{path}: refusing to write NaN or infinite samples")
    if suffix == ".flac":
        audio = np.clip(audio, -1.0, 1.0)
    file_format, subtype = WRITE_FORMATS[suffix]
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise AudioFileError(f"{path}: {parent} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        write_atomic(
            path, lambda tmp: sf.write(tmp, audio, sample_rate, format=file_format, subtype=subtype)
        )
    except (OSError, sf.SoundFileError) as error:  # libsndfile reports e.g. a full disk
        reason = getattr(error, "strerror", None) or _first_line(error)
        raise AudioFileError(f"{path}: cannot write ({reason})") from error
    return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
