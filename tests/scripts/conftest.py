"""Shared fixtures of the scripts/world tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_world_and_vaes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic world (8 clips of 2 s, half of them test clips) and two tiny random
    VAEs, at 16 kHz (the world's rate) and at 8 kHz: keys ``world``, ``vae16000``,
    ``vae8000``."""
    from ezaudio.config import VAEConfig
    from ezaudio.nn.oobleck import WaveformVAE
    from ezaudio.synth import write_world

    folder = tmp_path_factory.mktemp("tiny_world")
    write_world(folder / "world", clips=8, seed=0, seconds=2.0, splits=(0.5, 0.0, 0.5),
                progress=False)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for rate in (16000, 8000):
            config = VAEConfig(sample_rate=rate, channels=4, c_mults=(1, 2), strides=(4, 5),
                               latent_dim=4)  # fmt: skip
            WaveformVAE(config).save_pretrained(folder / f"vae{rate}")
    return {name: folder / name for name in ("world", "vae16000", "vae8000")}
