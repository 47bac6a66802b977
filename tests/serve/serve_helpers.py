"""Helpers of the server tests (tests/ has no packages: imported as ``serve_helpers``)."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import numpy as np
import soundfile as sf

FAST = {"seconds": 0.5, "steps": 2}  # every generation in these tests is this small


class GatedPipeline:
    """The real pipeline behind a gate: each generate/edit call waits until the gate opens,
    so a test decides when the worker is busy. Records the prompts of every call."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)  # released when a call reaches the gate
        self.calls: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)

    def _hold(self, prompt: str | list[str]) -> None:
        self.calls.append([prompt] if isinstance(prompt, str) else list(prompt))
        self.entered.release()
        assert self.gate.wait(60), "the test never opened the gate"

    def generate(self, prompt, **kwargs):
        self._hold(prompt)
        return self._pipeline.generate(prompt, **kwargs)

    def edit(self, audio, prompt, **kwargs):
        self._hold(prompt)
        return self._pipeline.edit(audio, prompt, **kwargs)

    def wait_entered(self, timeout: float = 30) -> None:
        assert self.entered.acquire(timeout=timeout), "no call reached the gate"


def wav_bytes(
    seconds: float = 1.0, rate: int = 16000, fmt: str = "WAV", subtype: str | None = None
) -> bytes:
    """A sine clip encoded in memory."""
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def read_audio_bytes(data: bytes) -> tuple[np.ndarray, int]:
    wave, rate = sf.read(io.BytesIO(data), dtype="float32")
    return wave, rate


class SlowSteps:
    """The real pipeline with a pause after every sampling step, so progress is observable."""

    def __init__(self, pipeline: Any, delay: float = 0.05) -> None:
        self._pipeline = pipeline
        self.delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)

    def _slowed(self, callback):
        def step(index: int, steps: int) -> None:
            time.sleep(self.delay)
            if callback is not None:
                callback(index, steps)

        return step

    def generate(self, prompt, callback=None, **kwargs):
        return self._pipeline.generate(prompt, callback=self._slowed(callback), **kwargs)

    def edit(self, audio, prompt, callback=None, **kwargs):
        return self._pipeline.edit(audio, prompt, callback=self._slowed(callback), **kwargs)
