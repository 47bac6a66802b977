"""Keeping written audio under full scale: one gain for the whole clip, never a clipper.

The models write waveforms as they come out of the VAE decoder, and those can peak above
full scale (1.0): a player or a 24-bit FLAC then clips them. ``limit_peak`` turns a clip
whose peak exceeds a ceiling down by one gain, so its shape and its internal balance stay
as generated; clips under the ceiling are left exactly as they are.
"""

from __future__ import annotations

import math

import numpy as np

from ezaudio.errors import InvalidInputError

GENERATE_CEILING_DB = -1.0
"""Default ceiling of generated clips: 1 dB of headroom, as lossy encoders want."""

EDIT_CEILING_DB = 0.0
"""Default ceiling of edited clips: full scale, so an edit that stays under it keeps the
input's samples outside the region exactly."""

LOWEST_CEILING_DB = -60.0
"""The lowest ceiling accepted."""

NO_CEILING = "none"
"""The word that turns the ceiling off (samples written as the model made them)."""


def peak_dbfs(audio: np.ndarray) -> float:
    """Largest absolute sample of ``audio`` in dB relative to full scale (-inf when silent)."""
    peak = float(np.max(np.abs(audio))) if np.size(audio) else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def limit_peak(audio: np.ndarray, ceiling_db: float | None) -> tuple[np.ndarray, float]:
    """``audio`` scaled down by one gain so its peak is at ``ceiling_db`` dBFS, if it was above.

    Returns ``(audio, gain_db)``: ``gain_db`` is 0.0 (and ``audio`` the same array) when the
    peak is at or under the ceiling or ``ceiling_db`` is None (no ceiling); otherwise negative.
    """
    if ceiling_db is None:
        return audio, 0.0
    check_ceiling(ceiling_db)
    peak = peak_dbfs(audio)
    if peak <= ceiling_db:
        return audio, 0.0
    gain_db = ceiling_db - peak  # < 0
    scaled = np.asarray(audio, dtype=np.float32) * np.float32(10.0 ** (gain_db / 20.0))
    return scaled, gain_db


def check_ceiling(ceiling_db: float) -> float:
    """``ceiling_db`` if it is a finite number of dBFS in [-60, 0], else InvalidInputError."""
    if (
        isinstance(ceiling_db, bool)
        or not isinstance(ceiling_db, (int, float))
        or not math.isfinite(ceiling_db)
        or not LOWEST_CEILING_DB <= ceiling_db <= 0.0
    ):
        raise InvalidInputError(
            f"peak ceiling must be a number of dBFS in [{LOWEST_CEILING_DB:g}, 0] "
            f"or '{NO_CEILING}', got {ceiling_db!r}"
        )
    return float(ceiling_db)


def parse_ceiling(text: str) -> float | None:
    """Command-line value of a ceiling: ``"none"`` -> None, ``"-1"`` -> -1.0 (checked)."""
    if text.strip().lower() == NO_CEILING:
        return None
    try:
        return check_ceiling(float(text))
    except ValueError:  # not a number, or InvalidInputError (a ValueError): out of range
        raise InvalidInputError(
            f"--peak must be a number of dBFS in [{LOWEST_CEILING_DB:g}, 0] or "
            f"'{NO_CEILING}', got {text!r}"
        ) from None
