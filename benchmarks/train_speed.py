"""Steps per second and peak memory of the tiny training recipes on this machine.

Builds a throw-away world (2 s tones with captions at 16 kHz) and a tiny random
VAE in a temporary folder, then trains ``recipes/tiny-stage1.yaml`` and
``tiny-stage2.yaml`` (text through the offline MiniLM) for a few steps each.

    python benchmarks/train_speed.py --steps 30
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ezaudio.config import VAE_PRESETS
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.train.recipe import load_recipe
from ezaudio.train.trainer import DiTTrainer

RECIPES = Path(__file__).parents[1] / "recipes"


def make_world(folder: Path, clips: int = 32, rate: int = 16000) -> None:
    (folder / "audio").mkdir(parents=True)
    t = np.arange(2 * rate) / rate
    with open(folder / "train.jsonl", "w") as manifest:
        for index in range(clips):
            wave = 0.5 * np.sin(2 * np.pi * (150 + 40 * index) * t).astype(np.float32)
            sf.write(folder / "audio" / f"{index}.wav", wave, rate)
            manifest.write(json.dumps({"audio": f"audio/{index}.wav", "caption": f"tone {index}"}))
            manifest.write("\n")
    torch.manual_seed(0)
    WaveformVAE(VAE_PRESETS["tiny"]).save_pretrained(folder / "vae")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(stage: int, world: Path, steps: int) -> dict:
    recipe = load_recipe(
        RECIPES / f"tiny-stage{stage}.yaml",
        [
            f"data.manifest={world / 'train.jsonl'}", f"model.vae={world / 'vae'}",
            f"run.output_dir={world / f'run{stage}'}", "model.init_from=null",
            "optim.max_steps=1", f"run.checkpoint_every={10 * steps}",
        ],
    )  # fmt: skip
    trainer = DiTTrainer(recipe)
    trainer.train()  # one warm-up step
    trainer.recipe.optim.max_steps = 1 + steps
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    return {
        "stage": stage,
        "batch": recipe.optim.batch_size,
        "clip_seconds": recipe.data.clip_seconds,
        "steps": steps,
        "steps_per_s": steps / elapsed,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp)
        make_world(world)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print("| stage | batch | clip (s) | steps/s | peak RSS (MiB, process so far) |")
        print("| --- | --- | --- | --- | --- |")
        for stage in (1, 2):
            r = measure(stage, world, args.steps)
            print(
                f"| {r['stage']} | {r['batch']} | {r['clip_seconds']} | "
                f"{r['steps_per_s']:.2f} | {r['peak_rss_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
