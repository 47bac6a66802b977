"""Audio in and out of the server, in memory: no client value ever names a file here."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from ezaudio.data.audio import WRITE_FORMATS
from ezaudio.errors import AudioFileError, InvalidInputError

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}


class UndecodableAudio(AudioFileError):
    """The uploaded bytes are not audio that libsndfile can decode (HTTP 415)."""


def encode_audio(wave: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Mono [N] float audio -> WAV (float32) or FLAC (24-bit) bytes, as ``ezaudio generate``
    writes them."""
    if fmt not in MEDIA_TYPES:
        raise InvalidInputError(f"format must be wav or flac, got {fmt!r}")
    audio = np.asarray(wave, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise AudioFileError("the model produced NaN or infinite samples")
    if fmt == "flac":
        audio = np.clip(audio, -1.0, 1.0)
    file_format, subtype = WRITE_FORMATS["." + fmt]
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format=file_format, subtype=subtype)
    return buffer.getvalue()


def decode_audio(data: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    """Uploaded bytes -> (mono float32 [N], sample rate).

    Raises :class:`UndecodableAudio` for bytes libsndfile cannot read, and
    :class:`~ezaudio.errors.InvalidInputError` (naming ``audio``) for an empty,
    too long or non-finite clip. The length is read from the header before decoding,
    so a small file that claims hours of audio is refused without decoding it.
    """
    if not data:
        raise InvalidInputError("audio: the uploaded file is empty")
    try:
        with sf.SoundFile(io.BytesIO(data)) as file:
            rate, frames = int(file.samplerate), int(file.frames)
            fits = rate >= 1 and frames <= max_seconds * rate
            audio = file.read(dtype="float32", always_2d=True) if fits else None  # [N, channels]
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise UndecodableAudio(
            "audio: cannot decode the upload (send WAV, FLAC, OGG or MP3)"
        ) from error
    if rate < 1:
        raise InvalidInputError(f"audio: invalid sample rate {rate}")
    if audio is None:
        raise InvalidInputError(
            f"audio is {frames / rate:.1f} s long; at most {max_seconds:g} s can be edited"
        )
    if audio.shape[0] == 0:
        raise InvalidInputError("audio: the file holds no samples")
    mono = audio.mean(axis=1).astype(np.float32)
    if not np.isfinite(mono).all():
        raise InvalidInputError("audio contains NaN or infinite samples")
    return mono, rate
