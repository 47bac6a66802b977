"""``ezaudio synth``: write a synthetic captioned sound world (registered by ezaudio.cli).

Meant to live under ``ezaudio data synth``; it is a top-level command until the ``data``
command takes it in (``register`` adds the same parser to whichever subparsers it is given).
"""

from __future__ import annotations

import argparse
import sys


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``synth`` to ``commands`` (the ``ezaudio`` or ``ezaudio data`` subparsers)."""
    synth = commands.add_parser(
        "synth", help="write a synthetic captioned sound world (clips, manifests, metadata)"
    )
    synth.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the world into")
    synth.add_argument("--clips", type=int, required=True, help="number of clips")
    synth.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    synth.add_argument("--sample-rate", type=int, default=16000,
                       help="sample rate in Hz (default: 16000)")  # fmt: skip
    synth.add_argument("--seconds", type=float, default=10.0,
                       help="clip length in seconds (default: 10, at least 2)")  # fmt: skip
    synth.add_argument("--splits", default="0.8,0.1,0.1", metavar="TRAIN,VALID,TEST",
                       help="shares of the splits (default: 0.8,0.1,0.1)")  # fmt: skip
    synth.add_argument("--noisy-share", type=float, default=0.3,
                       help="share of train captions made wrong or incomplete in "
                       "train_noisy.jsonl (default: 0.3)")  # fmt: skip
    synth.add_argument("--incomplete-share", type=float, default=0.5,
                       help="share of the noisy captions that drop an event rather than "
                       "name a wrong class (default: 0.5)")  # fmt: skip
    synth.add_argument("--workers", type=int, default=1,
                       help="processes rendering clips (default: 1)")  # fmt: skip
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=run_synth)


def _splits(text: str) -> tuple[float, float, float]:
    from ezaudio.errors import InvalidInputError

    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError as error:
        raise InvalidInputError(
            f"--splits must be three numbers like 0.8,0.1,0.1: {text}"
        ) from error
    if len(values) != 3:
        raise InvalidInputError(f"--splits must be three numbers like 0.8,0.1,0.1: {text}")
    return values  # type: ignore[return-value]


def run_synth(args: argparse.Namespace) -> None:
    from ezaudio.synth.world import write_world

    summary = write_world(
        args.out_dir, args.clips, args.seed, sample_rate=args.sample_rate,
        seconds=args.seconds, splits=_splits(args.splits), noisy_share=args.noisy_share,
        workers=args.workers, incomplete_share=args.incomplete_share, progress=not args.quiet,
    )  # fmt: skip
    counts = ", ".join(f"{split} {count}" for split, count in summary["counts"].items())
    noise = ", ".join(f"{kind} {count}" for kind, count in summary["caption_noise"].items())
    print(f"{args.out_dir}: {summary['clips']} clips ({counts}); noisy train captions: {noise}")
    if not args.quiet:
        print("files: " + ", ".join(summary["files"]), file=sys.stderr)
