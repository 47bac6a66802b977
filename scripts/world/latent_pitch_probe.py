"""Does a VAE's latent carry the pitch of tonal sounds? A probe for the synthetic world.

Usage (from the repository root; the package need not be installed)::

    PYTHONPATH=src python scripts/world/latent_pitch_probe.py WORLD_DIR --latents CACHE \\
        --out probe.json [--vae VAE] [--classes siren,alarm,...] [--ridge 1.0]

The world's tonal classes (sirens, alarms, piano notes...) are recognised by their pitch,
so a VAE that loses pitch caps any model decoded by it (docs/results.md). For every
one-event clip of those classes in a latent cache of the world (``ezaudio data encode``),
each latent frame whose centre lies inside the event gets a target: the dominant frequency
of the real audio there (a 2048-sample Hann window), kept where the spectrum is tonal
(spectral flatness under 0.01). A ridge regression from the posterior means of the frame
and its two neighbours to log2(frequency), fitted on the train split, is scored on the test
split in semitones: what a decoder could at best recover from those latents with a linear
read-out. Beside it: predicting the train mean (chance) and, with ``--vae``, the VAE's own
decoder (the dominant frequency of the decoded posterior mean at the same frames). When
``--latents`` does not exist yet, the clips the probe needs (the one-event train and test
clips of the classes) are first encoded into it with ``--vae``, peak-normalised as
``ezaudio data encode`` does: a few minutes on a CPU for a 2000-clip world.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from ezaudio.data.audio import read_audio
from ezaudio.data.latent_cache import read_index
from ezaudio.errors import EzAudioError, InvalidInputError

TONAL_CLASSES = ("alarm", "bell", "car_horn", "piano", "plucked_string", "siren", "telephone",
                 "whistle")  # fmt: skip
WINDOW = 2048  # samples of the analysis window (128 ms at 16 kHz)
MIN_BIN = 5  # ignore DC and the lowest bins (below ~40 Hz at 16 kHz)
MAX_FLATNESS = 0.01  # geometric / arithmetic mean of the power spectrum: tonal below this
MARGIN_S = 0.05  # seconds kept clear of the event's onset and offset


def power_spectrum(segment: np.ndarray) -> np.ndarray:
    """|rfft|^2 of a Hann-windowed ``segment`` [N] -> [N/2 + 1]."""
    return np.abs(np.fft.rfft(segment * np.hanning(len(segment)))) ** 2


def peak_log2_hz(power: np.ndarray, sample_rate: int) -> float:
    """log2 of the frequency of the strongest bin above MIN_BIN of ``power`` [N/2 + 1]."""
    peak = int(power[MIN_BIN:].argmax()) + MIN_BIN
    return float(np.log2(peak * sample_rate / (2 * (len(power) - 1))))


def dominant_log2_hz(segment: np.ndarray, sample_rate: int) -> float | None:
    """log2 of the strongest frequency of ``segment`` [WINDOW], or None where not tonal."""
    power = power_spectrum(segment)
    if power.sum() < 1e-6:
        return None
    flatness = np.exp(np.mean(np.log(power + 1e-12))) / np.mean(power)
    if flatness > MAX_FLATNESS:
        return None
    return peak_log2_hz(power, sample_rate)


def frame_targets(
    wave: np.ndarray, sample_rate: int, hop: int, frames: int, onset: float, offset: float
) -> list[tuple[int, float]]:
    """``(frame, log2 Hz)`` for the latent frames 1..frames-2 inside [onset, offset] that are
    tonal in ``wave`` [S] (frame t covers samples t*hop .. (t+1)*hop)."""
    targets = []
    for frame in range(1, frames - 1):
        centre = frame * hop + hop // 2
        if not onset + MARGIN_S < centre / sample_rate < offset - MARGIN_S:
            continue
        start = centre - WINDOW // 2
        if start < 0 or start + WINDOW > len(wave):
            continue
        pitch = dominant_log2_hz(wave[start : start + WINDOW], sample_rate)
        if pitch is not None:
            targets.append((frame, pitch))
    return targets


def frame_features(mean: np.ndarray, frame: int) -> np.ndarray:
    """The posterior means [C, L] of ``frame`` and its neighbours, stacked: [3 C]."""
    return mean[:, frame - 1 : frame + 2].T.reshape(-1)


def ridge_fit(features: np.ndarray, targets: np.ndarray, strength: float) -> dict[str, Any]:
    """Ridge regression on standardised features (bias unpenalised): the fitted model."""
    centre, scale = features.mean(0), features.std(0) + 1e-6
    design = (features - centre) / scale  # [N, F]
    penalty = strength * np.eye(design.shape[1])
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ (targets - targets.mean()))
    return {"centre": centre, "scale": scale, "weights": weights, "bias": targets.mean()}


def ridge_predict(model: dict[str, Any], features: np.ndarray) -> np.ndarray:
    return (features - model["centre"]) / model["scale"] @ model["weights"] + model["bias"]


def semitone_errors(predicted: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Median / mean absolute error in semitones and the share within one semitone."""
    errors = 12.0 * np.abs(np.asarray(predicted) - np.asarray(truth))
    if not errors.size:
        return {"frames": 0, "median": None, "mean": None, "within_1": None}
    return {
        "frames": int(errors.size),
        "median": float(np.median(errors)),
        "mean": float(errors.mean()),
        "within_1": float((errors < 1.0).mean()),
    }


def read_posterior_means(cache: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The cache's index and its posterior means [C, L] by clip id."""
    index = read_index(cache)
    means: dict[str, np.ndarray] = {}
    by_shard: dict[str, list[dict[str, Any]]] = {}
    for clip in index["clips"]:
        by_shard.setdefault(clip["shard"], []).append(clip)
    for shard, clips in by_shard.items():
        with safe_open(str(cache / shard), framework="pt") as handle:
            for clip in clips:
                means[clip["id"]] = handle.get_tensor(f"{clip['key']}.mean").float().numpy()
    return index, means


def collect(
    world: Path, cache: Path, classes: Sequence[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One row per tonal frame: clip id, split, class, frame, features and target."""
    index, means = read_posterior_means(cache)
    rate, hop = int(index["vae"]["sample_rate"]), int(index["vae"]["hop_length"])
    metadata = world / "metadata.jsonl"
    if not metadata.is_file():
        raise InvalidInputError(f"{world}: not a world folder (no metadata.jsonl)")
    rows = []
    for line in metadata.read_text("utf-8").splitlines():
        record = json.loads(line)
        if len(record["events"]) != 1 or record["id"] not in means:
            continue
        event = record["events"][0]
        if event["class"] not in classes:
            continue
        mean = means[record["id"]]
        wave, _ = read_audio(world / record["audio"], rate)
        for frame, pitch in frame_targets(
            wave, rate, hop, mean.shape[1], event["onset"], event["offset"]
        ):
            rows.append({"id": record["id"], "split": record["split"], "class": event["class"],
                         "frame": frame, "target": pitch, "features": frame_features(mean, frame),
                         "mean": mean})  # fmt: skip
    return index, rows


@torch.no_grad()
def decoder_pitches(
    vae_folder: Path, rows: list[dict[str, Any]], rate: int, hop: int
) -> list[float]:
    """The dominant log2 Hz of the VAE's decoding of each row's clip at the row's frame."""
    from ezaudio.train.vae_trainer import read_vae_source

    vae = read_vae_source(vae_folder).eval()
    if vae.sample_rate != rate or vae.hop_length != hop:
        raise InvalidInputError(
            f"{vae_folder}: not the VAE of this latent cache ({rate} Hz, hop {hop})"
        )
    decoded: dict[str, np.ndarray] = {}
    pitches = []
    for row in rows:
        if row["id"] not in decoded:
            mean = torch.from_numpy(row["mean"])[None]  # [1, C, L]
            decoded[row["id"]] = vae.decode(mean)[0, 0].numpy().astype(np.float64)  # [L * hop]
        wave = decoded[row["id"]]
        start = row["frame"] * hop + hop // 2 - WINDOW // 2
        # tonal or not: the decoder's strongest frequency there
        pitches.append(peak_log2_hz(power_spectrum(wave[start : start + WINDOW]), rate))
    return pitches


def encode_tonal_clips(world: Path, vae: Path, cache: Path, classes: Sequence[str]) -> Path:
    """Encode the world's one-event train and test clips of ``classes`` with ``vae`` into
    the latent cache ``cache`` (``ezaudio data encode``'s code; its manifest is written
    next to it as ``CACHE.manifest.jsonl``). Returns the manifest."""
    from ezaudio.data.latent_cache import encode_manifest

    wanted = set()
    for line in (world / "metadata.jsonl").read_text("utf-8").splitlines():
        record = json.loads(line)
        events = record["events"]
        if record["split"] in ("train", "test") and len(events) == 1:
            if events[0]["class"] in classes:
                wanted.add(record["id"])
    manifest = cache.with_name(cache.name + ".manifest.jsonl")
    rows = []
    for line in (world / "all.jsonl").read_text("utf-8").splitlines():
        row = json.loads(line)
        if row["id"] in wanted:
            rows.append(json.dumps({**row, "audio": str((world / row["audio"]).resolve())}))
    if not rows:
        raise InvalidInputError(f"{world}: no one-event train or test clips of {list(classes)}")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(rows) + "\n", "utf-8")
    encode_manifest(manifest, vae, cache, progress=False)
    return manifest


def probe(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    classes = tuple(args.classes.split(",")) if args.classes else TONAL_CLASSES
    if not args.latents.exists():
        if args.vae is None:
            raise InvalidInputError(f"{args.latents}: no such latent cache; give --vae to make it")
        encode_tonal_clips(args.world, args.vae, args.latents, classes)
    index, rows = collect(args.world, args.latents, classes)
    train = [row for row in rows if row["split"] == "train"]
    test = [row for row in rows if row["split"] == "test"]
    if not train or not test:
        raise InvalidInputError(
            f"{args.latents}: tonal frames in train {len(train)}, test {len(test)}; both are needed"
        )
    fitted = ridge_fit(np.stack([r["features"] for r in train]),
                       np.array([r["target"] for r in train]), args.ridge)  # fmt: skip
    truth = np.array([r["target"] for r in test])
    predicted = ridge_predict(fitted, np.stack([r["features"] for r in test]))
    results: dict[str, Any] = {
        "world": str(args.world),
        "latents": str(args.latents),
        "vae_fingerprint": index["vae"]["fingerprint"],
        "latent": {
            "channels": int(index["vae"]["latent_dim"]),
            "rate_hz": float(index["vae"]["latent_rate"]),
        },
        "classes": list(classes),
        "ridge": args.ridge,
        "frames": {"train": len(train), "test": len(test)},
        "clips": {"train": len({r["id"] for r in train}), "test": len({r["id"] for r in test})},
        "chance": semitone_errors(
            np.full_like(truth, np.mean([r["target"] for r in train])), truth
        ),
        "probe": semitone_errors(predicted, truth),
        "probe_per_class": {
            name: semitone_errors(predicted[mask], truth[mask])
            for name in classes
            if (mask := np.array([r["class"] == name for r in test])).any()
        },
    }
    if args.vae is not None:
        rate, hop = int(index["vae"]["sample_rate"]), int(index["vae"]["hop_length"])
        results["decoder"] = semitone_errors(
            np.array(decoder_pitches(args.vae, test, rate, hop)), truth
        )
        results["vae"] = str(args.vae)
    results["seconds"] = round(time.perf_counter() - started, 2)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path, help="a world folder (ezaudio data synth)")
    parser.add_argument(
        "--latents",
        type=Path,
        required=True,
        help="a latent cache of the world; when it does not exist, the tonal one-event train "
        "and test clips are encoded into it with --vae first",
    )
    parser.add_argument("--out", type=Path, required=True, help="results JSON file")
    parser.add_argument("--vae", type=Path, help="also score this VAE's decoder (the cache's VAE)")
    parser.add_argument("--classes", help=f"comma-separated (default {','.join(TONAL_CLASSES)})")
    parser.add_argument("--ridge", type=float, default=1.0, help="ridge strength (default 1)")
    args = parser.parse_args(argv)
    try:
        if not args.ridge > 0:
            raise InvalidInputError(f"--ridge must be positive, got {args.ridge}")
        results = probe(args)
    except (EzAudioError, OSError) as error:
        print(f"latent_pitch_probe: error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    line = f"{results['frames']['test']} test frames: probe median {results['probe']['median']:.2f}"
    line += f" semitones (chance {results['chance']['median']:.2f}"
    if "decoder" in results:
        line += f", decoder {results['decoder']['median']:.2f}"
    print(line + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
