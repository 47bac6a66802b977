"""Scenes: one to three events with their attributes, placed in time and mixed.

A scene has one or two foreground events, in ``sequence`` (one after the other, with a gap)
or ``overlap`` (the second starts while the first sounds), or three in sequence, and
optionally one ambient event ``in the background`` (a long bed at about -10 dB). Most scenes
start with a stretch of silence, and events in a sequence are separated by silence.

Loudness sets the level of an event's peak in the mix (quiet -20 dB, normal -9 dB, loud
-1 dB, +-1.5 dB of jitter) and a little of its timbre (loud: soft saturation; quiet: duller).
The mix is peak-normalised to the level of its loudest event, so a quiet scene stays quiet,
and a faint constant noise floor (-72 dBFS RMS) is added so that loudness still shows after a
training loader normalises each clip's peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ezaudio.synth import dsp
from ezaudio.synth.sources import BY_NAME, CLASSES, EventClass, Request
from ezaudio.synth.space import DEFAULT_SPACE, SPACES, apply_space, tail_seconds

LOUDNESS = {"quiet": 0.1, "normal": 0.35, "loud": 0.9}  # peak level of the event in the mix
PITCH = {"low": 0.6, "normal": 1.0, "high": 1.65}  # frequency factor
SPEED = {"slow": 0.6, "normal": 1.0, "fast": 1.65}  # rate factor
COUNTS = (1, 2, 3)
BACKGROUND_GAIN = 0.3  # a background bed's level relative to a normal event
NOISE_FLOOR_DB = -72.0  # RMS of the constant noise floor (dBFS); None: no floor
MIN_SECONDS = 2.0  # shortest clip a scene fits in
ATTRIBUTE_SHARE = 0.45  # chance that an attribute is set to a non-default value
DEFAULTS = {"loudness": "normal", "pitch": "normal", "speed": "normal", "space": DEFAULT_SPACE}
RELATIONS = ("single", "sequence", "overlap")
ROLES = ("foreground", "background")


@dataclass
class Event:
    """One event of a scene, as placed in the clip."""

    cls: str  # class name (see sources.CLASSES)
    role: str  # "foreground" | "background"
    onset: float  # seconds from the start of the clip (first audible sample)
    offset: float  # seconds (last audible sample, reverb tail included)
    attributes: dict  # loudness, space, and pitch / speed / count where the class has them
    gain: float  # peak amplitude of the event in the final mix
    params: dict = field(default_factory=dict)  # the random details drawn by the source

    def mentioned(self) -> list[str]:
        """The attributes a faithful caption mentions: those not at their default."""
        return mentioned(self.attributes)

    def to_json(self) -> dict:
        record = asdict(self)
        return {"class": record.pop("cls"), **record}


@dataclass
class Scene:
    audio: np.ndarray  # float32 [samples]
    sample_rate: int
    relation: str  # single | sequence | overlap (of the foreground events)
    background: bool  # whether the last event is a background bed
    events: list[Event]  # foreground in temporal order, then the background one

    @property
    def foreground(self) -> list[Event]:
        return [event for event in self.events if event.role == "foreground"]


def mentioned(attributes: dict) -> list[str]:
    keys = [key for key in ("loudness", "pitch", "speed", "space") if key in attributes]
    names = [key for key in keys if attributes[key] != DEFAULTS[key]]
    if attributes.get("count") is not None:
        names.insert(0, "count")
    return names


def default_attributes(event_class: EventClass) -> dict:
    """The attributes of ``event_class`` at their defaults (count None: unspecified)."""
    attributes: dict = {"loudness": "normal", "space": DEFAULT_SPACE}
    if event_class.pitched:
        attributes["pitch"] = "normal"
    if event_class.rhythmic:
        attributes["speed"] = "normal"
    if event_class.countable:
        attributes["count"] = None
    return attributes


def sample_attributes(
    rng: np.random.Generator, event_class: EventClass, role: str, most: int
) -> dict:
    """Random attributes: a count (70 % of countable events) and at most ``most`` others
    away from their defaults."""
    attributes = default_attributes(event_class)
    if event_class.countable and rng.random() < 0.7:
        attributes["count"] = int(rng.choice(COUNTS))
    keys = [key for key in ("loudness", "space", "pitch", "speed") if key in attributes]
    if role == "background":
        keys.remove("loudness")  # a bed's level is fixed
    for key in rng.permutation(keys):
        choice = {
            "loudness": ("quiet", "loud"),
            "pitch": ("low", "high"),
            "speed": ("slow", "fast"),
            "space": tuple(space for space in SPACES if space != DEFAULT_SPACE),
        }[str(key)]
        pick = str(rng.choice(choice))
        if most > 0 and rng.random() < ATTRIBUTE_SHARE:
            attributes[str(key)] = pick
            most -= 1
    return attributes


def check_attributes(event_class: EventClass, attributes: dict) -> dict:
    """``attributes`` completed with defaults; raises ValueError for a value out of range."""
    full = default_attributes(event_class)
    for key, value in attributes.items():
        if key not in full:
            raise ValueError(f"{event_class.name} has no attribute {key!r}")
        allowed = {
            "loudness": LOUDNESS, "pitch": PITCH, "speed": SPEED, "space": SPACES,
            "count": (None, *COUNTS),
        }[key]  # fmt: skip
        if value not in allowed:
            raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")
        full[key] = value
    return full


def render_event(
    name: str,
    attributes: dict,
    rng: np.random.Generator,
    sr: int,
    seconds: float,
    limit: float | None = None,
) -> tuple[np.ndarray, int, dict]:
    """Render one event: the source, its loudness timbre, its space; trimmed to what is
    audible (above -50 dB of its peak) and scaled to unit peak.

    ``seconds`` is the length of a continuous event or the most a discrete one may last;
    ``limit`` (default ``seconds``) the most the result may last, reverb tail included; an
    exact count needs a ``limit`` of at least the class's ``min_seconds``.
    Returns (audio [N], samples trimmed from the start, params).
    """
    event_class = BY_NAME[name]
    attributes = check_attributes(event_class, attributes)
    limit = seconds if limit is None else limit
    space = attributes["space"]
    dry_seconds = max(0.2, min(seconds, limit - min(tail_seconds(space), 0.35 * limit)))
    request = Request(
        rng=rng, sr=sr, seconds=dry_seconds, count=attributes.get("count"),
        pitch=PITCH[attributes.get("pitch", "normal")],
        speed=SPEED[attributes.get("speed", "normal")],
    )  # fmt: skip
    dry, params = event_class.render(request)
    dry = dsp.unit_peak(dry)
    if attributes["loudness"] == "loud":
        dry = np.tanh(2.5 * dry) / np.tanh(2.5)
    elif attributes["loudness"] == "quiet":
        dry = 0.6 * dry + 0.4 * dsp.lowpass(dry, min(2500.0, dsp.top(sr)), sr, order=1)
    wet, room = apply_space(dry, space, rng, sr)
    most = dsp.samples_of(limit, sr)
    if wet.shape[0] > most:
        wet = dsp.fade_edges(wet[:most], sr, fade_in=0.0, fade_out=0.03)
    first, stop = dsp.audible_span(wet, sr)
    for key in ("hits", "crests"):  # bursts cut off by the slot are not in the sound
        if key in params:
            params[key] = [time for time in params[key] if time < stop / sr]
    if stop <= first:  # a source must always sound; this would be a bug in it
        raise RuntimeError(f"{name} rendered silence at {sr} Hz with {attributes}")
    audio = dsp.unit_peak(wet[first:stop])
    return audio, first, {**params, **room}


# ---- scene planning -------------------------------------------------------------------------


def _structure(rng: np.random.Generator, seconds: float) -> tuple[str, int, bool]:
    """(relation of the foreground, number of foreground events, background?)."""
    most = 1 if seconds < 3.5 else 2 if seconds < 6.0 else 3
    draw = rng.random()
    total = min(1 if draw < 0.4 else 2 if draw < 0.75 else 3, most)
    kind = rng.random()
    if total == 1:
        return "single", 1, False
    if total == 2:
        if kind < 0.45:
            return "sequence", 2, False
        if kind < 0.7:
            return "overlap", 2, False
        return "single", 1, True
    if kind < 0.4:
        return "sequence", 3, False
    if kind < 0.8:
        return "sequence", 2, True
    return "overlap", 2, True


def _pick(rng: np.random.Generator, pool: list[EventClass], longest: float) -> EventClass:
    fitting = [event for event in pool if event.min_seconds <= longest]
    if not fitting:
        fitting = [min(pool, key=lambda event: event.min_seconds)]
    return fitting[int(rng.integers(len(fitting)))]


def _length(rng: np.random.Generator, event_class: EventClass, limit: float) -> float:
    """The dry length to ask for: natural for a continuous class, the limit otherwise."""
    if event_class.countable:
        return limit
    return min(limit, rng.uniform(*event_class.seconds))


def make_scene(
    rng: np.random.Generator,
    sample_rate: int = 16000,
    seconds: float = 10.0,
    noise_floor_db: float | None = NOISE_FLOOR_DB,
) -> Scene:
    """A random scene of ``seconds`` at ``sample_rate``, everything drawn from ``rng``."""
    if seconds < MIN_SECONDS:
        raise ValueError(f"a scene needs at least {MIN_SECONDS} s, got {seconds}")
    sr = sample_rate
    total = dsp.samples_of(seconds, sr)
    relation, n_foreground, background = _structure(rng, seconds)
    lead = rng.uniform(0.1, 0.12 * seconds) if rng.random() < 0.85 else rng.uniform(0.0, 0.05)
    end = seconds - rng.uniform(0.05, 0.4)
    sequence = relation == "sequence"
    gaps = rng.uniform(0.15, 0.6, n_foreground - 1) if sequence else np.zeros(0)
    placed: list[tuple[EventClass, str, int, np.ndarray, dict, dict]] = []

    bed = None
    if background:
        bed = _pick(rng, [event for event in CLASSES if event.ambient], seconds)
        lead = max(lead, rng.uniform(0.3, 0.2 * seconds))
    pool = [event for event in CLASSES if event is not bed]
    share = (end - lead - gaps.sum()) / n_foreground
    chosen: list[EventClass] = []
    for _ in range(n_foreground):
        longest = share if relation == "sequence" else end - lead
        chosen.append(_pick(rng, [event for event in pool if event not in chosen], longest))
    most = 2 if n_foreground == 1 and not background else 1

    # foreground
    start = lead
    for index, event_class in enumerate(chosen):
        attributes = sample_attributes(rng, event_class, "foreground", most)
        if relation == "overlap" and index == 1:
            first_start, first_audio = placed[0][2], placed[0][3]
            span = first_audio.shape[0] / sr
            latest = end - event_class.min_seconds
            start = min(first_start / sr + rng.uniform(0.1, 0.5) * span, max(latest, lead))
        if relation == "sequence":
            later = sum(event.min_seconds for event in chosen[index + 1 :]) + gaps[index:].sum()
            fair = (end - start - gaps[index:].sum()) / (n_foreground - index)
            limit = max(min(end - start - later, 1.5 * fair), event_class.min_seconds)
        else:
            limit = max(end - start, event_class.min_seconds)
        limit = min(limit, seconds - start)
        if limit < 0.3:  # no room left (only in very short clips)
            break
        if limit < event_class.min_seconds and attributes.get("count") is not None:
            attributes["count"] = None  # too tight a slot to promise an exact count
        audio, trimmed, params = render_event(
            event_class.name, attributes, rng, sr, _length(rng, event_class, limit), limit
        )
        onset = dsp.samples_of(start, sr) + trimmed
        _absolute_times(params, dsp.samples_of(start, sr) / sr)
        placed.append((event_class, "foreground", onset, audio, attributes, params))
        if relation == "sequence" and index < n_foreground - 1:
            start = (onset + audio.shape[0]) / sr + gaps[index]

    if len(placed) == 1:
        relation = "single"

    # background bed
    if bed is not None:
        attributes = sample_attributes(rng, bed, "background", 1)
        bed_start = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 0.4)
        limit = seconds - bed_start - rng.uniform(0.0, 0.3)
        audio, trimmed, params = render_event(bed.name, attributes, rng, sr, limit, limit)
        onset = dsp.samples_of(bed_start, sr) + trimmed
        _absolute_times(params, dsp.samples_of(bed_start, sr) / sr)
        placed.append((bed, "background", onset, audio, attributes, params))

    return _mix(rng, placed, sr, total, relation, background, noise_floor_db)


def _absolute_times(params: dict, start: float) -> None:
    """Burst times (``hits``, ``crests``) from the source's start -> from the clip's start."""
    for key in ("hits", "crests"):
        if key in params:
            params[key] = [round(start + time, 4) for time in params[key]]


def _mix(rng, placed, sr, total, relation, background, noise_floor_db) -> Scene:
    levels = []
    for _event_class, role, _onset, _audio, attributes, _params in placed:
        level = min(0.98, LOUDNESS[attributes["loudness"]] * dsp.db(rng.uniform(-1.5, 1.5)))
        levels.append(level * (BACKGROUND_GAIN if role == "background" else 1.0))
    mix = np.zeros(total)
    for (_event_class, _role, onset, audio, _attributes, _params), level in zip(placed, levels):
        dsp.place(mix, level * audio, onset)
    scale = max(levels) / max(dsp.peak(mix), 1e-12)
    mix *= scale
    if noise_floor_db is not None:
        floor = dsp.lowpass(dsp.pink_noise(rng, total), min(6000.0, dsp.top(sr)), sr)
        mix += floor / (np.std(floor) + 1e-12) * dsp.db(noise_floor_db)
    events = []
    for (event_class, role, onset, audio, attributes, params), level in zip(placed, levels):
        stop = min(total, onset + audio.shape[0])
        events.append(
            Event(
                cls=event_class.name, role=role, onset=round(onset / sr, 4),
                offset=round(stop / sr, 4), attributes=attributes,
                gain=round(float(level * scale), 4), params=params,
            )
        )  # fmt: skip
    audio = np.clip(mix, -1.0, 1.0).astype(np.float32)
    return Scene(audio, sr, relation, background, events)
