"""Spectrograms of real one-event test clips beside their reconstructions by one or more
waveform VAEs: what a VAE does to a class, at a glance.

Usage (from the repository root; the package need not be installed)::

    PYTHONPATH=src python scripts/world/vae_spectrograms.py WORLD_DIR --vae VAE [--vae OTHER ...] \\
        --classes siren,piano,drum --out figure.png [--max-hz 5000]

For each class, the first one-event test clip of that class in the world (``ezaudio data
synth``) is peak-normalised, encoded to its posterior mean and decoded by each VAE (as
``scripts/world/vae_fidelity.py`` does); the figure shows the event's span (with 0.2 s
either side) of the real clip and of each reconstruction, one row per class. ``--vae``
takes a VAE folder, a model folder or a VAE training checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import load_world
from vae_fidelity import reconstruct

from ezaudio.data.audio import read_audio
from ezaudio.errors import EzAudioError, InvalidInputError
from ezaudio.train.vae_trainer import read_vae_source

MARGIN_S = 0.2  # seconds shown before the event's onset and after its offset
FFT_SIZE = 1024
FFT_OVERLAP = 768
FLOOR_DB = -120.0


def first_clips(world, classes: Sequence[str]) -> list:
    """The first one-event test clip of each class, in the order asked; an error names the
    classes the world's test split has no one-event clip of."""
    first = {}  # class -> its first one-event test clip
    for clip in world.clips:
        events = clip.record["events"]
        if len(events) == 1:
            first.setdefault(events[0]["class"], clip)
    missing = [name for name in classes if name not in first]
    if missing:
        raise InvalidInputError(f"no one-event test clip of {', '.join(missing)} in {world.folder}")
    return [first[name] for name in classes]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path, help="a world folder (ezaudio data synth)")
    parser.add_argument(
        "--vae", type=Path, action="append", required=True,
        help="VAE folder, model folder or VAE training checkpoint (repeatable)",
    )  # fmt: skip
    parser.add_argument("--classes", required=True, help="comma-separated class names")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--max-hz", type=float, default=5000.0, help="top of the frequency axis")
    parser.add_argument("--labels", help="comma-separated column titles for the VAEs")
    parser.add_argument("--dpi", type=int, default=60, help="resolution of the PNG")
    args = parser.parse_args(argv)
    classes = [name.strip() for name in args.classes.split(",") if name.strip()]
    labels = args.labels.split(",") if args.labels else [p.name for p in args.vae]
    try:
        if not classes:
            raise InvalidInputError("--classes names no class")
        if len(labels) != len(args.vae):
            raise InvalidInputError(f"--labels has {len(labels)} names for {len(args.vae)} VAEs")
        world = load_world(args.world)
        clips = first_clips(world, classes)
        vaes = [read_vae_source(folder).eval() for folder in args.vae]
        for folder, vae in zip(args.vae, vaes):
            if vae.sample_rate != world.sample_rate:
                raise InvalidInputError(
                    f"{folder}: the VAE runs at {vae.sample_rate} Hz, the world at "
                    f"{world.sample_rate} Hz"
                )
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rate = world.sample_rate
        columns = 1 + len(vaes)
        figure, axes = plt.subplots(
            len(clips), columns, figsize=(4.2 * columns, 2.4 * len(clips)), squeeze=False
        )
        for row, clip in enumerate(clips):
            wave, _ = read_audio(clip.clip.audio, rate)  # [S] float32
            event = clip.record["events"][0]
            start = int(max(0.0, event["onset"] - MARGIN_S) * rate)
            stop = int(min(len(wave) / rate, event["offset"] + MARGIN_S) * rate)
            versions = [wave] + [reconstruct(vae, wave) for vae in vaes]  # each [S]
            scale = 1.0 / (np.abs(wave).max() + 1e-9)  # every column at the real clip's peak
            for column, (title, audio) in enumerate(zip(["real", *labels], versions)):
                axis = axes[row, column]
                segment = audio[start:stop] * scale
                axis.specgram(segment, NFFT=FFT_SIZE, noverlap=FFT_OVERLAP, Fs=rate,
                              cmap="magma", vmin=FLOOR_DB)  # fmt: skip
                axis.set_ylim(0, min(args.max_hz, rate / 2))
                axis.set_title(f"{event['class']} ({clip.clip.id}): {title}", fontsize=8)
                axis.tick_params(labelsize=7)
        figure.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=args.dpi)
        plt.close(figure)
    except (EzAudioError, OSError) as error:
        print(f"vae_spectrograms: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
