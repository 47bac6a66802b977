"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_world import write_world

from ezaudio.config import VAE_PRESETS
from ezaudio.nn.oobleck import WaveformVAE


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``train.jsonl``, ``audio/`` and a tiny random ``vae/``."""
    folder = tmp_path_factory.mktemp("world")
    write_world(folder)
    torch.manual_seed(0)
    WaveformVAE(VAE_PRESETS["tiny"]).save_pretrained(folder / "vae")
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures(...)``):
    tiny convolutions on a shared 2-core machine run faster so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
