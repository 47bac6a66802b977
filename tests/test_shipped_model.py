"""The model shipped inside the package (issue 5): present, small, float16, loadable with
no network, and it generates audio when no model is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors import safe_open

from ezaudio.cli import main
from ezaudio.hub import default_model_folder
from ezaudio.model_folder import read_index
from ezaudio.pipeline import EzAudio

MAX_BYTES = 40 * 1024 * 1024  # the bound for the bundled weights, all files together


@pytest.fixture(autouse=True)
def no_network(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def folder() -> Path:
    found = default_model_folder()
    assert found is not None, "the package must ship src/ezaudio/default_model"
    return found


@pytest.fixture(scope="module")
def model(folder: Path) -> EzAudio:
    return EzAudio.from_pretrained(device="cpu")


def test_the_shipped_folder_is_small_and_float16(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    weights = sorted(folder.rglob("model.safetensors"))
    assert [p.parent.name for p in weights] == ["dit", "vae"]
    for path in weights:
        with safe_open(str(path), framework="pt") as handle:
            dtypes = {handle.get_slice(key).get_dtype() for key in handle.keys()}
        assert dtypes == {"F16"}, path


def test_the_index_names_the_model_and_its_sampling_defaults(folder: Path) -> None:
    index = read_index(folder)
    assert index.name == "ezaudio-s-world"
    assert index.sampling.seconds == 10.0 and index.sampling.steps == 25
    assert index.sampling.guidance_scale > 1.0  # classifier-free guidance on by default


def test_from_pretrained_without_a_name_loads_it_offline(model: EzAudio) -> None:
    assert model.name == "ezaudio-s-world"
    assert model.sample_rate == 16000


def test_a_short_generation_is_finite_audible_and_seeded(model: EzAudio) -> None:
    kwargs = {"seconds": 2.0, "steps": 8, "seed": 3, "progress": False}
    first = model.generate("a bell rings twice", **kwargs).waveforms
    again = model.generate("a bell rings twice", **kwargs).waveforms
    other = model.generate("a siren wails", **kwargs).waveforms
    assert first.shape == (1, 32000)
    assert np.isfinite(first).all() and np.abs(first).max() > 1e-3
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_the_cli_writes_a_clip_with_no_model_named(tmp_path: Path) -> None:
    out = tmp_path / "bell.wav"
    args = ["generate", "a bell rings", "-o", str(out), "--seconds", "1", "--steps", "4"]
    assert main(args) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.shape == (16000,)
