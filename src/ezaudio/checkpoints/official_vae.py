"""Convert the official EzAudio waveform VAE (stable-audio-tools Oobleck) to :class:`WaveformVAE`.

The official release is a folder with ``config.json`` (stable-audio-tools
autoencoder config) and a torch file ``{'state_dict': {'autoencoder.' + key:
tensor}}`` that may also hold discriminator weights. Parameter names are kept
as they are (minus the prefix), so the conversion is a lossless copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ezaudio.checkpoints.files import load_state_file
from ezaudio.config import VAEConfig
from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.nn.component import read_json
from ezaudio.nn.oobleck import WaveformVAE

AUTOENCODER_PREFIX = "autoencoder."

# stable-audio-tools constructor defaults, used when the config leaves a key out.
_ENCODER_DEFAULTS: dict[str, Any] = {
    "in_channels": 2,
    "channels": 128,
    "latent_dim": 32,
    "c_mults": [1, 2, 4, 8],
    "strides": [2, 4, 8, 8],
    "use_snake": False,
    "antialias_activation": False,
}
_DECODER_DEFAULTS: dict[str, Any] = {
    "out_channels": 2,
    "channels": 128,
    "latent_dim": 32,
    "c_mults": [1, 2, 4, 8],
    "strides": [2, 4, 8, 8],
    "use_snake": False,
    "antialias_activation": False,
    "use_nearest_upsample": False,
    "final_tanh": True,
}
# Options whose only supported value is the default (anything else changes the network).
_FIXED_OPTIONS: dict[str, Any] = {"antialias_activation": False, "use_nearest_upsample": False}
# Layout fields the encoder and decoder must share.
_SHARED_FIELDS = ("channels", "c_mults", "strides", "use_snake")


def _section(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise CheckpointError(f"official VAE config: {where}{key} is missing or not an object")
    return value


def _oobleck_options(model: dict[str, Any], part: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """Read ``model[part]`` (an oobleck encoder/decoder) with official defaults filled in."""
    section = _section(model, part, "model.")
    if section.get("type") != "oobleck":
        raise CheckpointError(
            f"official VAE config: model.{part}.type must be 'oobleck', got {section.get('type')!r}"
        )
    options = section.get("config", {})
    if not isinstance(options, dict):
        raise CheckpointError(f"official VAE config: model.{part}.config is not an object")
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise CheckpointError(
            f"official VAE config: unsupported model.{part}.config keys {unknown}"
        )
    merged = {**defaults, **options}
    for name, value in _FIXED_OPTIONS.items():
        if name in merged and merged[name] != value:
            raise CheckpointError(
                f"official VAE config: model.{part}.config.{name}={merged[name]!r} is unsupported"
            )
    return merged


def vae_config_from_official(cfg: dict[str, Any]) -> VAEConfig:
    """Map an official (stable-audio-tools) autoencoder ``config.json`` to a :class:`VAEConfig`.

    Only Oobleck encoder/decoder pairs with a ``vae`` bottleneck are accepted;
    any other setting raises :class:`CheckpointError` naming the field.
    """
    if not isinstance(cfg, dict):
        raise CheckpointError("official VAE config: expected a JSON object")
    model_type = cfg.get("model_type", "autoencoder")
    if model_type != "autoencoder":
        raise CheckpointError(
            f"official VAE config: model_type must be 'autoencoder', got {model_type!r}"
        )
    model = _section(cfg, "model", "")
    encoder = _oobleck_options(model, "encoder", _ENCODER_DEFAULTS)
    decoder = _oobleck_options(model, "decoder", _DECODER_DEFAULTS)

    bottleneck = model.get("bottleneck")
    bottleneck_type = bottleneck.get("type") if isinstance(bottleneck, dict) else None
    if bottleneck_type != "vae":
        raise CheckpointError(
            f"official VAE config: model.bottleneck.type must be 'vae', got {bottleneck_type!r}"
        )
    if model.get("pretransform") is not None:
        raise CheckpointError("official VAE config: model.pretransform is unsupported")
    if _section(model, "decoder", "model.").get("soft_clip", False):
        raise CheckpointError("official VAE config: model.decoder.soft_clip is unsupported")

    for name in _SHARED_FIELDS:
        if _as_list(encoder[name]) != _as_list(decoder[name]):
            raise CheckpointError(
                f"official VAE config: model.encoder.config.{name} {encoder[name]!r} differs "
                f"from model.decoder.config.{name} {decoder[name]!r}"
            )
    latent_dim = decoder["latent_dim"]
    if encoder["latent_dim"] != 2 * latent_dim:
        raise CheckpointError(
            f"official VAE config: model.encoder.config.latent_dim {encoder['latent_dim']} must be "
            f"2 x model.decoder.config.latent_dim {latent_dim} (mean and scale)"
        )
    if model.get("latent_dim", latent_dim) != latent_dim:
        raise CheckpointError(
            f"official VAE config: model.latent_dim {model['latent_dim']} differs from "
            f"model.decoder.config.latent_dim {latent_dim}"
        )

    io_channels = model.get("io_channels")
    if io_channels is None:
        raise CheckpointError("official VAE config: model.io_channels is missing")
    for field, value in (
        ("model.encoder.config.in_channels", encoder["in_channels"]),
        ("model.decoder.config.out_channels", decoder["out_channels"]),
        ("model.in_channels", model.get("in_channels", io_channels)),
        ("model.out_channels", model.get("out_channels", io_channels)),
        ("audio_channels", cfg.get("audio_channels", io_channels)),
    ):
        if value != io_channels:
            raise CheckpointError(
                f"official VAE config: {field} {value} differs from model.io_channels {io_channels}"
            )

    sample_rate = cfg.get("sample_rate")
    if sample_rate is None:
        raise CheckpointError("official VAE config: sample_rate is missing")
    try:
        config = VAEConfig(
            sample_rate=int(sample_rate),
            audio_channels=int(io_channels),
            channels=int(decoder["channels"]),
            c_mults=tuple(int(m) for m in decoder["c_mults"]),
            strides=tuple(int(s) for s in decoder["strides"]),
            latent_dim=int(latent_dim),
            use_snake=bool(decoder["use_snake"]),
            final_tanh=bool(decoder["final_tanh"]),
        )
    except (InvalidInputError, TypeError, ValueError) as error:
        raise CheckpointError(f"official VAE config: {error}") from error

    ratio = model.get("downsampling_ratio", config.hop_length)
    if ratio != config.hop_length:
        raise CheckpointError(
            f"official VAE config: model.downsampling_ratio {ratio} differs from the product "
            f"of the strides {config.hop_length}"
        )
    return config


def _as_list(value: Any) -> Any:
    """Tuples and lists compare alike (JSON gives lists)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def vae_state_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official state dict -> :class:`WaveformVAE` state dict.

    With any ``autoencoder.``-prefixed key, those keys are kept without the
    prefix and the rest (discriminator, EMA, ...) are dropped; a state dict
    with no prefixed key is taken as already stripped.
    """
    prefixed = {
        k[len(AUTOENCODER_PREFIX) :]: v
        for k, v in state.items()
        if k.startswith(AUTOENCODER_PREFIX)
    }
    return prefixed if prefixed else dict(state)


def convert_official_vae(
    weights_path: str | os.PathLike[str], config_path: str | os.PathLike[str]
) -> WaveformVAE:
    """Build a :class:`WaveformVAE` from an official checkpoint and its ``config.json``.

    ``weights_path`` is a ``.pt``/``.ckpt`` file holding ``{'state_dict': ...}``
    or a ``.safetensors`` file with official key names (prefixed or not). The
    weights load strictly: a missing, extra or mis-shaped key raises
    :class:`CheckpointError` naming it.
    """
    config = vae_config_from_official(read_json(Path(config_path)))
    state = vae_state_from_official(load_state_file(weights_path, "state_dict"))
    model = WaveformVAE(config)
    model.load_checked(state, where=str(weights_path))
    return model.eval()


__all__ = ["convert_official_vae", "vae_config_from_official", "vae_state_from_official"]
