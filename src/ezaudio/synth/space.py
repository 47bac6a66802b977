"""Where an event sounds: distance and room, by a simple synthetic reverb.

The impulse response is exponentially decaying noise (reaching -60 dB after ``rt60``
seconds), darkened by a low-pass, after a short pre-delay; it is convolved with the dry sound
and mixed in with a wet share. "far" also low-passes the dry sound; "close" has no reverb
and a little extra low end (proximity). The default, "dry", is a faint short ambience that
captions do not mention.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ezaudio.synth import dsp

SPACES = ("dry", "close", "far", "small_room", "large_hall")
DEFAULT_SPACE = "dry"

# space -> (rt60 range s, wet share range, pre-delay range s, IR low-pass Hz)
ROOMS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float], float]] = {
    "dry": ((0.12, 0.25), (0.05, 0.1), (0.0, 0.003), 6000.0),
    "far": ((0.8, 1.3), (0.55, 0.7), (0.015, 0.03), 3000.0),
    "small_room": ((0.25, 0.5), (0.3, 0.4), (0.002, 0.006), 5000.0),
    "large_hall": ((1.6, 2.6), (0.45, 0.6), (0.02, 0.04), 4000.0),
}


def tail_seconds(space: str) -> float:
    """How long a reverb tail may add after the dry sound (the -40 dB point, at most)."""
    if space not in ROOMS:
        return 0.0
    return ROOMS[space][0][1] * 2 / 3


def impulse_response(rng: np.random.Generator, sr: int, rt60: float, predelay: float,
                     damping: float) -> np.ndarray:  # fmt: skip
    """Unit-energy IR: ``predelay`` of silence, then noise decaying 60 dB in ``rt60``."""
    n = dsp.samples_of(rt60, sr)
    t = dsp.times(n, sr)
    tail = dsp.lowpass(rng.standard_normal(n), damping, sr) * np.exp(-6.91 * t / rt60)
    ir = np.concatenate([np.zeros(dsp.samples_of(predelay, sr)), tail])
    return ir / (np.sqrt(np.sum(ir**2)) + 1e-12)


def apply_space(x: np.ndarray, space: str, rng: np.random.Generator, sr: int) -> tuple[
    np.ndarray, dict
]:  # fmt: skip
    """``x`` heard in ``space`` (one of :data:`SPACES`); returns the longer, wet sound and the
    reverb parameters drawn (for the metadata)."""
    if space == "close":
        return x + 0.4 * dsp.lowpass(x, 250, sr), {"reverb": None}
    (rt_lo, rt_hi), (wet_lo, wet_hi), (pre_lo, pre_hi), damping = ROOMS[space]
    rt60, wet = rng.uniform(rt_lo, rt_hi), rng.uniform(wet_lo, wet_hi)
    predelay = rng.uniform(pre_lo, pre_hi)
    ir = impulse_response(rng, sr, rt60, predelay, damping)
    dry = dsp.lowpass(x, rng.uniform(1500, 3000), sr) if space == "far" else x
    wet_sound = signal.fftconvolve(dry, ir)
    scale = np.std(dry) / (np.std(wet_sound[: dry.shape[0]]) + 1e-12)
    out = wet * scale * wet_sound
    out[: dry.shape[0]] += (1 - wet) * dry
    params = {"reverb": {"rt60_s": round(rt60, 2), "wet": round(wet, 2)}}
    return out, params
