"""ezaudio: text-to-audio generation and editing with EzAudio diffusion transformers.

The public names are imported on first use, so ``import ezaudio`` (and every
``ezaudio`` command's start, ``--help`` included) does not pay for torch until
a model is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "AudioFileError": "ezaudio.errors",
    "CheckpointError": "ezaudio.errors",
    "EzAudioError": "ezaudio.errors",
    "InvalidInputError": "ezaudio.errors",
    "DiTConfig": "ezaudio.config",
    "SamplingDefaults": "ezaudio.config",
    "SchedulerConfig": "ezaudio.config",
    "VAEConfig": "ezaudio.config",
    "EzAudioDiT": "ezaudio.nn.dit",
    "WaveformVAE": "ezaudio.nn.oobleck",
    "EzAudio": "ezaudio.pipeline",
    "GeneratedAudio": "ezaudio.pipeline",
    "TextEncoder": "ezaudio.text",
}

__all__ = [
    "AudioFileError",
    "CheckpointError",
    "DiTConfig",
    "EzAudio",
    "EzAudioDiT",
    "EzAudioError",
    "GeneratedAudio",
    "InvalidInputError",
    "SamplingDefaults",
    "SchedulerConfig",
    "TextEncoder",
    "VAEConfig",
    "WaveformVAE",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ezaudio.config import DiTConfig, SamplingDefaults, SchedulerConfig, VAEConfig
    from ezaudio.errors import AudioFileError, CheckpointError, EzAudioError, InvalidInputError
    from ezaudio.nn.dit import EzAudioDiT
    from ezaudio.nn.oobleck import WaveformVAE
    from ezaudio.pipeline import EzAudio, GeneratedAudio
    from ezaudio.text import TextEncoder


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ezaudio' has no attribute {name!r}")
