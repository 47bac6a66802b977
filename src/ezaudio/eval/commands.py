"""``ezaudio evaluate``: the paper's objective evaluation, and ``ezaudio evaluate sweep``.

``ezaudio evaluate MANIFEST --model M --out-dir DIR`` generates one clip per manifest entry
and writes FD, KL, IS and CLAP to ``DIR/results.json`` and ``DIR/results.md``;
``ezaudio evaluate sweep MANIFEST ... --guidance-scales 1 3 5 7 --rescales 0 0.5 0.75``
runs that for every (guidance scale, rescale) pair and plots FD and CLAP against them.
(``sweep`` is read as the first positional word, so a manifest literally named ``sweep``
needs a path such as ``./sweep``.)

``ezaudio eval-train tagger WORLD --out DIR`` and ``ezaudio eval-train clap WORLD --out DIR``
train the small evaluators of a synthetic world (:mod:`ezaudio.eval.tagger`,
:mod:`ezaudio.eval.small_clap`). They are a command of their own rather than words of
``evaluate``, whose ``--model`` and ``--out-dir`` are required.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.validation import (
    LIMITS,
    check_eta,
    check_grid,
    check_guidance_rescale,
    check_guidance_scale,
    check_seconds,
    check_seed,
    check_steps,
    ensure_writable_folder,
)

SWEEP_WORD = "sweep"
DEFAULT_GUIDANCE_SCALES = (1.0, 3.0, 5.0, 7.0)
DEFAULT_RESCALES = (0.0, 0.5, 0.75)
PANNS_FILE = "Cnn14_16k_mAP=0.438.pth"
PANNS_URL = "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth"
PANNS_ENV = "EZAUDIO_PANNS"


def default_panns_path() -> Path:
    """Where ``--panns`` is looked for when not given: ``$EZAUDIO_PANNS``, else the cache."""
    if os.environ.get(PANNS_ENV):
        return Path(os.environ[PANNS_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ezaudio" / PANNS_FILE


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` (and its ``sweep`` form) to the ``ezaudio`` parser."""
    evaluate = commands.add_parser(
        "evaluate",
        help="FD, KL, IS and CLAP on an AudioCaps-style manifest (`evaluate sweep`: a grid)",
        usage="%(prog)s [sweep] MANIFEST --model NAME_OR_DIR --out-dir DIR [options]",
        description=(
            "Generate one clip per manifest entry (one caption chosen per clip by a recorded "
            "seed), then compute FD, KL and IS against the reference audio with PANNs CNN14 "
            "(16 kHz), and the CLAP score of the captions and the generated audio. "
            "`ezaudio evaluate sweep MANIFEST ...` does this for every guidance scale x rescale "
            "factor and plots FD and CLAP (paper Fig. 3)."
        ),
    )
    evaluate.add_argument(
        "manifest", metavar="MANIFEST",
        help="CSV/JSONL with id, audio, caption_1..caption_5 (or captions), or the AudioCaps "
             "CSV (audiocap_id, youtube_id, start_time, caption); `sweep MANIFEST` for a grid",
    )  # fmt: skip
    evaluate.add_argument("sweep_manifest", nargs="?", help=argparse.SUPPRESS)
    evaluate.add_argument("--model", required=True,
                          help="model folder, 'ezaudio-l', 'ezaudio-xl' or a hub id")  # fmt: skip
    evaluate.add_argument("--out-dir", required=True,
                          help="output folder (generated audio, results); resumable")  # fmt: skip
    features = evaluate.add_argument_group("feature models")
    features.add_argument(
        "--panns", help=f"official {PANNS_FILE} or a Cnn14 folder "
                        f"(default: ${PANNS_ENV}, else ~/.cache/ezaudio/{PANNS_FILE})",
    )  # fmt: skip
    features.add_argument("--clap", default=None,
                          help="CLAP folder or hub id (default: laion/larger_clap_general); "
                               "'none' skips the CLAP score")  # fmt: skip
    features.add_argument("--cache-dir",
                          help="feature cache folder (default: OUT_DIR/feature_cache)")  # fmt: skip
    data = evaluate.add_argument_group("manifest")
    data.add_argument("--audio-root", help="folder relative audio paths are resolved against "
                                           "(default: the manifest's folder)")  # fmt: skip
    data.add_argument("--audio-pattern",
                      help="AudioCaps CSV: file name under --audio-root, e.g. "
                           "'Y{youtube_id}.wav' (default: common names are tried)")  # fmt: skip
    data.add_argument("--limit", type=int, help="evaluate the first N clips only")
    sampling = evaluate.add_argument_group("sampling")
    sampling.add_argument("--steps", type=int, help="DDIM steps (model default)")
    sampling.add_argument("--guidance-scale", type=float, help="guidance w (model default)")
    sampling.add_argument("--guidance-rescale", type=float,
                          help="guidance rescale phi in [0, 1] (model default)")  # fmt: skip
    sampling.add_argument("--eta", type=float, help="DDIM eta in [0, 1] (model default)")
    sampling.add_argument("--seconds", type=float, help="clip duration (model default: 10)")
    sampling.add_argument("--seed", type=int, default=0,
                          help="base seed: clip k uses seed + k (default: 0)")  # fmt: skip
    sampling.add_argument("--caption-seed", type=int, default=0,
                          help="seed of the caption chosen per clip (default: 0)")  # fmt: skip
    sampling.add_argument("--batch-size", type=int, default=8,
                          help="clips per generation / feature batch (default: 8)")  # fmt: skip
    sweep = evaluate.add_argument_group("sweep (with `evaluate sweep`)")
    sweep.add_argument("--guidance-scales", type=float, nargs="+", metavar="W",
                       help="guidance scales (default: 1 3 5 7)")  # fmt: skip
    sweep.add_argument("--rescales", type=float, nargs="+", metavar="PHI",
                       help="rescale factors (default: 0 0.5 0.75)")  # fmt: skip
    model = evaluate.add_argument_group("device")
    model.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    model.add_argument("--dtype", default="float32", help="DiT precision: float32, bf16, fp16")
    model.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    evaluate.set_defaults(handler=run_evaluate)
    _register_eval_train(commands)


def _register_eval_train(commands: argparse._SubParsersAction) -> None:
    """``ezaudio eval-train tagger|clap WORLD --out DIR``."""
    parser = commands.add_parser(
        "eval-train",
        help="train a small tagger or CLAP on a synthetic world (ezaudio data synth)",
        description=(
            "Train the small evaluators of a synthetic world: `tagger` (a narrow CNN14, "
            "multi-label over the world's classes; its folder works as --panns) and `clap` "
            "(a small CLAP with the frozen offline MiniLM; its folder works as --clap)."
        ),
    )
    kinds = parser.add_subparsers(dest="eval_train_kind", metavar="{tagger,clap}")
    kinds.required = True
    helps = {
        "tagger": "multi-label CNN14-style tagger (report: accuracy, mAP)",
        "clap": "small CLAP (report: retrieval recall, caption-noise scores)",
    }
    for kind, text in helps.items():
        sub = kinds.add_parser(kind, help=text, description=text)
        sub.add_argument("world", metavar="WORLD_DIR", help="folder written by ezaudio data synth")
        sub.add_argument("--out", required=True,
                         help="new (or empty) folder for config.json, model.safetensors, "
                              "report.json; written at the end")  # fmt: skip
        sub.add_argument("--steps", type=int, help="training steps (default: by device)")
        sub.add_argument("--batch-size", type=int, help="clips per step (default: by device)")
        sub.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (1e-3)")
        sub.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
        sub.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
        sub.add_argument("--max-clips", type=int, help="read at most N clips of each split")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        sub.add_argument(
            "--widths",
            help="the six conv block widths of the audio network, comma-separated (default: "
            "32,64,128,128,256,256; 16,32,64,64,128,128 trains ~3x faster on a CPU)",
        )
        if kind == "tagger":
            sub.add_argument(
                "--crop-seconds", type=float,
                help="train on a random window of this many seconds of each clip, labelled "
                "with the events heard in it (default: whole clips; 4 of 10 s trains ~3x "
                "faster on a CPU; the test tags whole clips)",
            )  # fmt: skip
        sub.set_defaults(handler=run_eval_train)


def run_eval_train(args: argparse.Namespace) -> None:
    """Handler of ``ezaudio eval-train tagger|clap``."""
    from ezaudio.eval.tagger import TrainSettings, check_out_folder, read_world_info

    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--max-clips", args.max_clips)):  # fmt: skip
        if value is not None and value < 1:
            raise InvalidInputError(f"{flag} must be a positive integer, got {value}")
    check_seed(args.seed)
    settings = TrainSettings(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        device=args.device, max_clips=args.max_clips, progress=not args.quiet,
    )  # fmt: skip
    widths = parse_widths(args.widths) if getattr(args, "widths", None) else None
    info = read_world_info(args.world)
    check_out_folder(args.out)
    if args.eval_train_kind == "tagger":
        from ezaudio.eval.tagger import tagger_config, tagger_summary, train_tagger, world_classes

        config = None
        if widths is not None:
            config = tagger_config(world_classes(info), info["sample_rate"], widths=widths)
        result = train_tagger(
            args.world, args.out, settings, config=config, crop_seconds=args.crop_seconds
        )
        print(tagger_summary(result.report))
    else:
        from ezaudio.eval.small_clap import clap_config, clap_summary, train_clap

        config = None if widths is None else clap_config(info["sample_rate"], widths)
        result = train_clap(args.world, args.out, settings, config=config)
        print(clap_summary(result.report))
    _say(args, f"wrote {args.out}")


def parse_widths(text: str) -> tuple[int, ...]:
    """``"16,32,64,64,128,128"`` -> the six conv block widths of a tagger."""
    try:
        widths = tuple(int(item) for item in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 6 or min(widths) < 1:
        raise InvalidInputError(
            f"--widths must be six positive integers separated by commas, got {text!r}"
        )
    return widths


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _mode(args: argparse.Namespace) -> tuple[bool, str]:
    """(is a sweep, manifest path) from the positional words."""
    if args.manifest == SWEEP_WORD:
        if args.sweep_manifest is None:
            raise InvalidInputError("evaluate sweep needs a MANIFEST")
        return True, args.sweep_manifest
    if args.sweep_manifest is not None:
        raise InvalidInputError(
            f"one MANIFEST expected, got {args.manifest!r} and {args.sweep_manifest!r} "
            "(for a grid: ezaudio evaluate sweep MANIFEST)"
        )
    return False, args.manifest


def _check_numbers(args: argparse.Namespace, sweep: bool) -> None:
    """Every number, before any file or model is read."""
    if args.steps is not None:
        check_steps(args.steps)
    if args.eta is not None:
        check_eta(args.eta)
    if args.seconds is not None:
        check_seconds(args.seconds)
    check_seed(args.seed)
    try:
        check_seed(args.caption_seed)
    except InvalidInputError as error:
        raise InvalidInputError(str(error).replace("seed", "caption_seed", 1)) from None
    if not 1 <= args.batch_size <= LIMITS.max_batch:
        raise InvalidInputError(
            f"--batch-size must be in [1, {LIMITS.max_batch}], got {args.batch_size}"
        )
    if args.limit is not None and args.limit < 2:
        raise InvalidInputError(
            f"--limit must be at least 2 (FD needs two clips), got {args.limit}"
        )
    if sweep:
        for flag, value in (("--guidance-scale", args.guidance_scale),
                            ("--guidance-rescale", args.guidance_rescale)):  # fmt: skip
            if value is not None:
                raise InvalidInputError(
                    f"{flag} does not go with evaluate sweep; use --guidance-scales / --rescales"
                )
        check_grid(args.guidance_scales or [0.0], args.rescales or [0.0])
    else:
        for flag, value in (("--guidance-scales", args.guidance_scales),
                            ("--rescales", args.rescales)):  # fmt: skip
            if value is not None:
                raise InvalidInputError(f"{flag} goes with `ezaudio evaluate sweep`")
        if args.guidance_scale is not None:
            check_guidance_scale(args.guidance_scale)
        if args.guidance_rescale is not None:
            check_guidance_rescale(args.guidance_rescale)


def _panns_path(args: argparse.Namespace) -> Path:
    path = Path(args.panns).expanduser() if args.panns else default_panns_path()
    if not path.exists():
        where = f"{path}: PANNs checkpoint not found" if args.panns else (
            f"no PANNs checkpoint at {path}"
        )  # fmt: skip
        raise CheckpointError(
            f"{where}; pass --panns with the official {PANNS_FILE} ({PANNS_URL}) or a Cnn14 folder"
        )
    return path


def run_evaluate(args: argparse.Namespace) -> None:
    """Handler of ``ezaudio evaluate [sweep]``."""
    from ezaudio.eval.protocol import read_eval_manifest
    from ezaudio.pipeline import resolve_dtype

    sweep, manifest = _mode(args)
    _check_numbers(args, sweep)
    resolve_dtype(args.dtype)
    clips = read_eval_manifest(manifest, args.audio_root, args.audio_pattern)
    if args.limit is not None:
        clips = clips[: args.limit]
    if len(clips) < 2:
        raise InvalidInputError(f"{manifest}: FD needs at least 2 clips, the manifest has 1")
    if sweep:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InvalidInputError(
                "evaluate sweep plots with matplotlib: pip install 'ezaudio[eval]'"
            ) from None
    out_dir = Path(args.out_dir)
    ensure_writable_folder(out_dir)
    panns_path = _panns_path(args)
    clap_name = args.clap
    if clap_name is not None and not clap_name.strip():
        raise InvalidInputError("--clap is empty; give a folder, a hub id or 'none'")

    from ezaudio.eval.clap import DEFAULT_CLAP, ClapScorer
    from ezaudio.eval.features import load_panns
    from ezaudio.eval.protocol import Evaluator, evaluate_model, resolve_settings, run_sweep
    from ezaudio.pipeline import EzAudio, resolve_device

    # Feature models first: a missing CLAP or PANNs fails before the (bigger) model loads.
    device = resolve_device(args.device)
    clap = None
    if (clap_name or "").strip().lower() != "none":
        clap = ClapScorer.from_pretrained(clap_name or DEFAULT_CLAP, device=device,
                                          batch_size=args.batch_size)  # fmt: skip
    extractor = load_panns(panns_path, device=device)
    pipe = EzAudio.from_pretrained(args.model, device=device, dtype=args.dtype)
    settings = resolve_settings(
        pipe, steps=args.steps, guidance_scale=args.guidance_scale,
        guidance_rescale=args.guidance_rescale, eta=args.eta, seconds=args.seconds,
        seed=args.seed, caption_seed=args.caption_seed,
    )  # fmt: skip
    cache_dir = Path(args.cache_dir) if args.cache_dir else out_dir / "feature_cache"
    evaluator = Evaluator(extractor, clap, cache_dir, batch_size=args.batch_size,
                          progress=not args.quiet)  # fmt: skip
    model_name = pipe.name or str(args.model)
    common = {
        "batch_size": args.batch_size, "progress": not args.quiet, "model_name": model_name,
        "manifest": manifest, "log": lambda message: _say(args, message),
    }  # fmt: skip
    if sweep:
        run_sweep(
            clips, pipe, out_dir, evaluator, settings,
            args.guidance_scales or DEFAULT_GUIDANCE_SCALES, args.rescales or DEFAULT_RESCALES,
            **common,
        )  # fmt: skip
        print((out_dir / "sweep.md").read_text(encoding="utf-8"), end="")
        _say(args, f"wrote {out_dir / 'sweep.json'}, {out_dir / 'sweep.md'}, "
                   f"{out_dir / 'sweep.png'}")  # fmt: skip
        return
    evaluate_model(clips, pipe, out_dir, evaluator, settings, **common)
    print((out_dir / "results.md").read_text(encoding="utf-8"), end="")
    _say(args, f"wrote {out_dir / 'results.json'} and {out_dir / 'results.md'}")
