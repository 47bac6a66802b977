"""Small signal helpers shared by the sound sources, the rooms and the scene mixer.

Everything works on mono float64 numpy arrays at a given sample rate ``sr``. Frequencies
above ``NYQUIST_SHARE * sr`` are capped (or their partials dropped), so every source renders
at any sample rate from 8 kHz up without aliasing.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

NYQUIST_SHARE = 0.45  # highest frequency a source may use, as a share of the sample rate


def top(sr: int) -> float:
    """The highest frequency (Hz) a source may use at sample rate ``sr``."""
    return NYQUIST_SHARE * sr


def cap(freq: float, sr: int) -> float:
    """``freq`` limited to the usable band (20 Hz .. 0.9 ``top(sr)``, so a tone capped
    there still sounds and may bend up a little)."""
    return float(min(max(freq, 20.0), 0.9 * top(sr)))


def times(samples: int, sr: int) -> np.ndarray:
    """Sample times in seconds, [samples]."""
    return np.arange(samples) / sr


def samples_of(seconds: float, sr: int) -> int:
    return max(0, round(seconds * sr))


def phase(freq: np.ndarray, sr: int) -> np.ndarray:
    """Running phase (radians) of an instantaneous frequency track (Hz), [N]."""
    return 2 * np.pi * np.cumsum(np.asarray(freq, dtype=np.float64)) / sr


def harmonic_stack(
    freq: np.ndarray, sr: int, amplitudes: list[float] | np.ndarray, ratios=None
) -> np.ndarray:
    """Sum of partials ``ratios[k] * freq`` (default harmonics 1, 2, ...) with ``amplitudes[k]``;
    a partial whose frequency passes ``top(sr)`` is faded out there, so nothing aliases."""
    freq = np.asarray(freq, dtype=np.float64)
    harmonic = ratios is None
    ratios = np.arange(1, len(amplitudes) + 1) if harmonic else np.asarray(ratios)
    base = phase(freq, sr)  # [N]
    out = np.zeros_like(freq)
    limit = top(sr)
    lowest, highest = (float(freq.min()), float(freq.max())) if freq.size else (0.0, 0.0)
    rotor = np.exp(1j * base) if harmonic else None  # harmonic k = rotor ** k, by products
    current = rotor.copy() if harmonic else None
    for index, (ratio, amplitude) in enumerate(zip(ratios, amplitudes)):
        if harmonic and index:
            current *= rotor
        if ratio * lowest >= limit:  # above the band all along (partials rise with k)
            if harmonic:
                break
            continue
        if amplitude == 0:
            continue
        wave = current.imag if harmonic else np.sin(ratio * base)
        if ratio * highest > 0.95 * limit:
            wave = wave * np.clip((limit - ratio * freq) / (0.05 * limit), 0.0, 1.0)
        out += amplitude * wave
    return out


def noise(rng: np.random.Generator, samples: int) -> np.ndarray:
    return rng.standard_normal(samples)


def pink_noise(rng: np.random.Generator, samples: int) -> np.ndarray:
    """Approximately 1/f noise (Paul Kellet's filter), unit-ish RMS."""
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    out = signal.lfilter(b, a, rng.standard_normal(samples + 2000))[2000:]
    return out / (np.std(out) + 1e-12)


def _norm(freq: float, sr: int) -> float:
    return float(np.clip(freq / (sr / 2), 1e-4, 0.99))


def lowpass(x: np.ndarray, freq: float, sr: int, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, _norm(freq, sr), btype="low", output="sos")
    return signal.sosfilt(sos, x)


def highpass(x: np.ndarray, freq: float, sr: int, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, _norm(freq, sr), btype="high", output="sos")
    return signal.sosfilt(sos, x)


def bandpass(x: np.ndarray, low: float, high: float, sr: int, order: int = 2) -> np.ndarray:
    low, high = _norm(low, sr), _norm(high, sr)
    if high <= low * 1.05:
        high = min(0.99, low * 1.1)
    sos = signal.butter(order, [low, high], btype="band", output="sos")
    return signal.sosfilt(sos, x)


def resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """Two-pole resonance at ``freq`` (Hz) with ``bandwidth`` (Hz), unit gain at the peak."""
    freq = cap(freq, sr)
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * freq / sr
    a = [1.0, -2 * r * np.cos(theta), r * r]
    b = [(1 - r * r) / 2, 0.0, -(1 - r * r) / 2]
    return signal.lfilter(b, a, x)


def swept_bandpass(
    x: np.ndarray, centers: np.ndarray, q: float, sr: int, block: int = 256
) -> np.ndarray:
    """Band-pass whose centre follows ``centers`` (Hz, [N]); coefficients change per block and
    the filter state carries over, so a slow sweep has no clicks."""
    out = np.empty_like(x)
    zi = np.zeros(2)
    for start in range(0, x.shape[0], block):
        stop = min(start + block, x.shape[0])
        freq = cap(float(centers[start]), sr)
        w0 = 2 * np.pi * freq / sr
        alpha = np.sin(w0) / (2 * q)
        b = np.array([alpha, 0.0, -alpha]) / (1 + alpha)
        a = np.array([1.0, -2 * np.cos(w0) / (1 + alpha), (1 - alpha) / (1 + alpha)])
        out[start:stop], zi = signal.lfilter(b, a, x[start:stop], zi=zi)
    return out


def swept_lowpass(x: np.ndarray, cutoffs: np.ndarray, sr: int, block: int = 256) -> np.ndarray:
    """One-pole-pair low-pass whose cutoff follows ``cutoffs`` (Hz, [N]), per block."""
    out = np.empty_like(x)
    zi = np.zeros(2)
    for start in range(0, x.shape[0], block):
        stop = min(start + block, x.shape[0])
        pole = np.exp(-2 * np.pi * cap(float(cutoffs[start]), sr) / sr)
        b = np.array([(1 - pole) ** 2, 0.0, 0.0])
        a = np.array([1.0, -2 * pole, pole * pole])
        out[start:stop], zi = signal.lfilter(b, a, x[start:stop], zi=zi)
    return out


def attack_decay(samples: int, sr: int, attack: float, decay: float) -> np.ndarray:
    """Linear attack of ``attack`` s then exponential decay with time constant ``decay`` s."""
    t = times(samples, sr)
    rise = np.clip(t / max(attack, 1.0 / sr), 0.0, 1.0)
    fall = np.exp(-np.maximum(t - attack, 0.0) / max(decay, 1.0 / sr))
    return rise * fall


def gate(samples: int, sr: int, fade: float) -> np.ndarray:
    """1 inside, linear fades of ``fade`` s at both ends (at most a quarter each)."""
    env = np.ones(samples)
    ramp = min(samples_of(fade, sr), samples // 4)
    if ramp > 0:
        line = np.linspace(0.0, 1.0, ramp, endpoint=False)
        env[:ramp] = line
        env[samples - ramp :] = line[::-1]
    return env


def fade_edges(
    x: np.ndarray, sr: int, fade_in: float = 0.005, fade_out: float = 0.03
) -> np.ndarray:
    x = x.copy()
    n_in, n_out = (
        min(samples_of(fade_in, sr), x.shape[0]),
        min(samples_of(fade_out, sr), x.shape[0]),
    )
    if n_in:
        x[:n_in] *= np.linspace(0.0, 1.0, n_in, endpoint=False)
    if n_out:
        x[x.shape[0] - n_out :] *= np.linspace(1.0, 0.0, n_out)
    return x


def place(buffer: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add ``x`` into ``buffer`` from sample ``start`` (clipped at the end)."""
    stop = min(buffer.shape[0], start + x.shape[0])
    if stop > start:
        buffer[start:stop] += x[: stop - start]


def envelope(x: np.ndarray, sr: int, frame: float = 0.01) -> np.ndarray:
    """Peak amplitude per frame of ``frame`` seconds, [frames]."""
    size = max(1, samples_of(frame, sr))
    count = -(-x.shape[0] // size)
    padded = np.zeros(count * size)
    padded[: x.shape[0]] = np.abs(x)
    return padded.reshape(count, size).max(axis=1)


def audible_span(x: np.ndarray, sr: int, floor_db: float = -50.0) -> tuple[int, int]:
    """(first, stop) samples of the part of ``x`` above ``floor_db`` of its peak (5 ms frames)."""
    size = max(1, samples_of(0.005, sr))
    env = envelope(x, sr, 0.005)
    peak = env.max() if env.size else 0.0
    if peak <= 0:
        return 0, 0
    loud = np.flatnonzero(env >= peak * 10 ** (floor_db / 20))
    return int(loud[0] * size), int(min(x.shape[0], (loud[-1] + 1) * size))


def peak(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def unit_peak(x: np.ndarray) -> np.ndarray:
    p = peak(x)
    return x / p if p > 0 else x


def db(value: float) -> float:
    return 10 ** (value / 20)
