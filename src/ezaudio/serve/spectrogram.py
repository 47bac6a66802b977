"""A mel-spaced log spectrogram as a PNG, with numpy and zlib only (for the web app)."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

# Anchors of a dark-to-bright colour ramp (close to matplotlib's "magma").
_ANCHORS = np.array(
    [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]],
    dtype=np.float64,
)
_RAMP = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
     for c in range(3)], axis=1,
).round().astype(np.uint8)  # fmt: skip  # [256, 3]


def spectrogram_image(
    wave: np.ndarray, sample_rate: int, height: int = 128, max_width: int = 800,
    floor_db: float = -80.0,
) -> np.ndarray:  # fmt: skip
    """[height, width, 3] uint8: time left to right, low frequencies at the bottom."""
    audio = np.asarray(wave, dtype=np.float32).reshape(-1)
    n_fft = 2 ** max(6, round(math.log2(max(sample_rate, 1) * 0.032)))
    hop = max(n_fft // 4, math.ceil(len(audio) / max_width))
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    count = 1 + (len(audio) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        audio, shape=(count, n_fft), strides=(audio.strides[0] * hop, audio.strides[0])
    )
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2
    power = power.T  # [bins, frames]
    # Mel-spaced rows: each row is the loudest bin of its band.
    top_mel = 2595 * math.log10(1 + (sample_rate / 2) / 700)
    edges_hz = 700 * (10 ** (np.linspace(0, top_mel, height + 1) / 2595) - 1)
    edges = np.clip((edges_hz / (sample_rate / n_fft)).astype(int), 0, power.shape[0] - 1)
    rows = np.maximum.reduceat(power, edges[:-1], axis=0)  # [height, frames]
    decibels = 10 * np.log10(np.maximum(rows, 1e-20) / max(float(power.max()), 1e-20))
    level = np.clip(1 - decibels / floor_db, 0, 1)  # 0 = floor_db or quieter, 1 = loudest
    return _RAMP[(level[::-1] * 255).round().astype(np.intp)]


def encode_png(image: np.ndarray) -> bytes:
    """[height, width, 3] uint8 -> PNG bytes."""
    height, width, channels = image.shape
    if channels != 3 or image.dtype != np.uint8:
        raise ValueError("expected an [H, W, 3] uint8 image")
    raw = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def spectrogram_png(wave: np.ndarray, sample_rate: int, **options) -> bytes:
    """The spectrogram of mono ``wave`` as PNG bytes."""
    return encode_png(spectrogram_image(wave, sample_rate, **options))
