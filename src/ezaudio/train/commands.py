"""``ezaudio train`` (one command per DiT stage) and ``ezaudio train-vae``, from YAML recipes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add the training subcommands to the ``ezaudio`` parser."""
    train = commands.add_parser("train", help="train an EzAudio-DiT stage from a YAML recipe")
    _add_run_options(train, "recipe YAML (see recipes/)", "model folder for the final EMA weights")
    train.set_defaults(handler=run_train)

    vae = commands.add_parser("train-vae", help="train the Oobleck waveform VAE from a YAML recipe")
    _add_run_options(
        vae,
        "VAE recipe YAML (recipes/vae-oobleck-24k.yaml, tiny-vae.yaml)",
        "VAE folder for the final weights",
    )
    vae.set_defaults(handler=run_train_vae)


def _add_run_options(parser: argparse.ArgumentParser, recipe_help: str, export_help: str) -> None:
    parser.add_argument("recipe", help=recipe_help)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe value, e.g. --set optim.max_steps=10")  # fmt: skip
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                        help="continue from the latest checkpoint (or the one given)")  # fmt: skip
    parser.add_argument("--export", help=f"{export_help} (default: OUTPUT_DIR/model)")
    parser.add_argument("--no-export", action="store_true", help="do not export at the end")
    parser.add_argument("--quiet", action="store_true", help="fewer messages")


def run_train(args: argparse.Namespace) -> None:
    from ezaudio.train.recipe import load_recipe
    from ezaudio.train.trainer import DiTTrainer

    _run(args, DiTTrainer, load_recipe(args.recipe, args.set), "exported EMA weights to")


def run_train_vae(args: argparse.Namespace) -> None:
    from ezaudio.train.vae_recipe import load_vae_recipe
    from ezaudio.train.vae_trainer import VAETrainer

    _run(args, VAETrainer, load_vae_recipe(args.recipe, args.set), "exported the VAE to")


def _run(args: argparse.Namespace, trainer_class: type, recipe: object, exported: str) -> None:
    """Train (resuming when asked), then export unless --no-export."""
    resume: bool | str = args.resume == "latest" if args.resume in (None, "latest") else args.resume
    for warning in getattr(recipe, "warnings", list)():
        print(f"warning: {warning}", file=sys.stderr)  # even with --quiet
    trainer = trainer_class(recipe, resume=resume)
    last = trainer.train()
    _say(args, f"last checkpoint: {last}")
    if not args.no_export:
        folder = trainer.export(args.export or Path(recipe.run.output_dir) / "model")
        _say(args, f"{exported} {folder}")


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)
