"""``ezaudio convert`` and ``ezaudio info``: official files -> native model folder, and its summary.

Each component converts on its own: ``--dit`` writes ``dit/``, ``--vae``
writes ``vae/``. Once a folder holds both, ``ezaudio.json`` is written with
the text encoder, schedule and latent scaling of the official yml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ezaudio.config import SamplingDefaults, SchedulerConfig
from ezaudio.errors import CheckpointError
from ezaudio.model_folder import INDEX_NAME, ModelIndex, read_index, write_index
from ezaudio.nn.component import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    config_from_dict,
    read_json,
    write_atomic,
)

# The official yml sections other than ``model``, kept beside the converted DiT.
OFFICIAL_EXTRAS_NAME = "official_config.json"
# A --text-encoder given before both parts are converted, used by the later call.
PENDING_TEXT_NAME = "text_encoder_pending.json"


def scheduler_from_official(diff: dict[str, Any], where: str = "diff") -> SchedulerConfig:
    """The official ``diff`` section -> :class:`SchedulerConfig` (clipping is not supported)."""
    diff = dict(diff)
    if diff.pop("clip_sample", False):
        raise CheckpointError(f"{where}: clip_sample=True is not supported")
    for ignored in ("steps_offset", "set_alpha_to_one"):
        diff.pop(ignored, None)
    return config_from_dict(SchedulerConfig, diff, where)


def convert_to_folder(
    output: Path,
    dit: str | None = None,
    dit_config: str | None = None,
    vae: str | None = None,
    vae_config: str | None = None,
    text_encoder: str | None = None,
) -> list[str]:
    """Convert the given official components into ``output``; returns report lines.

    Everything is converted and checked in memory first (keys, shapes, the
    DiT/VAE latent width, the text encoder's width where it can be loaded
    offline), so a failure leaves nothing half-written.
    """
    from ezaudio.checkpoints.official_dit import convert_official_dit
    from ezaudio.checkpoints.official_vae import convert_official_vae
    from ezaudio.nn.dit import EzAudioDiT
    from ezaudio.nn.oobleck import WaveformVAE

    if output.exists() and not output.is_dir():
        raise CheckpointError(f"{output}: exists and is not a folder")
    dit_model = vae_model = None
    extras: dict[str, Any] = {}
    if dit:
        dit_model, full = convert_official_dit(dit, dit_config)
        extras = {k: v for k, v in full.items() if k != "model"}
    if vae:
        vae_model = convert_official_vae(vae, vae_config)

    dit_final = dit_model
    if dit_final is None and (output / "dit" / CONFIG_NAME).is_file():
        dit_final = EzAudioDiT.from_pretrained(output / "dit")
        extras = _read_extras(output / "dit" / OFFICIAL_EXTRAS_NAME)
    vae_final = vae_model
    if vae_final is None and (output / "vae" / CONFIG_NAME).is_file():
        vae_final = WaveformVAE.from_pretrained(output / "vae")

    pending_file = output / PENDING_TEXT_NAME
    if text_encoder is None and pending_file.is_file():
        text_encoder = read_json(pending_file).get("text_encoder")
    index = store = None
    pending = ""
    if dit_final is None or vae_final is None:
        pending = (
            f"no {INDEX_NAME} yet; convert the {'vae' if vae_final is None else 'dit'} "
            "into the same folder"
        )
    else:
        if dit_final.config.latent_channels != vae_final.latent_dim:
            raise CheckpointError(
                f"{output}: DiT latent channels {dit_final.config.latent_channels} != "
                f"VAE latent dim {vae_final.latent_dim}"
            )
        text, store = _text_encoder_spec(output, extras, text_encoder, dit_final.config.context_dim)
        if text is None:
            pending = f"no {INDEX_NAME} yet; pass --text-encoder (no text encoder is named)"
        else:
            index = _index_for(output, vae_final, extras, text)

    lines = []
    if dit_model is not None:
        dit_model.save_pretrained(output / "dit")
        _write_json(output / "dit" / OFFICIAL_EXTRAS_NAME, extras)
        lines.append(
            f"{output / 'dit'}: DiT with {dit_model.num_parameters() / 1e6:.1f} M parameters"
        )
    if vae_model is not None:
        vae_model.save_pretrained(output / "vae")
        lines.append(
            f"{output / 'vae'}: VAE with {vae_model.num_parameters() / 1e6:.1f} M parameters"
        )
    if index is None:
        if text_encoder:  # remember it for the call that brings the other part
            local = Path(text_encoder).expanduser()
            name = str(local.resolve()) if local.is_dir() else text_encoder
            _write_json(pending_file, {"text_encoder": name})
        lines.append(f"{output}: {pending}")
        return lines
    if store is not None:
        store.save_pretrained(output / "text_encoder")
    write_index(output, index)
    pending_file.unlink(missing_ok=True)
    lines.append(f"{output / INDEX_NAME}: text encoder {index.text_encoder}")
    return lines


def _text_encoder_spec(
    output: Path, extras: dict[str, Any], requested: str | None, context_dim: int | None
) -> tuple[dict[str, Any] | None, Any]:
    """The ``text_encoder`` entry of ``ezaudio.json`` and, for a local folder, the loaded
    encoder to store inside the model folder. Encoders that load offline (a folder,
    the MiniLM) are checked against the DiT's context width; hub ids are named as is."""
    from ezaudio.text import TextEncoder
    from ezaudio.text.encoder import MINILM_ALIASES

    section = extras.get("text_encoder", {})
    previous = read_index(output).text_encoder if (output / INDEX_NAME).is_file() else {}
    name = requested or section.get("model") or previous.get("name")
    if name is None:
        return (previous or None), None
    local = Path(name).expanduser().is_dir()
    if not local and name.lower() not in MINILM_ALIASES:
        spec = {"name": name, "max_length": int(section.get("max_length", 100)),
                "padding": "max_length"}  # fmt: skip
        return spec, None
    encoder = TextEncoder.from_pretrained(name, max_length=section.get("max_length"))
    if context_dim is not None and encoder.dim != context_dim:
        raise CheckpointError(
            f"{output}: text encoder {name} gives {encoder.dim}-d states, "
            f"the DiT expects {context_dim}"
        )
    if local:
        return {"path": "text_encoder"}, encoder
    return {k: v for k, v in encoder.describe().items() if k != "dim"}, None


def _index_for(output: Path, vae: Any, extras: dict[str, Any], text: dict[str, Any]) -> ModelIndex:
    autoencoder = extras.get("autoencoder", {})
    latent_rate = float(autoencoder.get("latent_sr", vae.latent_rate))
    if abs(latent_rate - vae.latent_rate) > 1e-6:
        raise CheckpointError(
            f"{output}: yml latent_sr {latent_rate} != VAE latent rate {vae.latent_rate}"
        )
    sample_rate = int(autoencoder.get("sr", vae.sample_rate))
    if sample_rate != vae.sample_rate:
        raise CheckpointError(
            f"{output}: yml sr {sample_rate} != VAE sample rate {vae.sample_rate}"
        )
    scheduler = scheduler_from_official(extras["diff"]) if "diff" in extras else SchedulerConfig()
    return ModelIndex(
        sample_rate=sample_rate, latent_rate=latent_rate, text_encoder=text,
        latent_scale=float(autoencoder.get("scale", 1.0)),
        latent_shift=float(autoencoder.get("shift", 0.0)),
        scheduler=scheduler, sampling=SamplingDefaults(),
        name=str(extras.get("model_name", output.name)),
    )  # fmt: skip


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, default=str) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _read_extras(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def describe_folder(folder: Path) -> dict[str, Any]:
    """What a model folder (or a single component folder) holds, as a JSON-ready dict."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: folder not found")
    if (folder / INDEX_NAME).is_file():
        index = read_index(folder)
        info: dict[str, Any] = {
            "folder": str(folder),
            "name": index.name,
            "sample_rate": index.sample_rate,
            "latent_rate": index.latent_rate,
            "text_encoder": index.text_encoder,
            "sampling": index.to_dict()["sampling"],
            "scheduler": index.to_dict()["scheduler"],
        }
        info["dit"] = _describe_component(folder / index.dit)
        info["vae"] = _describe_component(folder / index.vae)
        return info
    if (folder / CONFIG_NAME).is_file():
        return _describe_component(folder)
    raise CheckpointError(f"{folder}: neither a model folder ({INDEX_NAME}) nor a component folder")


def _describe_component(folder: Path) -> dict[str, Any]:
    from safetensors import safe_open

    config = read_json(folder / CONFIG_NAME)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file not found")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            count = 0
            dtypes = set()
            for key in handle.keys():
                tensor_slice = handle.get_slice(key)
                shape = tensor_slice.get_shape()
                size = 1
                for dim in shape:
                    size *= dim
                count += size
                dtypes.add(tensor_slice.get_dtype())
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(f"{weights}: corrupt or unreadable ({error})") from error
    return {
        "class": config.get("_class", "?"),
        "parameters": f"{count / 1e6:.2f} M",
        "dtypes": sorted(dtypes),
        "config": {k: v for k, v in config.items() if k != "_class"},
    }
