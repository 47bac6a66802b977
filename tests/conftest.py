"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def reference_dir() -> Path:
    """Folder of the reference outputs of the official implementation."""
    return Path(__file__).parent / "data_files" / "reference"


# ---- tiny random pipeline (tests/test_pipeline.py, tests/test_hub.py) ---------------------
# A real MiniLM text encoder (offline, dim 384) with a tiny random DiT and VAE. The
# DiT's zero-initialised paths (AdaLN, cross-attention outputs) are perturbed with
# noise so the text and the timestep actually change its output.


def build_tiny_pipeline(text_encoder, seed: int = 0, device: str = "cpu"):
    """``EzAudio`` with the tiny DiT (context 384) and tiny VAE presets, seeded weights."""
    import dataclasses

    import torch

    from ezaudio.config import DIT_PRESETS, VAE_PRESETS
    from ezaudio.nn.dit import EzAudioDiT
    from ezaudio.nn.oobleck import WaveformVAE
    from ezaudio.pipeline import EzAudio

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dit = EzAudioDiT(dataclasses.replace(DIT_PRESETS["tiny"], context_dim=text_encoder.dim))
        vae = WaveformVAE(VAE_PRESETS["tiny"])
    with torch.no_grad():
        for parameter in dit.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return EzAudio(dit, vae, text_encoder, device=device)


@pytest.fixture(scope="module")
def minilm_text_encoder():
    """The offline all-MiniLM-L6-v2 text encoder (dim 384), loaded once per module."""
    from ezaudio.text import TextEncoder

    return TextEncoder.from_pretrained("minilm")


@pytest.fixture(scope="module")
def tiny_pipeline(minilm_text_encoder):
    """A tiny random ``EzAudio`` on the CPU (16 kHz, 400 latent frames/s). Do not mutate."""
    return build_tiny_pipeline(minilm_text_encoder)


@pytest.fixture
def make_tiny_pipeline(minilm_text_encoder):
    """Factory for a fresh tiny pipeline: ``make_tiny_pipeline(seed=1)``."""

    def make(seed: int = 0, device: str = "cpu"):
        return build_tiny_pipeline(minilm_text_encoder, seed=seed, device=device)

    return make


# ---- end of tiny random pipeline ------------------------------------------------------------
