"""Audio preparation for the PANNs metrics (FD, KL, IS), as ``audioldm_eval`` reads its files.

``audioldm_eval`` (the toolbox behind the paper's FD/KL/IS) reads every file with
``torchaudio.load``, keeps the **first channel** (``audio[0:1]``, not a mix), subtracts the
clip's mean (**DC removal**, at the file's own rate), resamples to 16 kHz and zero-pads
clips shorter than 2 s at the end (``pad_short_audio(min_samples=32000)``). We do the same
in this order, with one deliberate change: the resampler is soxr (HQ), a real band-limited
resampler, for every rate. (``audioldm_eval`` decimates 32 kHz files by taking every second
sample, which aliases, and uses ``torchaudio.functional.resample`` for other rates.) Long
clips are not cropped.

:func:`prepare_waveform` is the pure function on arrays; :func:`read_for_eval` reads a file
and applies it. :class:`PrepareSettings` holds the numbers, and its :meth:`~PrepareSettings.
to_dict` enters the feature-cache key, so features prepared differently are never mixed.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ezaudio.data.audio import resample
from ezaudio.errors import AudioFileError, InvalidInputError

EVAL_SAMPLE_RATE = 16000
"""Rate of the PANNs CNN14 16 kHz model the paper's metrics use."""

MIN_SECONDS = 2.0
"""Clips shorter than this are zero-padded at the end (``audioldm_eval``: 32000 samples)."""

RESAMPLER = "soxr-HQ"
"""Recorded with the settings: which resampler produced the 16 kHz audio."""


@dataclass(frozen=True)
class PrepareSettings:
    """How a file becomes the waveform a feature model sees.

    ``channel`` is the channel kept (0: the first, as ``audioldm_eval``), ``remove_dc``
    subtracts the mean before resampling, ``sample_rate`` is the target rate and
    ``min_seconds`` the length short clips are zero-padded to.
    """

    sample_rate: int = EVAL_SAMPLE_RATE
    min_seconds: float = MIN_SECONDS
    channel: int = 0
    remove_dc: bool = True
    resampler: str = RESAMPLER

    def __post_init__(self) -> None:
        _check_rate("sample_rate", self.sample_rate)
        if (
            isinstance(self.min_seconds, bool)
            or not isinstance(self.min_seconds, numbers.Real)
            or not math.isfinite(self.min_seconds)
            or self.min_seconds < 0
        ):
            raise InvalidInputError(
                f"min_seconds must be a finite number >= 0, got {self.min_seconds!r}"
            )
        if isinstance(self.channel, bool) or not isinstance(self.channel, int) or self.channel < 0:
            raise InvalidInputError(f"channel must be an integer >= 0, got {self.channel!r}")
        if self.resampler != RESAMPLER:
            raise InvalidInputError(f"resampler must be {RESAMPLER!r}, got {self.resampler!r}")

    @property
    def min_samples(self) -> int:
        """Shortest prepared length in samples: ``round(min_seconds * sample_rate)``."""
        return round(self.min_seconds * self.sample_rate)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready settings (part of the feature-cache key and of ``results.json``)."""
        return asdict(self)


def _check_rate(name: str, rate: object) -> int:
    if (
        isinstance(rate, bool)
        or not isinstance(rate, numbers.Real)
        or not float(rate).is_integer()
        or rate < 1
    ):
        raise InvalidInputError(f"{name} must be a positive integer, got {rate!r}")
    return int(rate)


def prepare_waveform(
    audio: np.ndarray, sample_rate: int, settings: PrepareSettings | None = None
) -> np.ndarray:
    """Audio [N] or [N, channels] (soundfile's layout) at ``sample_rate`` -> float32 [M].

    Steps, in this order: keep channel ``settings.channel`` (2-D input only), subtract the
    mean (``remove_dc``), resample to ``settings.sample_rate`` with soxr HQ, zero-pad at
    the end to ``settings.min_samples``.
    """
    settings = settings or PrepareSettings()
    rate = _check_rate("sample_rate", sample_rate)
    array = np.asarray(audio)
    if array.ndim == 2:
        if settings.channel >= array.shape[1]:
            raise InvalidInputError(
                f"audio has {array.shape[1]} channels; channel {settings.channel} asked for"
            )
        array = array[:, settings.channel]  # [N]
    if array.ndim != 1:
        raise InvalidInputError(f"audio must be [N] or [N, channels], got shape {array.shape}")
    if array.size == 0:
        raise InvalidInputError("audio holds no samples")
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidInputError(f"audio must be floating point, got {array.dtype}")
    wave = array.astype(np.float64)
    if not np.isfinite(wave).all():
        raise InvalidInputError("audio contains NaN or infinite samples")
    if settings.remove_dc:
        wave = wave - wave.mean()  # DC removal at the source rate, as audioldm_eval
    wave = resample(wave.astype(np.float32), rate, settings.sample_rate)  # [M] float32
    if wave.shape[0] < settings.min_samples:
        wave = np.pad(wave, (0, settings.min_samples - wave.shape[0]))  # zeros at the end
    return np.ascontiguousarray(wave, dtype=np.float32)


def read_channels(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 [N, channels] with its rate; one-line errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: file not found")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, expected an audio file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: the file is empty (0 bytes)")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [N, channels]
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as error:
        raise AudioFileError(f"{path}: cannot read audio ({_first_line(error)})") from error
    if audio.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no audio samples")
    if not np.isfinite(audio).all():
        raise AudioFileError(f"{path}: audio contains NaN or infinite samples")
    return audio, int(rate)


def read_for_eval(
    path: str | os.PathLike[str], settings: PrepareSettings | None = None
) -> np.ndarray:
    """Read an audio file and :func:`prepare_waveform` it: float32 [M] at the target rate."""
    audio, rate = read_channels(path)
    try:
        return prepare_waveform(audio, rate, settings)
    except InvalidInputError as error:
        raise AudioFileError(f"{path}: {error}") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
