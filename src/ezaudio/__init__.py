"""ezaudio: text-to-audio generation and editing with EzAudio diffusion transformers."""

from ezaudio.config import DiTConfig, SamplingDefaults, SchedulerConfig, VAEConfig
from ezaudio.errors import AudioFileError, CheckpointError, EzAudioError, InvalidInputError
from ezaudio.nn.dit import EzAudioDiT
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.pipeline import EzAudio, GeneratedAudio
from ezaudio.text import TextEncoder

__version__ = "0.1.0"

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
