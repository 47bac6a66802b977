"""Package a model with another VAE whose encoder is the model's own: the last step of the
default's build, after ``ezaudio train-vae ... --set model.freeze_encoder=true`` improved the
decoder on the CPU (docs/results.md, "The default model").

Usage (from the repository root; the package need not be installed)::

    PYTHONPATH=src python scripts/world/swap_decoder.py MODEL_FOLDER VAE --out OUT [--float32]

``VAE`` is a VAE folder, a model folder or a VAE training checkpoint. Its encoder must be
bit-identical to the model's (up to the model's float16 storage), since the DiT was trained
on that encoder's latents; anything else is refused. ``OUT`` is written as float16 (as the
bundled default) unless ``--float32``; it never exists half-written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from ezaudio.errors import EzAudioError, InvalidInputError
from ezaudio.model_folder import pack_half_precision, read_index
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.train.vae_trainer import read_vae_source


def same_encoder(model_vae: WaveformVAE, new_vae: WaveformVAE) -> bool:
    """Whether the encoders agree, comparing in the model's storage precision."""
    old, new = model_vae.encoder.state_dict(), new_vae.encoder.state_dict()
    if old.keys() != new.keys():
        return False
    return all(
        old[k].shape == new[k].shape and torch.equal(old[k].half(), new[k].half()) for k in old
    )


def swap_decoder(
    model: Path,
    vae_source: Path,
    out: Path,
    half: bool = True,
    sampling: dict | None = None,
    name: str | None = None,
) -> Path:
    """Write ``model`` with the VAE of ``vae_source`` into ``out``; return ``out``.

    ``half``: float16 storage, with ``sampling`` defaults and ``name`` replaced as
    :func:`ezaudio.model_folder.pack_half_precision` does."""
    index = read_index(model)
    model_vae = read_vae_source(model)
    new_vae = read_vae_source(vae_source)
    if model_vae.config != new_vae.config:
        raise InvalidInputError(f"{vae_source}: a VAE of another configuration than {model}'s")
    if not same_encoder(model_vae, new_vae):
        raise InvalidInputError(
            f"{vae_source}: its encoder differs from {model}'s (train with "
            "model.freeze_encoder=true from that model)"
        )
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = Path(tmp) / "model"
        shutil.copytree(model, staged)
        shutil.rmtree(staged / index.vae)
        new_vae.save_pretrained(staged / index.vae)
        if half:
            return pack_half_precision(staged, out, sampling, name)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staged), out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="model folder (ezaudio.json)")
    parser.add_argument("vae", type=Path, help="VAE folder, model folder or VAE checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--float32", action="store_true", help="keep float32 weights")
    args = parser.parse_args(argv)
    try:
        out = swap_decoder(args.model, args.vae, args.out, half=not args.float32)
    except EzAudioError as error:
        print(f"swap_decoder: error: {error}", file=sys.stderr)
        return 1
    print(f"{out}: {args.model} with the VAE of {args.vae}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
