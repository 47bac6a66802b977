"""How much of what the tagger hears survives a waveform VAE: the ceiling of any generated
clip, since every clip the DiT makes is decoded by that VAE.

Usage (from the repository root; the package need not be installed)::

    PYTHONPATH=src python scripts/world/vae_fidelity.py WORLD_DIR --tagger TAGGER_FOLDER \\
        --vae VAE [--vae OTHER ...] --out results.json [--clips N] [--one-event] [--threshold 0.5]

For the first ``--clips`` test clips of a world (``ezaudio data synth``), each VAE
reconstructs every clip from its posterior mean (encode -> decode, the clip's full length;
peak-normalised for the encoder as the DiT's training latents are, unless ``--own-level``)
and the tagger tags the real and the reconstructed clips. Reported per VAE, for one-event
clips and for all: the adherence scores of ``scripts/world/measure.py`` (precision / recall
of the tagged classes against the clip's events) of the real clips (the ceiling) and of the
reconstructions, their ratio, the share of clips whose tag set is unchanged by the VAE, the
mean absolute log-mel difference in dB (the tagger's own front end), the seconds taken, and
per class of the one-event clips the recall of the real and of the reconstructed clips.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import (
    World,
    adherence_scores,
    load_world,
    machine_info,
    per_class_recall,
    predicted_sets,
    ratios,
    tag_waveforms,
    true_labels,
)

from ezaudio.data.audio import read_audio
from ezaudio.errors import EzAudioError, InvalidInputError
from ezaudio.eval.panns import Cnn14
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.train.vae_trainer import read_vae_source


@torch.no_grad()
def reconstruct(vae: WaveformVAE, wave: np.ndarray, peak_normalise: bool = True) -> np.ndarray:
    """The VAE's decoding of the posterior mean of ``wave`` [S] (at the VAE's rate) -> [S].

    ``peak_normalise``: encode the clip scaled to peak 1, as ``ezaudio data encode`` does
    for the DiT's training latents and ``EzAudio.edit`` for its input, and scale the
    decoding back to the clip's level; False encodes the clip at its own level."""
    wave = np.asarray(wave, dtype=np.float32)
    peak = float(np.abs(wave).max()) if peak_normalise and wave.size else 0.0
    scale = peak if peak > 1e-6 else 1.0
    audio = torch.from_numpy(wave / scale)[None, None]  # [1, 1, S], peak 1
    mean = vae.encode(audio, sample=False)  # [1, latent_dim, frames]
    out = vae.decode(mean)[0, 0].numpy() * scale  # [frames * hop], the clip's level
    if out.shape[0] < wave.shape[0]:
        out = np.pad(out, (0, wave.shape[0] - out.shape[0]))
    return out[: wave.shape[0]]


@torch.no_grad()
def log_mel_difference_db(tagger: Cnn14, real: np.ndarray, other: np.ndarray) -> float:
    """Mean |log-mel(real) - log-mel(other)| in dB through the tagger's front end, both
    floored 80 dB below the real clip's loudest bin (silence would otherwise dominate)."""
    pair = torch.from_numpy(np.stack([real, other]).astype(np.float32))  # [2, S]
    mel = tagger.log_mel(pair)  # [2, 1, T, M] in dB
    mel = mel.clamp(min=float(mel[0].max()) - 80.0)
    return float((mel[0] - mel[1]).abs().mean())


def fidelity_scores(
    real: Sequence[set[str]], rebuilt: Sequence[set[str]], truth: Sequence[set[str]]
) -> dict[str, Any]:
    """Adherence of the real clips (ceiling) and of their reconstructions, and how often the
    VAE leaves the tag set unchanged."""
    ceiling = adherence_scores(list(real), list(truth))
    through_vae = adherence_scores(list(rebuilt), list(truth))
    same = [a == b for a, b in zip(real, rebuilt)]
    return {
        "ceiling": ceiling,
        "reconstructed": through_vae,
        "ratio": ratios(through_vae, ceiling),
        "same_tags_share": float(np.mean(same)) if same else None,
    }


def measure_vae(
    vae_folder: Path, world, tagger: Cnn14, threshold: float, peak_normalise: bool = True
) -> dict[str, Any]:
    """Everything reported for one VAE on the world's measured test clips."""
    vae = read_vae_source(vae_folder).eval()
    if vae.sample_rate != world.sample_rate:
        raise InvalidInputError(
            f"{vae_folder}: the VAE runs at {vae.sample_rate} Hz, the world at "
            f"{world.sample_rate} Hz"
        )
    names = list(tagger.config.class_names)
    started = time.perf_counter()
    real, rebuilt, differences = [], [], []
    for clip in world.clips:
        wave, _ = read_audio(clip.clip.audio, world.sample_rate)
        real.append(wave)
        rebuilt.append(reconstruct(vae, wave, peak_normalise))
        differences.append(log_mel_difference_db(tagger, real[-1], rebuilt[-1]))
    vae_seconds = time.perf_counter() - started
    probabilities = {
        "real": tag_waveforms(tagger, real, world.sample_rate, 16),
        "rebuilt": tag_waveforms(tagger, rebuilt, world.sample_rate, 16),
    }
    sets = {k: predicted_sets(v, names, threshold) for k, v in probabilities.items()}
    truth = [true_labels(clip.record) for clip in world.clips]
    single = [i for i, clip in enumerate(world.clips) if len(clip.record["events"]) == 1]
    subsets = {}
    for subset, rows in (("single", single), ("all", list(range(len(truth))))):
        subsets[subset] = fidelity_scores(
            [sets["real"][i] for i in rows],
            [sets["rebuilt"][i] for i in rows],
            [truth[i] for i in rows],
        )
    single_truth = [truth[i] for i in single]
    per_class = {
        "real": per_class_recall([sets["real"][i] for i in single], single_truth),
        "reconstructed": per_class_recall([sets["rebuilt"][i] for i in single], single_truth),
    }
    return {
        "vae": str(vae_folder),
        "parameters": sum(p.numel() for p in vae.parameters()),
        "latent": {"channels": vae.latent_dim, "rate_hz": vae.latent_rate},
        "clips": len(world.clips),
        "input_level": "peak 1" if peak_normalise else "the clip's own",
        "log_mel_difference_db": float(np.mean(differences)),
        "seconds_encode_decode": round(vae_seconds, 2),
        "subsets": subsets,
        "per_class_single": {
            name: {
                "events": row["events"],
                "real_recall": row["recall"],
                "reconstructed_recall": per_class["reconstructed"][name]["recall"],
            }
            for name, row in per_class["real"].items()
        },
    }


def one_event_only(world: World) -> World:
    """The world with only its one-event test clips (``total`` still counts them all)."""
    clips = [clip for clip in world.clips if len(clip.record["events"]) == 1]
    if not clips:
        raise InvalidInputError(f"{world.folder}: no one-event clips among those selected")
    return dataclasses.replace(world, clips=clips)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path, help="a world folder (ezaudio data synth)")
    parser.add_argument("--tagger", type=Path, required=True, help="a tagger folder (Cnn14)")
    parser.add_argument(
        "--vae",
        type=Path,
        action="append",
        required=True,
        help="VAE folder, model folder or VAE training checkpoint",
    )
    parser.add_argument("--out", type=Path, required=True, help="results JSON file")
    parser.add_argument("--clips", type=int, help="the first N test clips (default: all)")
    parser.add_argument(
        "--one-event",
        action="store_true",
        help="only the clips with one event (of those --clips selects): a quicker per-class check",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="tag probability cut")
    parser.add_argument(
        "--own-level",
        action="store_true",
        help="encode each clip at its own level, not peak-normalised as the DiT's latents are "
        "(the measurements of 2026-11-26 were made this way)",
    )
    args = parser.parse_args(argv)
    try:
        if args.clips is not None and args.clips < 1:
            raise InvalidInputError(f"--clips must be a positive integer, got {args.clips}")
        world = load_world(args.world, args.clips)
        if args.one_event:
            world = one_event_only(world)
        tagger = Cnn14.from_pretrained(args.tagger).eval()
        results = {
            "world": str(args.world),
            "tagger": str(args.tagger),
            "threshold": args.threshold,
            "machine": machine_info(torch.device("cpu")),
            "vaes": [
                measure_vae(folder, world, tagger, args.threshold, not args.own_level)
                for folder in args.vae
            ],
        }
    except (EzAudioError, OSError) as error:
        print(f"vae_fidelity: error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    for row in results["vaes"]:
        single = row["subsets"]["single"]
        print(
            f"{row['vae']}: one-event recall {_f(single['reconstructed']['recall_micro'])} "
            f"(real {_f(single['ceiling']['recall_micro'])}), same tags "
            f"{_f(row['subsets']['all']['same_tags_share'])}, log-mel diff "
            f"{row['log_mel_difference_db']:.2f} dB"
        )
    return 0


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
