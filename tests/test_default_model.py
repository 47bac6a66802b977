"""The bundled-default path: a model packed as float16 (``pack_half_precision``) and put
where the package looks for its default is what ``EzAudio.from_pretrained()`` and
``ezaudio generate`` use when no model is named (issue 5). A tiny random model stands in
here; tests/test_shipped_model.py checks the trained default itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors import safe_open

import ezaudio.hub
from ezaudio.cli import main
from ezaudio.model_folder import pack_half_precision, read_index
from ezaudio.pipeline import EzAudio


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    assert main(["init", "--output", str(folder), "--seed", "0"]) == 0
    return folder


@pytest.fixture
def packed(tiny_model: Path, tmp_path: Path) -> Path:
    return pack_half_precision(
        tiny_model, tmp_path / "default_model", {"steps": 3, "seconds": 0.5}, "packed-tiny"
    )


def _dtypes(path: Path) -> set[str]:
    with safe_open(str(path), framework="pt") as handle:
        return {handle.get_slice(key).get_dtype() for key in handle.keys()}


def test_packing_stores_float16_weights_and_the_given_defaults(tiny_model, packed) -> None:
    weights = sorted(packed.rglob("model.safetensors"))
    assert [p.parent.name for p in weights] == ["dit", "vae"]
    assert all(_dtypes(p) == {"F16"} for p in weights)
    assert all(_dtypes(p) == {"F32"} for p in tiny_model.rglob("model.safetensors"))
    index = read_index(packed)
    assert (index.name, index.sampling.steps, index.sampling.seconds) == ("packed-tiny", 3, 0.5)
    original = read_index(tiny_model)
    assert index.sampling.guidance_scale == original.sampling.guidance_scale  # others kept
    assert not list(packed.parent.glob(".*.tmp"))  # no staging folder left behind
    size = sum(p.stat().st_size for p in weights)
    assert size < 0.6 * sum(p.stat().st_size for p in tiny_model.rglob("model.safetensors"))


def test_a_packed_model_generates_what_the_original_does_up_to_float16_rounding(
    tiny_model, packed
) -> None:
    kwargs = {"seconds": 0.5, "steps": 3, "seed": 1, "progress": False}
    full = EzAudio.from_pretrained(tiny_model, device="cpu").generate("a bell", **kwargs)
    half = EzAudio.from_pretrained(packed, device="cpu").generate("a bell", **kwargs)
    assert full.waveforms.shape == half.waveforms.shape
    assert np.abs(full.waveforms - half.waveforms).max() < 0.05 * np.abs(full.waveforms).max()


def test_from_pretrained_and_generate_use_the_default_when_no_model_is_named(
    packed, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(ezaudio.hub, "default_model_folder", lambda: packed)
    assert EzAudio.from_pretrained(device="cpu").name == "packed-tiny"
    out = tmp_path / "dog.wav"
    assert main(["generate", "a dog barks", "-o", str(out), "--seed", "0"]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.shape == (8000,)  # the packed defaults: 0.5 s


def test_without_a_bundled_default_the_error_says_what_to_pass(monkeypatch, capsys) -> None:
    monkeypatch.setattr(ezaudio.hub, "default_model_folder", lambda: None)
    assert main(["generate", "a dog barks", "-o", "never.wav"]) != 0
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "no default model is bundled" in said[0]
    assert not Path("never.wav").exists()


def test_packing_refuses_a_folder_that_is_not_a_model(tmp_path) -> None:
    with pytest.raises(Exception, match="not an ezaudio model folder"):
        pack_half_precision(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_packed_weights_are_readable_by_others_whatever_the_source_mode(
    tiny_model: Path, tmp_path: Path
) -> None:
    """A package's bundled weights must be readable by every user: owner-only source files
    (a training machine with umask 077) do not pass their mode on."""
    import os
    import shutil
    import stat

    source = tmp_path / "owner_only"
    shutil.copytree(tiny_model, source)
    for weights in source.rglob("model.safetensors"):
        weights.chmod(0o600)
    umask = os.umask(0o022)
    try:
        out = pack_half_precision(source, tmp_path / "packed")
    finally:
        os.umask(umask)
    for weights in out.rglob("model.safetensors"):
        assert stat.S_IMODE(weights.stat().st_mode) == 0o644, weights
