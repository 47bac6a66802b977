"""Conversion of official (stable-audio-tools) VAE checkpoints and configs."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from ezaudio.checkpoints.official_vae import (
    convert_official_vae,
    vae_config_from_official,
    vae_state_from_official,
)
from ezaudio.config import VAEConfig
from ezaudio.errors import CheckpointError
from ezaudio.nn.oobleck import WaveformVAE

TOLERANCE = 1e-5


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref|."""
    return float((ours - ref).abs().max() / ref.abs().max())


def write_official_pt(state: dict[str, torch.Tensor], path: Path) -> Path:
    """Write ``state`` as the official release does: {'state_dict': {'autoencoder.' + key}}."""
    torch.save({"state_dict": {"autoencoder." + k: v for k, v in state.items()}}, path)
    return path


@pytest.fixture
def small_weights(reference_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(reference_dir / "vae_small_weights.safetensors")


@pytest.fixture
def small_config(reference_dir: Path) -> dict[str, Any]:
    return json.loads((reference_dir / "vae_small_config.json").read_text())


@pytest.fixture
def official_folder(
    tmp_path: Path, reference_dir: Path, small_weights: dict[str, torch.Tensor]
) -> Path:
    """tmp folder with the small VAE as an official release: model.ckpt + config.json."""
    folder = tmp_path / "official"
    folder.mkdir()
    shutil.copy(reference_dir / "vae_small_config.json", folder / "config.json")
    write_official_pt(small_weights, folder / "model.ckpt")
    return folder


@torch.no_grad()
def test_converted_checkpoint_matches_reference(
    official_folder: Path, reference_dir: Path, tmp_path: Path
) -> None:
    converted = convert_official_vae(
        official_folder / "model.ckpt", official_folder / "config.json"
    )
    converted.save_pretrained(tmp_path / "ours")
    model = WaveformVAE.from_pretrained(tmp_path / "ours")
    io = load_file(reference_dir / "vae_small_io.safetensors")

    encoder_out = model.encoder_output(io["audio"])  # [2, 16, 25]
    assert encoder_out.shape == io["encoder_out"].shape
    assert relative_error(encoder_out, io["encoder_out"]) <= TOLERANCE
    decoded = model.decode(io["latent"])  # [2, 1, 992]
    assert decoded.shape == io["decoded"].shape
    assert relative_error(decoded, io["decoded"]) <= TOLERANCE


def test_small_config_maps_to_vae_config(small_config: dict[str, Any]) -> None:
    assert vae_config_from_official(small_config) == VAEConfig(
        sample_rate=24000,
        audio_channels=1,
        channels=16,
        c_mults=(1, 2, 4),
        strides=(2, 4, 5),
        latent_dim=8,
        use_snake=True,
        final_tanh=False,
    )


def test_full_official_config_maps_to_24k_preset(reference_dir: Path) -> None:
    manifest = json.loads((reference_dir / "manifest_vae.json").read_text())
    config = vae_config_from_official(manifest["config"])
    assert config == VAEConfig()
    assert config.hop_length == 480 and config.latent_rate == 50


def test_safetensors_with_and_without_prefix(
    tmp_path: Path, small_weights: dict[str, torch.Tensor], official_folder: Path
) -> None:
    config_path = official_folder / "config.json"
    save_file(small_weights, tmp_path / "plain.safetensors")
    save_file(
        {"autoencoder." + k: v for k, v in small_weights.items()}, tmp_path / "pre.safetensors"
    )
    for name in ("plain.safetensors", "pre.safetensors"):
        model = convert_official_vae(tmp_path / name, config_path)
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in small_weights.items())


def test_full_size_manifest_converts_losslessly(reference_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((reference_dir / "manifest_vae.json").read_text())
    shapes: dict[str, list[int]] = manifest["state_dict"]
    generator = torch.Generator().manual_seed(0)
    # float16 keeps the 43.8 M random values small on disk; loading upcasts exactly.
    state = {
        k: torch.randn(shape, generator=generator, dtype=torch.float16)
        for k, shape in shapes.items()
    }
    path = write_official_pt(state, tmp_path / "model.ckpt")
    (tmp_path / "config.json").write_text(json.dumps(manifest["config"]))

    model = convert_official_vae(path, tmp_path / "config.json")
    ours = model.state_dict()
    assert set(ours) == set(shapes)
    for key, value in state.items():
        assert list(ours[key].shape) == shapes[key], key
        assert torch.equal(ours[key], value.float()), key
    total = sum(math.prod(shape) for shape in shapes.values())
    assert model.num_parameters() == total
    assert round(total / 1e6, 1) == 43.8


def test_state_from_official_strips_prefix_and_drops_other_modules() -> None:
    weight = torch.ones(2)
    state = {
        "autoencoder.encoder.layers.0.bias": weight,
        "autoencoder.bottleneck.extra": weight,
        "discriminator.convs.0.weight": weight,
    }
    assert set(vae_state_from_official(state)) == {"encoder.layers.0.bias", "bottleneck.extra"}
    plain = {"encoder.layers.0.bias": weight}
    assert vae_state_from_official(plain) == plain


def test_discriminator_keys_are_ignored(
    tmp_path: Path, official_folder: Path, small_weights: dict[str, torch.Tensor]
) -> None:
    full = {"autoencoder." + k: v for k, v in small_weights.items()}
    full["discriminator.convs.0.weight"] = torch.ones(3)
    torch.save({"state_dict": full}, tmp_path / "with_disc.ckpt")
    convert_official_vae(tmp_path / "with_disc.ckpt", official_folder / "config.json")


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("missing", "decoder.layers.5.weight_v"),
        ("shape", "encoder.layers.0.bias"),
        ("extra", "encoder.layers.99.bias"),
    ],
)
def test_mismatched_state_is_refused_by_name(
    tmp_path: Path,
    official_folder: Path,
    small_weights: dict[str, torch.Tensor],
    edit: str,
    named: str,
) -> None:
    state = dict(small_weights)
    if edit == "missing":
        del state[named]
    elif edit == "shape":
        state[named] = torch.zeros(17)
    else:
        state[named] = torch.zeros(16)
    path = write_official_pt(state, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        convert_official_vae(path, official_folder / "config.json")


def test_corrupt_and_missing_files_are_refused(tmp_path: Path, official_folder: Path) -> None:
    config = official_folder / "config.json"
    real = (official_folder / "model.ckpt").read_bytes()
    for name, content in [
        ("text.ckpt", b"this is not a torch file"),
        ("hello.ckpt", b"hello world"),
        ("truncated.ckpt", real[: len(real) // 2]),
        ("empty.ckpt", b""),
    ]:
        corrupt = tmp_path / name
        corrupt.write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            convert_official_vae(corrupt, config)
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="corrupt"):
        convert_official_vae(tmp_path / "corrupt.safetensors", config)
    with pytest.raises(CheckpointError, match="not found"):
        convert_official_vae(tmp_path / "absent.ckpt", config)
    with pytest.raises(CheckpointError, match="not found"):
        convert_official_vae(official_folder / "model.ckpt", tmp_path / "absent.json")


def _edited(config: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    edited = copy.deepcopy(config)
    node = edited
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return edited


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("model", "bottleneck", "type"), "rvq", "bottleneck.type"),
        (("model", "encoder", "type"), "dac", "encoder.type"),
        (("model", "encoder", "config", "latent_dim"), 8, "encoder.config.latent_dim"),
        (("model", "decoder", "config", "use_nearest_upsample"), True, "use_nearest_upsample"),
        (("model", "encoder", "config", "antialias_activation"), True, "antialias_activation"),
        (("model", "decoder", "config", "strides"), [2, 4, 4], "strides"),
        (("model", "decoder", "config", "mystery"), 1, "mystery"),
        (("model", "io_channels"), 2, "io_channels"),
        (("model", "io_channels"), None, "io_channels"),
        (("model", "downsampling_ratio"), 64, "downsampling_ratio"),
        (("model", "pretransform"), {"type": "wavelet"}, "pretransform"),
        (("sample_rate",), None, "sample_rate"),
    ],
)
def test_unsupported_config_names_the_field(
    small_config: dict[str, Any], path: tuple[str, ...], value: Any, named: str
) -> None:
    with pytest.raises(CheckpointError, match=named):
        vae_config_from_official(_edited(small_config, path, value))


def test_missing_final_tanh_uses_official_default(small_config: dict[str, Any]) -> None:
    edited = _edited(small_config, ("model", "decoder", "config", "final_tanh"), None)
    assert vae_config_from_official(edited).final_tanh is True
