"""Official DiT checkpoints: parity with the reference outputs and exact parameter layouts."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from ezaudio.checkpoints.official_dit import (
    convert_official_dit,
    dit_config_from_official,
    dit_state_from_official,
)
from ezaudio.config import DIT_PRESETS
from ezaudio.errors import CheckpointError
from ezaudio.nn.component import check_state_dict
from ezaudio.nn.dit import EzAudioDiT


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture
def official_small(tmp_path, reference_dir):
    """The small reference DiT written as the official ``{'model': state_dict}`` file."""
    weights = load_file(reference_dir / "dit_small_weights.safetensors")
    path = tmp_path / "dit_small.pt"
    torch.save({"model": weights}, path)
    return path, reference_dir / "dit_small_config.json"


def test_small_dit_matches_reference_after_native_round_trip(
    official_small, reference_dir, tmp_path
):
    model, _ = convert_official_dit(*official_small)
    model.save_pretrained(tmp_path / "dit")
    model = EzAudioDiT.from_pretrained(tmp_path / "dit")
    io = load_file(reference_dir / "dit_small_io.safetensors")
    with torch.no_grad():
        text_to_audio = model(io["x"], io["timesteps"], io["context"], io["context_mask"])
        edit = model(
            io["x"],
            io["timesteps"],
            io["context"],
            io["context_mask"],
            gt=io["gt"],
            gt_mask=io["gt_mask"],
        )
    assert relative_error(text_to_audio, io["v_text_to_audio"]) <= 1e-5
    assert relative_error(edit, io["v_edit"]) <= 1e-5


def test_safetensors_with_official_names_converts_too(reference_dir, tmp_path):
    path = tmp_path / "dit.safetensors"
    save_file(load_file(reference_dir / "dit_small_weights.safetensors"), path)
    model, full = convert_official_dit(path, reference_dir / "dit_small_config.json")
    assert model.config.embed_dim == 64 and model.config.latent_channels == 8
    assert full["model"]["embed_dim"] == 64


def _meta_state(manifest: dict) -> dict[str, torch.Tensor]:
    state = {}
    for key, shape in manifest["state_dict"].items():
        if key.endswith("rotary.inv_freq"):
            dim = 2 * shape[0]
            state[key] = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        else:
            state[key] = torch.empty(shape, device="meta")
    return state


@pytest.mark.parametrize("name", ["ezaudio-l", "ezaudio-xl"])
def test_manifest_layout_converts_to_exactly_those_parameters(name, reference_dir):
    manifest = json.loads((reference_dir / f"manifest_{name}.json").read_text())
    config = dit_config_from_official(manifest["config"]["model"])
    assert config == DIT_PRESETS[name]
    state = dit_state_from_official(_meta_state(manifest), config)
    with torch.device("meta"):
        model = EzAudioDiT(config)
    check_state_dict(model, state, name)  # raises on any missing/extra/mis-shaped key
    manifest_params = sum(
        math.prod(shape)
        for key, shape in manifest["state_dict"].items()
        if not key.endswith("rotary.inv_freq")
    )
    assert model.num_parameters() == manifest_params
    expected_millions = {"ezaudio-l": 596.8, "ezaudio-xl": 874.8}[name]
    assert round(manifest_params / 1e6, 1) == expected_millions


def test_converted_values_are_the_checkpoint_values(official_small, reference_dir):
    model, _ = convert_official_dit(*official_small)
    weights = load_file(reference_dir / "dit_small_weights.safetensors")
    native = model.state_dict()
    for key, value in weights.items():
        if key.endswith("inv_freq"):
            continue
        name = key.removeprefix("model.")
        assert torch.equal(native[name], value), key
    assert len(native) == sum(1 for k in weights if not k.endswith("inv_freq"))


def test_missing_and_extra_keys_are_listed(reference_dir, tmp_path):
    weights = load_file(reference_dir / "dit_small_weights.safetensors")
    weights.pop("model.final_block.linear.bias")
    weights["model.surprise"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save({"model": weights}, path)
    with pytest.raises(CheckpointError) as info:
        convert_official_dit(path, reference_dir / "dit_small_config.json")
    message = str(info.value)
    assert "final_block.linear.bias" in message and "surprise" in message
    assert "\n" not in message


def test_checkpoint_that_does_not_fit_the_config(reference_dir, tmp_path):
    config = json.loads((reference_dir / "dit_small_config.json").read_text())
    config["embed_dim"] = 128
    bad_config = tmp_path / "config.json"
    bad_config.write_text(json.dumps(config))
    path = tmp_path / "dit.pt"
    torch.save({"model": load_file(reference_dir / "dit_small_weights.safetensors")}, path)
    with pytest.raises(CheckpointError, match="does not fit its config"):
        convert_official_dit(path, bad_config)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("input_type", "2d", "input_type"),
        ("context_fusion", "concat", "context_fusion"),
        ("rope_mode", "dual", "rope_mode"),
        ("cls_dim", 16, "cls_dim"),
        ("in_chans", 8, "in_chans"),
    ],
)
def test_unsupported_official_settings_are_named(reference_dir, key, value, match):
    config = json.loads((reference_dir / "dit_small_config.json").read_text())
    config[key] = value
    with pytest.raises(CheckpointError, match=match):
        dit_config_from_official(config)


def test_corrupt_and_missing_files(reference_dir, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        convert_official_dit(corrupt, reference_dir / "dit_small_config.json")
    with pytest.raises(CheckpointError, match="not found"):
        convert_official_dit(tmp_path / "absent.pt", reference_dir / "dit_small_config.json")
    bad_yaml = tmp_path / "bad.yml"
    bad_yaml.write_text("model: [unclosed")
    with pytest.raises(CheckpointError, match="YAML"):
        convert_official_dit(corrupt, bad_yaml)


class Payload:
    """Stands for arbitrary code a malicious checkpoint could carry."""


def test_pickled_objects_are_refused(reference_dir, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"x": Payload()}}, path)
    with pytest.raises(
        CheckpointError, match="refused to unpickle the Python object .*Payload"
    ) as info:
        convert_official_dit(path, reference_dir / "dit_small_config.json")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ezaudio-l", "ezaudio-xl"])
def test_full_size_random_checkpoint_converts_value_for_value(name, reference_dir, tmp_path):
    """The user path on a full-size file: official .pt + yml -> EzAudioDiT, every value kept."""
    import yaml

    manifest = json.loads((reference_dir / f"manifest_{name}.json").read_text())
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in manifest["state_dict"].items():
        if key.endswith("rotary.inv_freq"):
            dim = 2 * shape[0]
            state[key] = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        else:
            state[key] = torch.randn(shape, generator=generator, dtype=torch.bfloat16)
    torch.save({"model": state}, tmp_path / "dit.pt")
    (tmp_path / "dit.yml").write_text(yaml.safe_dump(manifest["config"]))
    model, full = convert_official_dit(tmp_path / "dit.pt", tmp_path / "dit.yml")
    assert full["text_encoder"]["model"].startswith("google/flan-t5")
    native = model.state_dict()
    converted = 0
    for key, value in state.items():
        if key.endswith("rotary.inv_freq"):
            continue
        assert torch.equal(native[key.removeprefix("model.")], value.float()), key
        converted += 1
    assert converted == len(native)
