"""Tiny training worlds: a few short clips with captions, a tiny random VAE, recipes.

Imported by the training tests as ``tiny_world`` (tests/ has no packages).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

RATE = 16000  # tiny VAE preset


def write_world(folder: Path, clips: int = 8, bad: bool = False) -> Path:
    """``clips`` tones with captions (and, with ``bad``, unreadable files) + a manifest."""
    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    rows = []
    for index in range(clips):
        tone = 0.5 * np.sin(2 * np.pi * (200 + 100 * index) * t) + 0.05 * rng.standard_normal(RATE)
        sf.write(audio / f"{index}.wav", tone.astype(np.float32), RATE)
        rows.append({"audio": f"audio/{index}.wav", "caption": f"a tone number {index}"})
    if bad:
        (audio / "garbage.wav").write_bytes(b"this is not audio" * 10)
        (audio / "empty.wav").write_bytes(b"")
        sf.write(audio / "silent.wav", np.zeros(RATE, dtype=np.float32), RATE)
        for name in ("garbage", "empty", "silent", "missing"):
            rows.append({"audio": f"audio/{name}.wav", "caption": name})
    manifest = folder / "train.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


def tiny_recipe(world: Path, run_dir: Path, stage: int = 1, **sections: dict) -> dict:
    """A recipe dict for the tiny world; ``sections`` update its sections."""
    recipe = {
        "stage": stage,
        "model": {"dit_preset": "tiny", "vae": str(world / "vae"), "text_encoder": "minilm"},
        "data": {"manifest": str(world / "train.jsonl"), "clip_seconds": 0.25},
        "optim": {"batch_size": 4, "max_steps": 4, "lr": 1.0e-3, "ema_decay": 0.9},
        "masking": {},
        "run": {"output_dir": str(run_dir), "checkpoint_every": 2, "keep_last": 2, "seed": 0},
    }
    for name, values in sections.items():
        recipe[name].update(values)
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def tiny_vae_recipe(world: Path, run_dir: Path, **sections: dict) -> dict:
    """A ``train-vae`` recipe dict for the tiny world (tiny VAE preset, a small
    discriminator, constant learning rates); ``sections`` update its sections."""
    recipe = {
        "model": {"vae_preset": "tiny"},
        "data": {"manifest": str(world / "train.jsonl"), "clip_seconds": 0.25},
        "optim": {
            "batch_size": 4, "max_steps": 4, "lr": 1.0e-3, "disc_lr": 1.0e-3,
            "inverse_lr_warmup": 0.0,
        },
        "loss": {
            "disc_filters": 8, "disc_n_ffts": [256, 128, 64], "disc_hop_lengths": [64, 32, 16],
            "disc_win_lengths": [256, 128, 64],
        },
        "run": {"output_dir": str(run_dir), "checkpoint_every": 2, "keep_last": 2, "seed": 0},
    }  # fmt: skip
    for name, values in sections.items():
        recipe[name].update(values)
    return recipe
