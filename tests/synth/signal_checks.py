"""Simple signal analysis for checking synthesised audio against its metadata.

Imported by the synth tests as ``signal_checks`` (tests/ has no packages).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

FRAME = 0.01  # seconds per envelope frame
CLIP_SR, CLIP_SECONDS = 16000, 6.0  # the shared clips of conftest.py (6 s: room for 3 events)


def rms_envelope(audio: np.ndarray, sr: int, frame: float = FRAME) -> np.ndarray:
    """RMS per frame of ``frame`` seconds, [frames]."""
    size = max(1, round(frame * sr))
    count = -(-audio.shape[0] // size)
    padded = np.zeros(count * size)
    padded[: audio.shape[0]] = audio
    return np.sqrt(np.mean(padded.reshape(count, size) ** 2, axis=1))


def first_onset(audio: np.ndarray, sr: int, rel_db: float = -30.0, frame: float = 0.005) -> float:
    """Time (s) of the first frame whose RMS reaches ``rel_db`` of the loudest frame."""
    env = rms_envelope(audio, sr, frame)
    loud = np.flatnonzero(env >= env.max() * 10 ** (rel_db / 20))
    return float(loud[0] * frame)


def burst_times(
    audio: np.ndarray, sr: int, min_gap: float = 0.06, smooth: float = 0.0
) -> np.ndarray:
    """Times (s) of bursts: peaks of the RMS envelope (averaged over ``smooth`` s) that reach
    30 % of the loudest and stand out by 25 % of it (silence is padded at both ends, so
    bursts at the edges count)."""
    pad = 5 + round(smooth / FRAME)
    env = np.pad(rms_envelope(audio, sr, FRAME), pad)
    width = round(smooth / FRAME)
    if width > 1:
        env = np.convolve(env, np.ones(width) / width, mode="same")
    peaks, _ = signal.find_peaks(
        env, height=0.3 * env.max(), prominence=0.25 * env.max(),
        distance=max(1, round(min_gap / FRAME)),
    )  # fmt: skip
    return (peaks - pad) * FRAME


def count_bursts(audio: np.ndarray, sr: int, min_gap: float = 0.06, smooth: float = 0.0) -> int:
    return int(burst_times(audio, sr, min_gap, smooth).size)


def spectral_centroid(audio: np.ndarray, sr: int) -> float:
    """Power-weighted mean frequency (Hz) of the whole signal."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[0], 1 / sr)
    return float(np.sum(freqs * power) / (np.sum(power) + 1e-20))


def dominant_frequencies(audio: np.ndarray, sr: int, frame: float = 0.05) -> np.ndarray:
    """Frequency (Hz) of the strongest spectral peak in each frame that is not silent."""
    freqs, _times, spec = signal.stft(audio, sr, nperseg=round(frame * sr))
    power = np.abs(spec) ** 2  # [freqs, frames]
    energy = power.sum(axis=0)
    keep = energy > 0.05 * energy.max()
    return freqs[np.argmax(power[:, keep], axis=0)]
