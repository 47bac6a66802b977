"""The sound sources: one seeded synthesiser per event class, numpy/scipy only.

Each source takes a :class:`Request` (random generator, sample rate, seconds, count, pitch
and speed factors) and returns the dry sound (mono float64, any scale) and a dict of the
random details it drew (JSON-ready, for the metadata). Every detail is drawn from the
request's generator, so the same generator state gives the same sound.

Discrete sources (barks, knocks, beeps, ...) play ``count`` bursts (a random 2-8 when no
count is asked) and fit them into ``seconds`` by tightening the spacing down to a minimum;
continuous sources (rain, wind, engine, ...) last exactly ``seconds``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

from ezaudio.synth import dsp


@dataclass(frozen=True)
class Request:
    """What a source is asked to render."""

    rng: np.random.Generator
    sr: int
    seconds: float  # continuous: the length; discrete: the most it may last
    count: int | None = None  # bursts of a countable class (None: the source decides)
    pitch: float = 1.0  # frequency factor (low < 1 < high)
    speed: float = 1.0  # rate factor (slow < 1 < fast)


Rendered = tuple[np.ndarray, dict]


@dataclass(frozen=True)
class EventClass:
    """One class of sound event and how it may vary."""

    name: str  # id used in metadata, e.g. "dog_bark"
    label: str  # human name, e.g. "dog bark"
    render: Callable[[Request], Rendered]
    countable: bool = False  # has a count (once, twice, three times)
    rhythmic: bool = False  # has a speed (slow, fast)
    pitched: bool = False  # has a pitch (low, high)
    ambient: bool = False  # can be a long bed "in the background"
    seconds: tuple[float, float] = (2.0, 5.0)  # natural length of a continuous event
    min_seconds: float = 1.0  # shortest slot that holds three bursts / a recognisable sound
    description: str = ""


# ---- discrete helpers -----------------------------------------------------------------------


def _sequence(
    req: Request,
    unit: Callable[[int], np.ndarray],
    ioi: Callable[[int], float],
    min_ioi: float,
    default_count: tuple[int, int],
    choke: bool = False,
) -> tuple[np.ndarray, list[float]]:
    """Play ``unit(k)`` bursts ``ioi(k)`` seconds apart, fitted into ``req.seconds``.

    The count is ``req.count`` (kept exactly: the spacing shrinks, down to ``min_ioi``) or a
    random one in ``default_count`` (bursts that do not fit are dropped). With ``choke`` a
    burst is damped when the next one starts (a re-plucked string). Returns the audio and the
    burst onsets (seconds from the start).
    """
    rng, sr = req.rng, req.sr
    count = req.count or int(rng.integers(default_count[0], default_count[1] + 1))
    gaps = np.array([ioi(k) for k in range(count - 1)], dtype=np.float64)
    waves = [unit(k) for k in range(count)]
    core = min(0.25, waves[-1].shape[0] / sr)  # the last burst may lose its decay, not more
    if gaps.size and gaps.sum() + core > req.seconds:
        if req.count is None:
            while gaps.size and max(gaps.sum(), min_ioi * gaps.size) + core > req.seconds:
                gaps, waves = gaps[:-1], waves[:-1]
        if gaps.size:
            scale = (req.seconds - core) / gaps.sum()
            gaps = np.maximum(gaps * min(scale, 1.0), min_ioi)
    onsets = np.concatenate([[0.0], np.cumsum(gaps)])
    length = max(dsp.samples_of(onsets[-1], sr) + waves[-1].shape[0], 1)
    # an asked-for count is kept even past the slot (then at least the core of the last
    # burst); the caller's slot allows for that (EventClass.min_seconds)
    room = max(req.seconds, onsets[-1] + core) if req.count else req.seconds
    length = min(length, max(dsp.samples_of(room, sr), 1))
    out = np.zeros(length)
    for position, (start, wave) in enumerate(zip(onsets, waves)):
        if choke and position + 1 < len(onsets):
            keep = dsp.samples_of(onsets[position + 1] - start, sr)
            wave = dsp.fade_edges(wave[:keep], sr, fade_in=0.0, fade_out=0.015)
        dsp.place(out, wave, dsp.samples_of(start, sr))
    return out, [round(float(t), 4) for t in onsets]


def _r(value: float, digits: int = 2) -> float:
    return round(float(value), digits)


# ---- the sources ----------------------------------------------------------------------------


def dog_bark(req: Request) -> Rendered:
    """Noisy harmonic bursts with a rising-falling pitch glide, shaped by two formants."""
    rng, sr = req.rng, req.sr
    f0 = rng.uniform(330, 520) * req.pitch
    formants = np.array([rng.uniform(500, 750), rng.uniform(1100, 1700)]) * req.pitch**0.5
    breath = rng.uniform(0.25, 0.5)
    length = rng.uniform(0.12, 0.2)

    def unit(_k: int) -> np.ndarray:
        d = length * rng.uniform(0.85, 1.15)
        n = dsp.samples_of(d, sr)
        t = dsp.times(n, sr)
        glide = 0.85 + 0.45 * np.sin(np.pi * np.clip(t / d * 1.2, 0, 1))
        freq = f0 * rng.uniform(0.93, 1.07) * glide
        voiced = dsp.harmonic_stack(freq, sr, [1.0 / k for k in range(1, 25)])
        source = voiced + breath * np.std(voiced) * rng.standard_normal(n)
        shaped = (
            dsp.resonator(source, formants[0], 180, sr)
            + 0.7 * dsp.resonator(source, formants[1], 260, sr)
            + 0.15 * source
        )
        return shaped * dsp.attack_decay(n, sr, 0.008, d * 0.3)

    audio, hits = _sequence(req, unit, lambda _k: rng.uniform(0.35, 0.6), length + 0.15, (3, 6))
    return audio, {"f0": _r(f0), "formants": [_r(f) for f in formants], "hits": hits}


BELL_RATIOS = (0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 2.66, 3.01, 4.12)
BELL_AMPS = (0.5, 1.0, 0.5, 0.35, 0.7, 0.3, 0.25, 0.2, 0.12)


def bell(req: Request) -> Rendered:
    """Inharmonic partials (hum, prime, minor third, fifth, nominal, ...) decaying
    exponentially, the higher ones faster, struck by a short click."""
    rng, sr = req.rng, req.sr
    f = rng.uniform(300, 520) * req.pitch
    ratios = np.array(BELL_RATIOS) * (1 + rng.normal(0, 0.006, len(BELL_RATIOS)))
    amps = np.array(BELL_AMPS) * rng.uniform(0.7, 1.3, len(BELL_AMPS))
    ring = rng.uniform(0.5, 0.9) / req.pitch**0.3

    def unit(_k: int) -> np.ndarray:
        n = dsp.samples_of(min(3.0, 3 * ring * 1.5), sr)
        t = dsp.times(n, sr)
        out = np.zeros(n)
        for ratio, amp in zip(ratios, amps):
            partial = ratio * f
            if partial < dsp.top(sr):
                tau = ring * 1.2 / ratio**0.6
                out += (
                    amp
                    * np.sin(2 * np.pi * partial * t + rng.uniform(0, 2 * np.pi))
                    * np.exp(-t / tau)
                )
        click = dsp.highpass(rng.standard_normal(n) * np.exp(-t / 0.003), 1500, sr)
        return (out + 0.3 * click) * np.clip(t / 0.002, 0, 1)

    audio, hits = _sequence(req, unit, lambda _k: rng.uniform(0.9, 1.5), 0.6, (2, 4))
    return audio, {"strike_hz": _r(f), "ring_s": _r(ring), "hits": hits}


def siren(req: Request) -> Rendered:
    """A bright tone whose pitch sweeps up and down (slow wail; fast = yelp)."""
    rng, sr = req.rng, req.sr
    n = dsp.samples_of(req.seconds, sr)
    t = dsp.times(n, sr)
    centre = rng.uniform(650, 950) * req.pitch
    depth = rng.uniform(0.25, 0.38)
    rate = max(rng.uniform(0.25, 0.5) * req.speed**2.2, 0.8 / max(req.seconds, 0.1))
    sweep = np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    freq = centre * (1 + depth * sweep) * (1 + 0.004 * np.sin(2 * np.pi * 6 * t))
    tone = dsp.harmonic_stack(freq, sr, [1.0, 0.5, 0.33, 0.25, 0.2, 0.12])
    return tone * dsp.gate(n, sr, 0.08), {"centre_hz": _r(centre), "sweep_hz": _r(rate, 3)}


def car_horn(req: Request) -> Rendered:
    """Two harmonic tones a third apart, slightly rough, in honks."""
    rng, sr = req.rng, req.sr
    f1 = rng.uniform(330, 440) * req.pitch
    f2 = f1 * rng.uniform(1.2, 1.27)
    length = rng.uniform(0.25, 0.55)
    rough = rng.uniform(30, 60)
    amps = [1.0 / k for k in range(1, 16)]

    def unit(_k: int) -> np.ndarray:
        n = dsp.samples_of(length * rng.uniform(0.75, 1.3), sr)
        t = dsp.times(n, sr)
        tone = dsp.harmonic_stack(np.full(n, f1), sr, amps) + dsp.harmonic_stack(
            np.full(n, f2), sr, amps
        )
        tone *= 1 + 0.12 * np.sin(2 * np.pi * rough * t)
        tone = dsp.bandpass(tone, 250, 3200, sr)
        return tone * dsp.gate(n, sr, 0.012)

    audio, hits = _sequence(
        req, unit, lambda _k: length * 1.3 + rng.uniform(0.12, 0.3), length * 1.3 + 0.1, (2, 4)
    )
    return audio, {"tones_hz": [_r(f1), _r(f2)], "hits": hits}


def footsteps(req: Request) -> Rendered:
    """Heel-and-toe transients of filtered noise with a low thump, at a walking rate."""
    rng, sr = req.rng, req.sr
    rate = rng.uniform(1.6, 2.1) * req.speed
    centre = rng.uniform(350, 1100)
    n = dsp.samples_of(req.seconds, sr)
    out = np.zeros(n)
    step = dsp.samples_of(0.15, sr)
    t = dsp.times(step, sr)
    thump_hz = rng.uniform(70, 120)
    hits = []
    time = rng.uniform(0.0, 0.05)
    while time < req.seconds - 0.12:
        scale = rng.uniform(0.7, 1.0)
        heel = dsp.bandpass(rng.standard_normal(step), centre * 0.5, centre * 3, sr)
        heel *= np.exp(-t / 0.015)
        thump = np.sin(2 * np.pi * thump_hz * t) * np.exp(-t / 0.03)
        toe = np.zeros(step)
        lag = dsp.samples_of(rng.uniform(0.03, 0.06), sr)
        toe[lag:] = 0.5 * heel[: step - lag]
        dsp.place(
            out, scale * (heel + toe + 0.4 * np.std(heel) / 0.35 * thump), dsp.samples_of(time, sr)
        )
        hits.append(round(time, 4))
        time += (1 / rate) * rng.uniform(0.95, 1.05)
    return out, {"steps_per_s": _r(rate), "surface_hz": _r(centre), "hits": hits}


def knocking(req: Request) -> Rendered:
    """Low damped resonant clicks (a wooden door), in a group."""
    rng, sr = req.rng, req.sr
    f = rng.uniform(140, 260) * req.pitch
    modes = [(f, 1.0, rng.uniform(0.035, 0.06)), (f * rng.uniform(2.3, 2.8), 0.5, 0.02)]
    spacing = rng.uniform(0.17, 0.26)

    def unit(_k: int) -> np.ndarray:
        n = dsp.samples_of(0.15, sr)
        t = dsp.times(n, sr)
        out = sum(a * np.sin(2 * np.pi * fm * t) * np.exp(-t / tau) for fm, a, tau in modes)
        click = dsp.bandpass(rng.standard_normal(n), 800, 4000, sr) * np.exp(-t / 0.002)
        return rng.uniform(0.8, 1.0) * (out + 0.25 * click)

    audio, hits = _sequence(req, unit, lambda _k: spacing * rng.uniform(0.92, 1.08), 0.13, (3, 6))
    return audio, {"door_hz": _r(f), "spacing_s": _r(spacing, 3), "hits": hits}


def _droplets(rng: np.random.Generator, n: int, sr: int, rate: float) -> np.ndarray:
    """Random clicks: ``rate`` per second, each a tiny decaying sine of random pitch."""
    out = np.zeros(n)
    bands = np.geomspace(1500, dsp.cap(6500, sr), 5)
    for freq in bands:
        count = rng.poisson(rate / len(bands) * n / sr)
        train = np.zeros(n)
        train[rng.integers(0, n, count)] = rng.exponential(1.0, count)
        t = dsp.times(dsp.samples_of(0.012, sr), sr)
        kernel = np.sin(2 * np.pi * freq * rng.uniform(0.9, 1.1) * t) * np.exp(-t / 0.003)
        out += signal.fftconvolve(train, kernel)[:n]
    return out


def rain(req: Request) -> Rendered:
    """Dense random droplet clicks over a band-passed noise wash."""
    rng, sr = req.rng, req.sr
    n = dsp.samples_of(req.seconds, sr)
    density = rng.uniform(150, 600)
    drops = _droplets(rng, n, sr, density)
    wash = dsp.bandpass(dsp.pink_noise(rng, n), 400, dsp.top(sr), sr)
    swell = 1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * dsp.times(n, sr))
    out = drops / (np.std(drops) + 1e-12) + rng.uniform(0.6, 1.2) * wash * swell
    return out * dsp.gate(n, sr, 0.2), {"drops_per_s": _r(density, 0)}


def _slow_wobble(rng: np.random.Generator, n: int, sr: int, low: float, high: float) -> np.ndarray:
    """Sum of three slow sines (``low``..``high`` Hz), scaled to -1..1."""
    t = dsp.times(n, sr)
    out = sum(
        np.sin(2 * np.pi * rng.uniform(low, high) * t + rng.uniform(0, 2 * np.pi)) for _ in range(3)
    )
    return out / 3


def wind(req: Request) -> Rendered:
    """Noise through a band-pass whose centre and level drift with slow gusts."""
    rng, sr = req.rng, req.sr
    n = dsp.samples_of(req.seconds, sr)
    centre = rng.uniform(300, 800)
    gust = _slow_wobble(rng, n, sr, 0.05, 0.4)
    howl = dsp.swept_bandpass(rng.standard_normal(n), centre * (1 + 0.5 * gust), 3.0, sr)
    rumble = dsp.lowpass(dsp.pink_noise(rng, n), 150, sr)
    level = 0.45 + 0.55 * (gust + 1) / 2
    out = level * (howl / (np.std(howl) + 1e-12) + 0.5 * rumble / (np.std(rumble) + 1e-12))
    return out * dsp.gate(n, sr, 0.2), {"centre_hz": _r(centre)}


def sea_waves(req: Request) -> Rendered:
    """Low-passed noise that swells and crashes (the cut-off opens with each wave)."""
    rng, sr = req.rng, req.sr
    n = dsp.samples_of(req.seconds, sr)
    t = dsp.times(n, sr)
    period = rng.uniform(3.5, 6.0) / req.speed
    start = rng.uniform(0.2, 0.6) * period
    wave_env = np.zeros(n)
    crest = []
    time = -start
    while time < req.seconds:
        local = t - time
        rise = 0.55 * period
        shape = np.where(
            local < rise,
            (np.clip(local, 0, None) / rise) ** 2,
            np.exp(-(local - rise) / (0.25 * period)),
        )
        shape[local < 0] = 0
        wave_env = np.maximum(wave_env, shape * rng.uniform(0.7, 1.0))
        if time + rise >= 0:
            crest.append(round(time + rise, 3))
        time += period * rng.uniform(0.85, 1.15)
    surf = dsp.swept_lowpass(rng.standard_normal(n), 250 + 2500 * wave_env, sr)
    surf /= np.std(surf) + 1e-12
    bed = dsp.lowpass(dsp.pink_noise(rng, n), 300, sr)
    bed /= np.std(bed) + 1e-12
    out = (0.25 + wave_env) * surf + 0.3 * bed
    return out * dsp.gate(n, sr, 0.1), {"period_s": _r(period), "crests": crest}


def engine(req: Request) -> Rendered:
    """A low harmonic drone at the firing rate with jitter, plus rumble."""
    rng, sr = req.rng, req.sr
    n = dsp.samples_of(req.seconds, sr)
    f0 = rng.uniform(30, 55) * req.pitch
    drift = np.cumsum(rng.standard_normal(n)) / np.sqrt(n)  # a slow random walk
    drift = dsp.lowpass(drift, 2.0, sr)
    freq = f0 * (1 + 0.03 * drift / (np.max(np.abs(drift)) + 1e-12))
    cutoff = rng.uniform(900, 2000) * req.pitch
    amps = np.array([k**-0.8 for k in range(1, 41)]) * rng.uniform(0.5, 1.2, 40)
    amps = amps[: max(1, int(2 * cutoff / (1.05 * f0)))]  # the low-pass removes the rest
    drone = dsp.harmonic_stack(freq, sr, amps)
    drone *= 1 + 0.2 * np.sin(dsp.phase(freq / 2, sr))  # uneven cylinders
    rumble = dsp.lowpass(dsp.pink_noise(rng, n), 300 * req.pitch, sr)
    out = drone / (np.std(drone) + 1e-12) + 0.3 * rumble
    out = dsp.lowpass(out, cutoff, sr)
    return out * dsp.gate(n, sr, 0.15), {"f0": _r(f0)}


def bird(req: Request) -> Rendered:
    """Fast up/down frequency sweeps with a little trill."""
    rng, sr = req.rng, req.sr
    base = dsp.cap(rng.uniform(2200, 3400) * req.pitch, sr) * 0.85
    span = rng.uniform(0.2, 0.5)
    up = rng.random() < 0.5
    length = rng.uniform(0.05, 0.11)

    def unit(_k: int) -> np.ndarray:
        d = length * rng.uniform(0.85, 1.15)
        n = dsp.samples_of(d, sr)
        t = dsp.times(n, sr)
        shape = np.sin(np.pi * t / d) if not up else t / d
        freq = base * (1 + span * shape) * (1 + 0.03 * np.sin(2 * np.pi * 60 * t))
        freq = np.minimum(freq, dsp.top(sr))
        tone = np.sin(dsp.phase(freq, sr)) + 0.15 * np.sin(2 * dsp.phase(freq, sr))
        return tone * np.sin(np.pi * t / d) ** 1.5

    audio, hits = _sequence(req, unit, lambda _k: rng.uniform(0.16, 0.35), length + 0.08, (4, 8))
    return audio, {"base_hz": _r(base), "hits": hits}


def clock(req: Request) -> Rendered:
    """Regular short clicks ringing at a few kHz, tick and tock a little apart in pitch."""
    rng, sr = req.rng, req.sr
    n = dsp.samples_of(req.seconds, sr)
    rate = rng.uniform(1.6, 2.4) * req.speed
    f1 = dsp.cap(rng.uniform(1800, 3200), sr)
    out = np.zeros(n)
    m = dsp.samples_of(0.04, sr)
    t = dsp.times(m, sr)
    hits = []
    k = 0
    time = rng.uniform(0.0, 0.05)
    while time < req.seconds - 0.04:
        f = f1 if k % 2 == 0 else f1 * 0.85
        tick = np.sin(2 * np.pi * f * t) * np.exp(-t / 0.006)
        tick += 0.5 * np.sin(2 * np.pi * dsp.cap(f * 1.5, sr) * t) * np.exp(-t / 0.004)
        tick += 0.3 * dsp.highpass(rng.standard_normal(m), 2000, sr) * np.exp(-t / 0.0015)
        dsp.place(out, tick, dsp.samples_of(time, sr))
        hits.append(round(time, 4))
        k += 1
        time += 1 / rate
    return out, {"ticks_per_s": _r(rate, 3), "ring_hz": _r(f1), "hits": hits}


def alarm_beep(req: Request) -> Rendered:
    """An on/off square-ish tone."""
    rng, sr = req.rng, req.sr
    f = dsp.cap(rng.uniform(1500, 2600) * req.pitch, sr)
    on = max(0.05, rng.uniform(0.08, 0.2) / req.speed)
    off = max(0.05, rng.uniform(0.08, 0.2) / req.speed)
    amps = [1.0, 0, 1 / 3, 0, 1 / 5, 0, 1 / 7]

    def unit(_k: int) -> np.ndarray:
        m = dsp.samples_of(on, sr)
        return dsp.harmonic_stack(np.full(m, f), sr, amps) * dsp.gate(m, sr, 0.004)

    audio, hits = _sequence(req, unit, lambda _k: on + off, on + 0.05, (4, 9))
    return audio, {"tone_hz": _r(f), "on_s": _r(on, 3), "off_s": _r(off, 3), "hits": hits}


def telephone(req: Request) -> Rendered:
    """Two beating tones warbled on/off at ~20 Hz, in single or double rings."""
    rng, sr = req.rng, req.sr
    f1 = rng.uniform(400, 480) * req.pitch
    f2 = f1 * rng.uniform(1.08, 1.15)
    warble = rng.uniform(15, 22)
    double = bool(rng.random() < 0.5)
    ring_len = rng.uniform(0.7, 1.1) if not double else 1.0
    amps = [1.0, 0.3, 0.15]

    def unit(_k: int) -> np.ndarray:
        m = dsp.samples_of(ring_len, sr)
        t = dsp.times(m, sr)
        tone = dsp.harmonic_stack(np.full(m, f1), sr, amps) + dsp.harmonic_stack(
            np.full(m, f2), sr, amps
        )
        trill = 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * warble * t))
        env = dsp.gate(m, sr, 0.01)
        if double:
            env *= ((t < 0.4) | (t >= 0.6)).astype(float)
            env = dsp.lowpass(env, 60, sr)
        return tone * trill * env

    audio, hits = _sequence(
        req, unit, lambda _k: ring_len + rng.uniform(0.5, 1.2), ring_len + 0.25, (2, 4)
    )
    return audio, {"tones_hz": [_r(f1), _r(f2)], "double_ring": double, "hits": hits}


def whistle(req: Request) -> Rendered:
    """A breathy whistle tone with vibrato (and sometimes a referee's pea trill)."""
    rng, sr = req.rng, req.sr
    f = dsp.cap(rng.uniform(1400, 2500) * req.pitch, sr) / 1.02
    trill = rng.uniform(0.0, 0.6) if rng.random() < 0.5 else 0.0
    trill_hz = rng.uniform(25, 40)
    length = rng.uniform(0.25, 0.6)

    def unit(_k: int) -> np.ndarray:
        m = dsp.samples_of(length * rng.uniform(0.8, 1.25), sr)
        t = dsp.times(m, sr)
        freq = f * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(5, 7) * t))
        tone = np.sin(dsp.phase(freq, sr)) + 0.1 * np.sin(2 * dsp.phase(freq, sr))
        breath = dsp.bandpass(rng.standard_normal(m), f * 0.8, f * 1.25, sr)
        sound = tone + 0.15 * breath / (np.std(breath) + 1e-12)
        sound *= 1 - trill * (0.5 + 0.5 * np.sin(2 * np.pi * trill_hz * t))
        return sound * dsp.gate(m, sr, 0.02)

    audio, hits = _sequence(
        req, unit, lambda _k: length * 1.25 + rng.uniform(0.15, 0.35), length * 1.25 + 0.1, (2, 4)
    )
    return audio, {"tone_hz": _r(f), "trill": _r(trill), "hits": hits}


def drum(req: Request) -> Rendered:
    """A beat of low drum hits (pitch dropping from a click) and higher snare-like hits."""
    rng, sr = req.rng, req.sr
    n = dsp.samples_of(req.seconds, sr)
    bpm = rng.uniform(85, 125) * req.speed
    step = 60 / bpm / 2  # eighth notes
    low_hz = rng.uniform(50, 80) * req.pitch
    high_hz = low_hz * rng.uniform(2.5, 3.5)
    pattern = rng.random(8) < 0.35
    pattern[0] = True
    snare = rng.random(8) < 0.5
    snare[0] = False
    m = dsp.samples_of(0.35, sr)
    t = dsp.times(m, sr)
    decay = rng.uniform(0.1, 0.2)

    def hit(freq: float, noisy: bool) -> np.ndarray:
        sweep = freq * (1 + 1.5 * np.exp(-t / 0.03))
        body = np.sin(dsp.phase(sweep, sr)) * np.exp(-t / decay)
        if noisy:
            rattle = dsp.bandpass(rng.standard_normal(m), 1000 * req.pitch, 5000 * req.pitch, sr)
            body = 0.6 * body + 0.5 * rattle * np.exp(-t / 0.05)
        return body

    out = np.zeros(n)
    hits = []
    k = 0
    while k * step < req.seconds - 0.1:
        slot = k % 8
        if pattern[slot] or snare[slot]:
            wave = hit(high_hz if snare[slot] else low_hz, bool(snare[slot]))
            dsp.place(out, rng.uniform(0.8, 1.0) * wave, dsp.samples_of(k * step, sr))
            hits.append(round(k * step, 4))
        k += 1
    return out, {"bpm": _r(bpm, 1), "low_hz": _r(low_hz), "hits": hits}


PENTATONIC = (0, 2, 4, 7, 9, 12)


def plucked_string(req: Request) -> Rendered:
    """Karplus-Strong plucks (a noise burst in a damped delay loop)."""
    rng, sr = req.rng, req.sr
    f0 = rng.uniform(150, 330) * req.pitch
    damping = rng.uniform(0.992, 0.998)
    bright = rng.uniform(1500, 4000) * req.pitch
    melody = req.count is None

    def unit(_k: int) -> np.ndarray:
        step = int(rng.choice(PENTATONIC)) if melody else 0
        period = max(2, round(sr / (f0 * 2 ** (step / 12)) - 0.5))
        m = dsp.samples_of(1.6, sr)
        burst = np.zeros(m)
        burst[:period] = dsp.lowpass(rng.uniform(-1, 1, period), bright, sr)
        a = np.zeros(period + 2)
        a[0], a[period], a[period + 1] = 1.0, -damping / 2, -damping / 2
        return signal.lfilter([1.0], a, burst)

    audio, hits = _sequence(
        req, unit, lambda _k: rng.uniform(0.35, 0.7), 0.25, (3, 6), choke=not melody
    )
    return audio, {"f0": _r(f0), "hits": hits}


MAJOR = (0, 2, 4, 5, 7, 9, 11, 12)


def piano(req: Request) -> Rendered:
    """Decaying, slightly inharmonic partials (stiff strings) with a hammer thump."""
    rng, sr = req.rng, req.sr
    f0 = rng.uniform(200, 420) * req.pitch
    stiffness = rng.uniform(1e-4, 4e-4)
    strike = rng.uniform(1 / 9, 1 / 7)
    sustain = rng.uniform(0.6, 1.2) / req.pitch**0.5
    melody = req.count is None

    def unit(_k: int) -> np.ndarray:
        step = int(rng.choice(MAJOR)) if melody else 0
        f = f0 * 2 ** (step / 12)
        m = dsp.samples_of(min(2.5, 3 * sustain), sr)
        t = dsp.times(m, sr)
        out = np.zeros(m)
        for k in range(1, 40):
            fk = k * f * np.sqrt(1 + stiffness * k * k)
            if fk >= dsp.top(sr):
                break
            amp = abs(np.sin(np.pi * k * strike)) / k**1.1 * rng.uniform(0.7, 1.2)
            tau = sustain / (1 + 0.2 * k)
            beat = np.sin(2 * np.pi * fk * 1.0007 * t)
            out += amp * (np.sin(2 * np.pi * fk * t) + 0.5 * beat) * np.exp(-t / tau)
        thump = dsp.lowpass(rng.standard_normal(m), 400, sr) * np.exp(-t / 0.01)
        return (out + 0.1 * thump) * np.clip(t / 0.003, 0, 1)

    audio, hits = _sequence(req, unit, lambda _k: rng.uniform(0.4, 0.75), 0.3, (3, 6))
    return audio, {"f0": _r(f0), "stiffness": float(f"{stiffness:.2e}"), "hits": hits}


def applause(req: Request) -> Rendered:
    """Many hand claps (short noise bursts, one band per clapper group) swelling and fading."""
    rng, sr = req.rng, req.sr
    n = dsp.samples_of(req.seconds, sr)
    clappers = int(rng.integers(8, 31))
    out = np.zeros(n)
    m = dsp.samples_of(0.03, sr)
    t = dsp.times(m, sr)
    for _ in range(4):
        centre = dsp.cap(rng.uniform(800, 2500), sr)
        rate = clappers / 4 * rng.uniform(3.0, 5.0)
        count = rng.poisson(rate * n / sr)
        train = np.zeros(n)
        train[rng.integers(0, n, count)] = rng.uniform(0.5, 1.0, count)
        kernel = dsp.bandpass(rng.standard_normal(m), centre * 0.6, centre * 1.6, sr)
        kernel *= np.exp(-t / 0.006)
        out += signal.fftconvolve(train, kernel)[:n]
    rise = np.clip(dsp.times(n, sr) / rng.uniform(0.1, 0.3), 0, 1)
    fall = np.clip((req.seconds - dsp.times(n, sr)) / rng.uniform(0.4, 0.8), 0, 1)
    return out * rise * fall * dsp.gate(n, sr, 0.01), {"clappers": clappers}


CLASSES: tuple[EventClass, ...] = (
    EventClass("dog_bark", "dog bark", dog_bark, countable=True, pitched=True, min_seconds=1.7,
               description="formant-filtered noisy harmonic bursts with a pitch glide"),
    EventClass("bell", "bell", bell, countable=True, pitched=True, min_seconds=2.0,
               description="inharmonic partials with exponential decay, struck"),
    EventClass("siren", "siren", siren, rhythmic=True, pitched=True, ambient=True,
               seconds=(3.0, 7.0), min_seconds=2.0,
               description="a bright tone sweeping up and down (speed = sweep rate)"),
    EventClass("car_horn", "car horn", car_horn, countable=True, pitched=True, min_seconds=2.0,
               description="two-tone harmonic stack in honks"),
    EventClass("footsteps", "footsteps", footsteps, rhythmic=True, ambient=True,
               seconds=(2.0, 5.0), min_seconds=1.5,
               description="heel/toe filtered-noise transients at a walking rate"),
    EventClass("knocking", "knocking", knocking, countable=True, min_seconds=1.0,
               description="low damped resonant clicks in a group"),
    EventClass("rain", "rain", rain, ambient=True, seconds=(3.0, 7.0), min_seconds=1.5,
               description="dense random droplet clicks over filtered noise"),
    EventClass("wind", "wind", wind, ambient=True, seconds=(3.0, 7.0), min_seconds=1.5,
               description="band-passed noise drifting with slow gusts"),
    EventClass("sea_waves", "sea waves", sea_waves, rhythmic=True, ambient=True,
               seconds=(4.0, 8.0), min_seconds=2.5,
               description="swelling low-passed noise (speed = wave period)"),
    EventClass("engine", "engine", engine, pitched=True, ambient=True, seconds=(3.0, 7.0),
               min_seconds=1.5, description="low harmonic drone with jitter and rumble"),
    EventClass("bird", "bird chirp", bird, countable=True, pitched=True, min_seconds=1.0,
               description="fast up/down FM chirps"),
    EventClass("clock", "clock tick", clock, rhythmic=True, ambient=True, seconds=(2.5, 5.0),
               min_seconds=1.5, description="regular short ringing clicks"),
    EventClass("alarm", "alarm beep", alarm_beep, countable=True, rhythmic=True, pitched=True,
               min_seconds=1.2, description="on/off square-ish tone"),
    EventClass("telephone", "telephone ring", telephone, countable=True, pitched=True,
               min_seconds=3.0, description="two beating tones warbled at ~20 Hz, in rings"),
    EventClass("whistle", "whistle", whistle, countable=True, pitched=True, min_seconds=2.0,
               description="breathy tone with vibrato, sometimes a pea trill"),
    EventClass("drum", "drum beat", drum, rhythmic=True, pitched=True, seconds=(2.0, 5.0),
               min_seconds=1.5, description="a beat of pitch-dropping low hits and snare hits"),
    EventClass("plucked_string", "plucked string", plucked_string, countable=True,
               pitched=True, min_seconds=1.5, description="Karplus-Strong plucks"),
    EventClass("piano", "piano note", piano, countable=True, pitched=True, min_seconds=1.6,
               description="decaying inharmonic partials with a hammer thump"),
    EventClass("applause", "applause", applause, ambient=True, seconds=(2.5, 6.0),
               min_seconds=1.5, description="many hand claps swelling and fading"),
)  # fmt: skip

BY_NAME: dict[str, EventClass] = {event.name: event for event in CLASSES}
