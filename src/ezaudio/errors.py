"""Exceptions with one-line messages meant for users.

The CLI prints ``str(error)`` of any :class:`EzAudioError` and exits non-zero,
so every message here must make sense on its own line.
"""

from __future__ import annotations


class EzAudioError(Exception):
    """Base class of the errors ezaudio raises on purpose."""


class InvalidInputError(EzAudioError, ValueError):
    """A value given by the user is out of range, malformed or missing."""


class CheckpointError(EzAudioError):
    """A model folder or checkpoint file is missing, corrupt or does not fit its config."""


class AudioFileError(EzAudioError):
    """An audio file cannot be read, is empty, or cannot be written."""
