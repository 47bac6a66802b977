"""``ezaudio train`` (one command per DiT stage) and ``ezaudio train-vae``, from YAML recipes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add the training subcommands to the ``ezaudio`` parser."""
    train = commands.add_parser("train", help="train an EzAudio-DiT stage from a YAML recipe")
    train.add_argument("recipe", help="recipe YAML (see recipes/)")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a recipe value, e.g. --set optim.max_steps=10")  # fmt: skip
    train.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                       help="continue from the latest checkpoint (or the one given)")  # fmt: skip
    train.add_argument("--export", help="model folder for the final EMA weights "
                       "(default: OUTPUT_DIR/model)")  # fmt: skip
    train.add_argument("--no-export", action="store_true", help="do not export at the end")
    train.add_argument("--quiet", action="store_true", help="fewer messages")
    train.set_defaults(handler=run_train)

    vae = commands.add_parser("train-vae", help="train the Oobleck waveform VAE from a YAML recipe")
    vae.add_argument("recipe", help="VAE recipe YAML (recipes/vae-oobleck-24k.yaml, tiny-vae.yaml)")
    vae.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a recipe value, e.g. --set optim.max_steps=10")  # fmt: skip
    vae.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                     help="continue from the latest checkpoint (or the one given)")  # fmt: skip
    vae.add_argument("--export", help="VAE folder for the final weights "
                     "(default: OUTPUT_DIR/model)")  # fmt: skip
    vae.add_argument("--no-export", action="store_true", help="do not export at the end")
    vae.add_argument("--quiet", action="store_true", help="fewer messages")
    vae.set_defaults(handler=run_train_vae)


def run_train(args: argparse.Namespace) -> None:
    from ezaudio.train.recipe import load_recipe
    from ezaudio.train.trainer import DiTTrainer

    recipe = load_recipe(args.recipe, args.set)
    resume: bool | str = args.resume == "latest" if args.resume in (None, "latest") else args.resume
    trainer = DiTTrainer(recipe, resume=resume)
    last = trainer.train()
    _say(args, f"last checkpoint: {last}")
    if not args.no_export:
        folder = trainer.export(args.export or Path(recipe.run.output_dir) / "model")
        _say(args, f"exported EMA weights to {folder}")


def run_train_vae(args: argparse.Namespace) -> None:
    from ezaudio.train.vae_recipe import load_vae_recipe
    from ezaudio.train.vae_trainer import VAETrainer

    recipe = load_vae_recipe(args.recipe, args.set)
    resume: bool | str = args.resume == "latest" if args.resume in (None, "latest") else args.resume
    trainer = VAETrainer(recipe, resume=resume)
    last = trainer.train()
    _say(args, f"last checkpoint: {last}")
    if not args.no_export:
        folder = trainer.export(args.export or Path(recipe.run.output_dir) / "model")
        _say(args, f"exported the VAE to {folder}")


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)
