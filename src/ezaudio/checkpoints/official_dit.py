"""Conversion of the official EzAudio DiT (``MaskDiT``) checkpoints and yml configs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml

from ezaudio.checkpoints.files import load_state_file
from ezaudio.config import DiTConfig
from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.nn.component import read_json
from ezaudio.nn.dit import EzAudioDiT

_OFFICIAL_PREFIX = "model."


def read_official_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an official yml (with ``model``, ``autoencoder``, ``text_encoder``, ``diff``
    sections) or a JSON file holding only the ``model`` section; returns the full dict
    with the model section under ``'model'``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: config file not found")
    if path.suffix == ".json":
        data = read_json(path)
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise CheckpointError(
                f"{path}: not valid YAML ({str(error).splitlines()[0]})"
            ) from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a mapping at the top level")
    if "model" not in data:
        data = {"model": data}
    if not isinstance(data["model"], dict):
        raise CheckpointError(f"{path}: 'model' must be a mapping")
    return data


def dit_config_from_official(model: dict[str, Any], where: str = "config") -> DiTConfig:
    """Map the official ``model`` section onto :class:`DiTConfig`, refusing what we do not run."""

    def get(key: str, default: Any = None) -> Any:
        return model.get(key, default)

    def refuse(key: str, value: Any, why: str) -> CheckpointError:
        return CheckpointError(f"{where}: unsupported {key}={value!r} ({why})")

    if get("input_type", "1d") != "1d":
        raise refuse("input_type", get("input_type"), "only 1-D latents")
    if get("cls_dim") is not None:
        raise refuse("cls_dim", get("cls_dim"), "class conditioning is not supported")
    context_dim = get("context_dim")
    if context_dim is not None and get("context_fusion", "cross") != "cross":
        raise refuse("context_fusion", get("context_fusion"), "only cross-attention")
    if get("context_pe_method", "none") != "none":
        raise refuse("context_pe_method", get("context_pe_method"), "only 'none'")
    rope_mode = get("rope_mode", "none")
    if rope_mode not in ("shared", "none", "x_only") or (
        rope_mode == "x_only" and get("time_fusion") == "token"
    ):
        raise refuse("rope_mode", rope_mode, "only 'shared' or 'none'")
    pe_method = get("pe_method", "none")
    if pe_method not in ("none", "abs"):
        raise refuse("pe_method", pe_method, "only 'none' or 'abs'")
    patch = int(get("patch_size", 1))
    embed_dim = int(get("embed_dim", 768))
    heads = int(get("num_heads", 12))
    qk_scale = get("qk_scale")
    if qk_scale is not None and abs(float(qk_scale) - (embed_dim // heads) ** -0.5) > 1e-12:
        raise refuse("qk_scale", qk_scale, "only the default 1/sqrt(head_dim)")
    out_chans = get("out_chans") or get("in_chans")
    masked = bool(get("mae", False))
    in_chans = int(get("in_chans", out_chans))
    expected_in = 2 * out_chans + 1 if masked else out_chans
    if in_chans != expected_in:
        raise CheckpointError(
            f"{where}: in_chans {in_chans} does not fit out_chans {out_chans} "
            f"(expected {expected_in} with mae={masked})"
        )
    try:
        return DiTConfig(
            latent_channels=int(out_chans),
            embed_dim=embed_dim,
            depth=int(get("depth", 12)),
            num_heads=heads,
            mlp_ratio=float(get("mlp_ratio", 4.0)),
            patch_size=patch,
            qkv_bias=bool(get("qkv_bias", False)),
            qk_norm=get("qk_norm") or "none",
            norm=get("norm_layer", "layernorm"),
            activation=get("act_layer", "gelu"),
            context_dim=None if context_dim is None else int(context_dim),
            context_norm=bool(get("context_norm", False)),
            time_fusion=get("time_fusion", "token"),
            ada_sola_rank=get("ada_sola_rank"),
            ada_sola_alpha=get("ada_sola_alpha"),
            rope=rope_mode != "none",
            long_skip=bool(get("skip", True)),
            skip_norm=bool(get("skip_norm", True)),
            final_conv=bool(get("use_conv", True)),
            masked_modelling=masked,
            abs_pos_length=int(get("img_size")) // patch if pe_method == "abs" else 0,
            mask_ratio=tuple(get("mask_ratio", (0.25, 1.0))),
            mask_span=int(get("mask_span", 10)),
            mask_prob=float(get("mae_prob", 0.25)),
        )
    except InvalidInputError as error:
        raise CheckpointError(f"{where}: {error}") from error


def dit_state_from_official(
    state: dict[str, torch.Tensor], config: DiTConfig, where: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename official keys (``model.`` prefix dropped, ``mask_embed`` kept) to native ones.

    The official file stores each attention's RoPE ``inv_freq`` buffer; they are
    checked against the standard frequencies and dropped (we compute them).
    """
    native: dict[str, torch.Tensor] = {}
    expected_inv_freq = 1.0 / (
        10000 ** (torch.arange(0, config.head_dim, 2).float() / config.head_dim)
    )
    for key, value in state.items():
        name = key[len(_OFFICIAL_PREFIX) :] if key.startswith(_OFFICIAL_PREFIX) else key
        if name.endswith("rotary.inv_freq"):
            if value.shape != expected_inv_freq.shape:
                raise CheckpointError(
                    f"{where} does not fit its config: {key} has shape {list(value.shape)}, "
                    f"the config's head size needs {list(expected_inv_freq.shape)}"
                )
            if not torch.allclose(value.float(), expected_inv_freq, rtol=1e-6, atol=0):
                raise CheckpointError(f"{where}: {key} holds non-standard RoPE frequencies")
            continue
        if name.startswith("context_pe.") or name.startswith("x_pe.id") or name == "x_pe.id":
            continue
        if name in native:
            raise CheckpointError(f"{where}: key {name!r} appears twice")
        native[name] = value
    return native


def convert_official_dit(
    weights: str | os.PathLike[str], config: str | os.PathLike[str]
) -> tuple[EzAudioDiT, dict[str, Any]]:
    """Build an :class:`EzAudioDiT` from an official checkpoint (``{'model': state_dict}``
    ``.pt``, or safetensors with official names) and its yml/json config.

    Returns the network (fp32, eval mode) and the full official config dict.
    """
    full = read_official_config(config)
    dit_config = dit_config_from_official(full["model"], where=str(config))
    state = load_state_file(weights, "model", "state_dict")
    model = EzAudioDiT(dit_config)
    model.load_checked(
        {
            k: v.float() if v.is_floating_point() else v
            for k, v in dit_state_from_official(state, dit_config, str(weights)).items()
        },
        where=str(weights),
    )
    return model.eval(), full
