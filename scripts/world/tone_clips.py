"""Short clips of pitched tones at random pitches: a curriculum for a waveform VAE's decoder,
which learns to render noise-like sound long before it learns to render a tone at the
right pitch (docs/results.md, "What the VAE loses").

Usage (from the repository root; the package need not be installed)::

    PYTHONPATH=src python scripts/world/tone_clips.py OUT_DIR --clips 1600 [--seconds 1.0] \\
        [--rate 16000] [--seed 0] [--mix-with WORLD/train.jsonl] \\
        [--envelopes held,decay,beeps,strikes]

Each clip holds one to three tones. A tone has a fundamental drawn log-uniformly from
60 Hz to 4 kHz and one of four shapes (a sine; a harmonic stack with 1/k^p partials below
Nyquist; a glide over up to an octave and a half; a siren-like vibrato), and one of four
envelopes (held with short fades; a percussive exponential decay; on/off beeps; a group of
two to six short struck hits, 10-80 ms decays, as knocks or drum beats). Every clip is
determined by ``(seed, index)`` and the envelope kinds allowed (``--envelopes``) alone.
Writes ``OUT_DIR/audio/tone_NNNNNN.wav`` (float WAV) and ``OUT_DIR/train.jsonl`` (a
manifest ``ezaudio train-vae`` reads); with ``--mix-with`` the manifest also lists every
entry of that manifest (paths made absolute), so that the VAE sees the tones beside its
usual data.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

LOWEST_HZ = 60.0
HIGHEST_HZ = 4000.0
SHAPES = ("sine", "harmonic", "glide", "vibrato")
ENVELOPES = ("held", "decay", "beeps", "strikes")
# The envelopes of the first tone clips (the bundled decoder of 2026-11-27 learnt from these)
FIRST_ENVELOPES = ("held", "decay", "beeps")
FADE_S = 0.01


def envelope(kind: str, samples: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Amplitude envelope [samples] in [0, 1]."""
    t = np.arange(samples) / rate  # [S] s
    if kind == "decay":  # a struck or plucked note: instant attack, exponential decay
        start = rng.uniform(0.0, 0.5) * samples / rate
        env = np.where(t >= start, np.exp(-(t - start) / rng.uniform(0.05, 0.6)), 0.0)
    elif kind == "strikes":  # a group of short struck hits, as knocks or drum beats
        env = np.zeros(samples)
        onset, spacing, tau = rng.uniform(0.0, 0.3), rng.uniform(0.1, 0.35), rng.uniform(0.01, 0.08)
        for _ in range(int(rng.integers(2, 7))):
            hit = np.where(t >= onset, np.exp(-(t - onset) / tau), 0.0)
            env = np.maximum(env, hit)
            onset += spacing * rng.uniform(0.9, 1.1)
        return env  # sharp attacks: no fades
    elif kind == "beeps":  # on/off gating, as an alarm or a car horn
        period = rng.uniform(0.1, 0.5)
        duty = rng.uniform(0.3, 0.7)
        env = ((t / period) % 1.0 < duty).astype(float)
    else:  # held from start to end of a random span
        start, stop = np.sort(rng.uniform(0.0, samples / rate, size=2))
        env = ((t >= start) & (t < max(stop, start + 0.2))).astype(float)
    ramp = max(1, int(FADE_S * rate))  # 10 ms fades so that the gates do not click
    kernel = np.ones(ramp) / ramp
    return np.convolve(env, kernel, mode="same")


def phase_of(frequency: np.ndarray, rate: int) -> np.ndarray:
    """Phase in radians [S] of an oscillator whose frequency [S] in Hz changes per sample."""
    return 2.0 * np.pi * np.cumsum(frequency) / rate


def tone(
    samples: int, rate: int, rng: np.random.Generator, envelopes: Sequence[str] = ENVELOPES
) -> np.ndarray:
    """One tone [samples]: a fundamental, a shape and an envelope (one of ``envelopes``)
    drawn from ``rng``."""
    f0 = float(np.exp(rng.uniform(np.log(LOWEST_HZ), np.log(HIGHEST_HZ))))
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    t = np.arange(samples) / rate  # [S] s
    if shape == "glide":  # exponential sweep over up to 1.5 octaves, either way
        octaves = rng.uniform(-1.5, 1.5)
        frequency = f0 * 2.0 ** (octaves * t / t[-1])
    elif shape == "vibrato":  # a siren: slow sinusoidal frequency modulation
        depth = rng.uniform(0.05, 0.5)  # octaves either side
        frequency = f0 * 2.0 ** (depth * np.sin(2 * np.pi * rng.uniform(0.3, 4.0) * t))
    else:
        frequency = np.full(samples, f0)
    frequency = np.minimum(frequency, 0.45 * rate)
    phase = phase_of(frequency, rate) + rng.uniform(0, 2 * np.pi)
    if shape == "sine":
        wave = np.sin(phase)
    else:  # partials k = 1.. while below Nyquist, amplitudes 1 / k^p
        tilt = rng.uniform(0.5, 2.5)
        wave = np.zeros(samples)
        for k in range(1, 40):
            if k * frequency.max() >= 0.48 * rate:
                break
            wave += np.sin(k * phase) / k**tilt
    kind = envelopes[int(rng.integers(len(envelopes)))]
    return wave * envelope(kind, samples, rate, rng)


def tone_clip(
    index: int, seed: int, seconds: float, rate: int, envelopes: Sequence[str] = ENVELOPES
) -> np.ndarray:
    """Clip ``index`` [S] float32, peak 0.1-0.9, from ``(seed, index, envelopes)`` alone."""
    rng = np.random.default_rng([seed, index])
    samples = round(seconds * rate)
    count = rng.integers(1, 4)
    wave = sum(tone(samples, rate, rng, envelopes) * rng.uniform(0.3, 1.0) for _ in range(count))
    wave = wave + rng.normal(0.0, 10 ** rng.uniform(-4, -2), samples)  # a faint noise floor
    peak = float(np.abs(wave).max())
    return (wave / peak * rng.uniform(0.1, 0.9)).astype(np.float32)


def absolute_rows(manifest: Path) -> list[dict[str, Any]]:
    """The entries of ``manifest`` with their audio paths made absolute."""
    base = manifest.resolve().parent
    rows = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            path = Path(row["audio"])
            row["audio"] = str(path if path.is_absolute() else base / path)
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (audio/ and train.jsonl)")
    parser.add_argument("--clips", type=int, default=1600)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mix-with", type=Path, help="a manifest whose entries are listed too")
    parser.add_argument(
        "--envelopes",
        default=",".join(ENVELOPES),
        help=f"comma-separated envelope kinds drawn from (default: all; "
        f"{','.join(FIRST_ENVELOPES)} gives the first tone clips exactly)",
    )
    args = parser.parse_args(argv)
    problems = [
        f"--{name} must be positive, got {value}"
        for name, value in (("clips", args.clips), ("seconds", args.seconds), ("rate", args.rate))
        if not value > 0
    ]
    if args.rate > 0 and 0.45 * args.rate < HIGHEST_HZ:
        problems.append(f"--rate must be at least {int(HIGHEST_HZ / 0.45) + 1} Hz")
    envelopes = tuple(kind.strip() for kind in args.envelopes.split(",") if kind.strip())
    unknown = sorted(set(envelopes) - set(ENVELOPES))
    if unknown or not envelopes:
        problems.append(f"--envelopes: unknown kinds {unknown}; known: {', '.join(ENVELOPES)}")
    if args.mix_with is not None and not args.mix_with.is_file():
        problems.append(f"--mix-with {args.mix_with}: not found")
    if problems:
        print(f"tone_clips: error: {problems[0]}", file=sys.stderr)
        return 2
    rows = []
    if args.mix_with is not None:
        rows = absolute_rows(args.mix_with)
    (args.out / "audio").mkdir(parents=True, exist_ok=True)
    for index in range(args.clips):
        name = f"tone_{index:06d}"
        wave = tone_clip(index, args.seed, args.seconds, args.rate, envelopes)
        sf.write(args.out / "audio" / f"{name}.wav", wave, args.rate, subtype="FLOAT")
        rows.append({"audio": f"audio/{name}.wav", "caption": "", "id": name, "split": "train"})
    manifest = args.out / "train.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {args.clips} tone clips and {manifest} ({len(rows)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
