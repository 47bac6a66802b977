"""Shared clips for the synth tests (rendered once per session)."""

from __future__ import annotations

import pytest
from signal_checks import CLIP_SECONDS, CLIP_SR

from ezaudio.synth.world import make_clip


@pytest.fixture(scope="session")
def clips():
    """80 clips of 6 s at 16 kHz from seed 7."""
    return [make_clip(7, index, CLIP_SR, CLIP_SECONDS) for index in range(80)]
