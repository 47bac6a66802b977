"""The ``ezaudio`` command: parse arguments, call the library, report.

Every expected failure (bad input, missing or corrupt files) prints one line
to stderr and exits with status 1, leaving no partial output file.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ezaudio.data.peak import EDIT_CEILING_DB, GENERATE_CEILING_DB, limit_peak, parse_ceiling
from ezaudio.errors import EzAudioError, InvalidInputError
from ezaudio.validation import (
    check_eta,
    check_guidance_rescale,
    check_guidance_scale,
    check_seconds,
    check_seed,
    check_steps,
    ensure_writable_folder,
    finite_number,
)

AUDIO_SUFFIXES = (".wav", ".flac")

# Modules that add subcommands: each has register(subparsers), setting ``handler``.
EXTENSIONS = (
    "ezaudio.train.commands",
    "ezaudio.data.commands",
    "ezaudio.eval.commands",
    "ezaudio.serve.commands",
)


# ------------------------------------------------------------------ parser
def _sampling_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument(
        "--steps", type=int, help="DDIM steps (default: the model's; ezaudio info MODEL shows them)"
    )
    group.add_argument(
        "--guidance-scale", type=float,
        help="classifier-free guidance w (default: the model's)",
    )  # fmt: skip
    group.add_argument(
        "--guidance-rescale", type=float,
        help="guidance rescale phi in [0, 1] (default: the model's)",
    )  # fmt: skip
    group.add_argument("--eta", type=float, help="DDIM eta in [0, 1] (default: the model's)")
    group.add_argument("--seed", type=int, help="random seed (default: random, printed)")
    group.add_argument("--negative-prompt", default="", help="negative prompt (default: empty)")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", help="model folder, 'ezaudio-l', 'ezaudio-xl' or a hub id (default: bundled)"
    )
    model.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    model.add_argument("--dtype", default="float32", help="DiT precision: float32, bf16, fp16")
    model.add_argument("--quiet", action="store_true", help="no progress bars")


def _peak_option(parser: argparse.ArgumentParser, default_db: float, what: str) -> None:
    parser.add_argument(
        "--peak", default=f"{default_db:g}", metavar="DB",
        help=f"ceiling in dBFS: a clip that peaks above it is turned down by one gain to peak "
        f"there ('none': samples as the model made them; FLAC then clips at 0 dBFS) "
        f"(default: {default_db:g}, for {what})",
    )  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``ezaudio: error: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ezaudio``."""
    parser = _Parser(
        prog="ezaudio", description="Text-to-audio generation and editing with EzAudio."
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    generate = commands.add_parser("generate", help="generate audio from text")
    generate.add_argument("prompt", nargs="?", help="text prompt ('' = unconditional)")
    generate.add_argument("-o", "--output", help="output .wav or .flac file")
    generate.add_argument("--prompts-file", help="text file with one prompt per line")
    generate.add_argument("--out-dir", help="folder for --prompts-file outputs")
    generate.add_argument("--format", choices=["wav", "flac"], default="wav",
                          help="file type for --out-dir (default: wav)")  # fmt: skip
    generate.add_argument("--batch-size", type=int, default=4,
                          help="prompts per batch with --prompts-file (default: 4)")  # fmt: skip
    generate.add_argument(
        "--seconds", type=float, help="duration in seconds (default: the model's)"
    )
    _peak_option(generate, GENERATE_CEILING_DB, "generated clips")
    _sampling_options(generate)

    edit = commands.add_parser("edit", help="regenerate a region of an audio file")
    edit.add_argument("input", help="audio file to edit")
    edit.add_argument("prompt", help="text describing the region")
    edit.add_argument("-o", "--output", required=True, help="output .wav or .flac file")
    edit.add_argument("--mask-start", type=float, required=True, help="region start (s)")
    edit.add_argument("--mask-length", type=float, required=True, help="region length (s)")
    edit.add_argument("--boundary", type=float,
                      help="context on each side of the region (s, model default: 2)")  # fmt: skip
    _peak_option(
        edit, EDIT_CEILING_DB, "edited clips; the input's level is kept unless the edit would clip"
    )
    _sampling_options(edit)

    convert = commands.add_parser("convert", help="convert official checkpoints to a model folder")
    convert.add_argument("--dit", help="official DiT checkpoint (.pt or .safetensors)")
    convert.add_argument("--dit-config", help="official DiT yml (or JSON model section)")
    convert.add_argument("--vae", help="official VAE checkpoint (.pt/.ckpt or .safetensors)")
    convert.add_argument("--vae-config", help="official VAE config.json")
    convert.add_argument("--text-encoder", help="text encoder id or folder (default: from yml)")
    convert.add_argument("--output", required=True, help="model folder to write")

    info = commands.add_parser("info", help="describe a model or component folder")
    info.add_argument("folder", help="model folder, or a dit/ or vae/ component folder")
    info.add_argument("--json", action="store_true", help="print JSON")

    init = commands.add_parser("init", help="write a randomly initialised model folder")
    init.add_argument("--output", required=True, help="model folder to write")
    init.add_argument("--dit-preset", default="tiny", help="DiT preset (default: tiny)")
    init.add_argument("--vae-preset", default="tiny", help="VAE preset (default: tiny)")
    init.add_argument("--text-encoder", default="minilm",
                      help="text encoder id or folder (default: the offline MiniLM)")  # fmt: skip
    init.add_argument("--seed", type=int, default=0, help="initialisation seed")
    for module in EXTENSIONS:
        importlib.import_module(module).register(commands)
    return parser


def _version() -> str:
    from ezaudio import __version__

    return f"ezaudio {__version__}"


# ---------------------------------------------------------------- helpers
def _check_output_file(path: str | None, flag: str = "-o/--output") -> Path:
    if not path:
        raise InvalidInputError(f"{flag} is required")
    out = Path(path)
    if out.suffix.lower() not in AUDIO_SUFFIXES:
        raise InvalidInputError(f"{out}: output must end in .wav or .flac")
    if out.is_dir():
        raise InvalidInputError(f"{out}: is a folder, expected an output file name")
    ensure_writable_folder(out.parent if str(out.parent) else Path("."))
    return out


def _check_sampling(args: argparse.Namespace) -> None:
    """Validate numbers before any model is loaded, so bad input fails in a second."""
    if getattr(args, "seconds", None) is not None:
        check_seconds(args.seconds)
    if args.steps is not None:
        check_steps(args.steps)
    if args.guidance_scale is not None:
        check_guidance_scale(args.guidance_scale)
    if args.guidance_rescale is not None:
        check_guidance_rescale(args.guidance_rescale)
    if args.eta is not None:
        check_eta(args.eta)
    check_seed(args.seed)


def _load_pipeline(args: argparse.Namespace):
    from ezaudio.pipeline import EzAudio

    return EzAudio.from_pretrained(args.model, device=args.device, dtype=args.dtype)


def _quiet_transformers() -> None:
    """Our own progress bars and messages only, without importing transformers (seconds)."""
    if "transformers" not in sys.modules:  # both read when transformers is imported
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "huggingface_hub" in sys.modules:  # too late for its environment variable
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "guidance_rescale": args.guidance_rescale,
        "eta": args.eta,
        "seed": args.seed,
        "negative_prompt": args.negative_prompt,
        "progress": not args.quiet,
    }


def _read_prompts_file(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(
            f"{file}: prompts file not found" + (" (it is a folder)" if file.is_dir() else "")
        )
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{file}: cannot read prompts file ({error})") from error
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise InvalidInputError(f"{file}: the prompts file is empty")
    return prompts


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return slug[:limit] or "unconditional"


def _gain_note(gain_db: float) -> str:
    """``", turned down 1.8 dB to the peak ceiling"`` for a clip that was over it, else ""."""
    return f", turned down {-gain_db:.1f} dB to the peak ceiling" if gain_db < 0 else ""


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


# ---------------------------------------------------------------- commands
def run_generate(args: argparse.Namespace) -> None:
    from ezaudio.data.audio import write_audio

    _check_sampling(args)
    ceiling = parse_ceiling(args.peak)
    if args.prompts_file:
        if args.prompt is not None or args.output:
            raise InvalidInputError("use either PROMPT -o OUT or --prompts-file with --out-dir")
        if not args.out_dir:
            raise InvalidInputError("--prompts-file needs --out-dir")
        if args.batch_size < 1:
            raise InvalidInputError(f"--batch-size must be at least 1, got {args.batch_size}")
        prompts = _read_prompts_file(args.prompts_file)
        out_dir = Path(args.out_dir)
        ensure_writable_folder(out_dir)
        pipe = _load_pipeline(args)
        kwargs = _sampling_kwargs(args)
        base_seed = kwargs.pop("seed")
        for first in range(0, len(prompts), args.batch_size):
            batch = prompts[first : first + args.batch_size]
            seed = None if base_seed is None else base_seed + first
            result = pipe.generate(batch, seconds=args.seconds, seed=seed, **kwargs)
            for offset, (prompt, wave) in enumerate(zip(batch, result.waveforms)):
                index = first + offset
                path = out_dir / f"{index:04d}_{_slug(prompt)}.{args.format}"
                wave, gain_db = limit_peak(wave, ceiling)
                write_audio(path, wave, result.sample_rate)
                _say(args, f"{path} (seed {result.seeds[offset]}{_gain_note(gain_db)})")
        return
    if args.prompt is None:
        raise InvalidInputError("give a PROMPT (or --prompts-file)")
    if args.out_dir:
        raise InvalidInputError("--out-dir goes with --prompts-file; use -o for one prompt")
    output = _check_output_file(args.output)
    pipe = _load_pipeline(args)
    result = pipe.generate(args.prompt, seconds=args.seconds, **_sampling_kwargs(args))
    wave, gain_db = limit_peak(result.waveforms[0], ceiling)
    write_audio(output, wave, result.sample_rate)
    _say(
        args,
        f"{output} ({result.waveforms.shape[-1] / result.sample_rate:.2f} s, "
        f"seed {result.seeds[0]}{_gain_note(gain_db)})",
    )


def run_edit(args: argparse.Namespace) -> None:
    from ezaudio.data.audio import read_audio, write_audio

    _check_sampling(args)
    ceiling = parse_ceiling(args.peak)
    for name in ("mask_start", "mask_length", "boundary"):
        value = getattr(args, name)
        if value is not None:
            finite_number(name, value)
    output = _check_output_file(args.output)
    read_audio(args.input)  # fail on unreadable input before loading a model
    pipe = _load_pipeline(args)
    result = pipe.edit(
        args.input, args.prompt, args.mask_start, args.mask_length, boundary=args.boundary,
        **_sampling_kwargs(args),
    )  # fmt: skip
    wave, gain_db = limit_peak(result.waveforms[0], ceiling)
    write_audio(output, wave, result.sample_rate)
    _say(args, f"{output} (seed {result.seeds[0]}{_gain_note(gain_db)})")


def run_convert(args: argparse.Namespace) -> None:
    from ezaudio.checkpoints.convert import convert_to_folder

    if not args.dit and not args.vae:
        raise InvalidInputError("give --dit (with --dit-config) and/or --vae (with --vae-config)")
    if bool(args.dit) != bool(args.dit_config):
        raise InvalidInputError("--dit and --dit-config go together")
    if bool(args.vae) != bool(args.vae_config):
        raise InvalidInputError("--vae and --vae-config go together")
    report = convert_to_folder(
        Path(args.output), dit=args.dit, dit_config=args.dit_config, vae=args.vae,
        vae_config=args.vae_config, text_encoder=args.text_encoder,
    )  # fmt: skip
    for line in report:
        print(line)


def run_info(args: argparse.Namespace) -> None:
    from ezaudio.checkpoints.convert import describe_folder

    info = describe_folder(Path(args.folder))
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for inner, item in value.items():
                print(f"  {inner}: {item}")
        else:
            print(f"{key}: {value}")


def run_init(args: argparse.Namespace) -> None:
    import torch

    from ezaudio.config import dit_preset, vae_preset
    from ezaudio.nn.dit import EzAudioDiT
    from ezaudio.nn.oobleck import WaveformVAE
    from ezaudio.pipeline import EzAudio
    from ezaudio.text import TextEncoder

    dit_config, vae_config = dit_preset(args.dit_preset), vae_preset(args.vae_preset)
    text = TextEncoder.from_pretrained(args.text_encoder)
    dit_config = dataclasses.replace(
        dit_config, latent_channels=vae_config.latent_dim, context_dim=text.dim
    )
    torch.manual_seed(args.seed)
    pipe = EzAudio(EzAudioDiT(dit_config), WaveformVAE(vae_config), text, device="cpu",
                   name=f"random-{args.dit_preset}")  # fmt: skip
    folder = pipe.save_pretrained(args.output)
    print(f"{folder}: random {args.dit_preset} DiT ({pipe.dit.num_parameters() / 1e6:.2f} M), "
          f"{args.vae_preset} VAE, text encoder {text.name}")  # fmt: skip


COMMANDS = {
    "generate": run_generate,
    "edit": run_edit,
    "convert": run_convert,
    "info": run_info,
    "init": run_init,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ezaudio`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_transformers()  # our own progress bars and messages only
    try:
        handler = getattr(args, "handler", None) or COMMANDS[args.command]
        handler(args)
    except EzAudioError as error:
        message = _as_flags(_one_line(error), _active_parser(parser, args))
        print(f"ezaudio: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ezaudio: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        print(f"ezaudio: error: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0


def _active_parser(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The (sub)command parser that parsed ``args`` (``data encode``: the ``encode`` one)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None) if action.dest else None
            if name in action.choices:
                return _active_parser(action.choices[name], args)
    return parser


def _as_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """Name an option the way it was typed: ``mask_start must ...`` -> ``--mask-start must ...``
    when the message starts with the field of one of the command's options."""
    match = re.match(r"([a-z][a-z0-9_]*)[ :]", message)
    if match:
        flag = "--" + match.group(1).replace("_", "-")
        if any(flag in action.option_strings for action in parser._actions):
            return flag + message[len(match.group(1)) :]
    return message


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
