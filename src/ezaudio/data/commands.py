"""``ezaudio data``: prepare training data (registered by ezaudio.cli).

``ezaudio data encode``       a manifest -> a latent cache (VAE posteriors, sharded)
``ezaudio data clap-filter``  a manifest -> the pairs whose CLAP score reaches a threshold
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_CLAP = "laion/larger_clap_general"


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``ezaudio data`` and its actions to the ``ezaudio`` parser."""
    from ezaudio.cli import _Parser
    from ezaudio.synth.commands import register as register_synth

    data = commands.add_parser(
        "data", help="prepare training data (synthetic world, latent cache, CLAP filter)"
    )
    actions = data.add_subparsers(
        dest="data_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    register_synth(actions)  # ezaudio data synth

    encode = actions.add_parser(
        "encode", help="encode a manifest's audio into a latent cache for training"
    )
    encode.add_argument("manifest", help="CSV or JSONL manifest of audio files and captions")
    encode.add_argument("--vae", required=True, help="folder of the (frozen) WaveformVAE")
    encode.add_argument("--out", required=True, help="cache folder (resumed if it exists)")
    encode.add_argument("--split", help="encode only this split (default: every split)")
    encode.add_argument("--batch-size", type=int, default=8,
                        help="clips per encoder batch (default: 8)")  # fmt: skip
    encode.add_argument("--shard-size", type=int, default=256,
                        help="clips per shard file (default: 256)")  # fmt: skip
    encode.add_argument("--max-seconds", type=float,
                        help="cut longer files to their first seconds (default: all)")  # fmt: skip
    encode.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                        help="storage type of mean and std (default: float32)")  # fmt: skip
    encode.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    encode.add_argument("--reuse", metavar="CACHE",
                        help="a cache of the same VAE: copy the posteriors of the clips it "
                        "holds (same id and audio file) instead of encoding them")  # fmt: skip
    encode.add_argument("--quiet", action="store_true", help="no progress bar")
    encode.set_defaults(handler=run_encode)

    clap = actions.add_parser(
        "clap-filter", help="keep the (audio, caption) pairs whose CLAP score reaches a threshold"
    )
    clap.add_argument("manifest", help="CSV or JSONL manifest of audio files and captions")
    clap.add_argument("--clap", default=DEFAULT_CLAP,
                      help=f"CLAP model id or folder (default: {DEFAULT_CLAP})")  # fmt: skip
    clap.add_argument("--out", required=True, help="filtered manifest to write (.csv or .jsonl)")
    clap.add_argument("--threshold", type=float, default=0.40,
                      help="lowest cosine similarity kept (paper: 0.40)")  # fmt: skip
    clap.add_argument("--report", help="report folder (default: next to --out)")
    clap.add_argument("--scores", help="clap_scores.csv of an earlier run: re-threshold "
                      "without scoring again")  # fmt: skip
    clap.add_argument("--batch-size", type=int, default=16,
                      help="pairs per CLAP batch (default: 16)")  # fmt: skip
    clap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    clap.add_argument("--quiet", action="store_true", help="no progress bar")
    clap.set_defaults(handler=run_clap_filter)


def run_encode(args: argparse.Namespace) -> None:
    from ezaudio.data.latent_cache import encode_manifest

    index = encode_manifest(
        args.manifest, args.vae, args.out, clip_seconds=args.max_seconds,
        batch_size=args.batch_size, shard_size=args.shard_size, device=args.device,
        split=args.split, dtype=args.dtype, progress=not args.quiet, reuse=args.reuse,
    )  # fmt: skip
    skipped = index["skipped"]
    detail = ", ".join(f"{reason} {count}" for reason, count in skipped.items())
    reused = f", {index['reused']} reused from {args.reuse}" if args.reuse else ""
    print(
        f"{args.out}: {len(index['clips'])} clips in {index['shards']['total']} shards "
        f"({index['dtype']}), skipped {sum(skipped.values())}"
        + (f" ({detail})" if detail else "")
        + reused
    )


def run_clap_filter(args: argparse.Namespace) -> None:
    from ezaudio.data.clap_filter import clap_filter

    report = clap_filter(
        args.manifest, args.out, clap=args.clap, threshold=args.threshold,
        report_dir=args.report, batch_size=args.batch_size, device=args.device,
        scores=args.scores, progress=not args.quiet,
    )  # fmt: skip
    counts = report["counts"]
    print(
        f"{args.out}: kept {counts['kept']} of {counts['pairs']} pairs at CLAP >= "
        f"{report['threshold']} (skipped {counts['skipped']}); report in {report['report_dir']}"
    )
    if report.get("png") is None and not args.quiet:
        print(f"note: {report['png_note']}", file=sys.stderr)
