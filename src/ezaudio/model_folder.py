"""The native model folder: ``ezaudio.json`` + ``dit/`` + ``vae/`` (+ ``text_encoder/``).

``ezaudio.json`` names the components, the audio and latent rates, the latent
scaling, the noise schedule and the sampling defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ezaudio.config import SamplingDefaults, SchedulerConfig
from ezaudio.errors import CheckpointError
from ezaudio.nn.component import config_from_dict, config_to_dict, read_json, write_atomic

INDEX_NAME = "ezaudio.json"
FORMAT_VERSION = 1


@dataclass
class ModelIndex:
    """What ``ezaudio.json`` holds.

    ``text_encoder`` is ``{"name": id-or-alias, "max_length": ..., "padding": ...}``
    or ``{"path": "text_encoder"}`` for an encoder stored inside the folder.
    Latents go to the DiT as (z + latent_shift) * latent_scale (official
    ``scale_shift``) and back as z / latent_scale - latent_shift. ``posterior_noise``
    is how the DiT's training latents were drawn from the VAE's posterior, mean +
    posterior_noise * std * noise (1: the official sample; 0: the mean); editing encodes
    its input audio the same way.
    """

    sample_rate: int
    latent_rate: float
    text_encoder: dict[str, Any]
    latent_scale: float = 1.0
    latent_shift: float = 0.0
    posterior_noise: float = 1.0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    dit: str = "dit"
    vae: str = "vae"
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "ezaudio",
            "version": FORMAT_VERSION,
            "name": self.name,
            "components": {"dit": self.dit, "vae": self.vae},
            "sample_rate": self.sample_rate,
            "latent_rate": self.latent_rate,
            "latent_scale": self.latent_scale,
            "latent_shift": self.latent_shift,
            "posterior_noise": self.posterior_noise,
            "text_encoder": self.text_encoder,
            "scheduler": config_to_dict(self.scheduler),
            "sampling": config_to_dict(self.sampling),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = INDEX_NAME) -> ModelIndex:
        if not isinstance(data, dict) or data.get("format") != "ezaudio":
            raise CheckpointError(f"{where}: not an ezaudio model index")
        if data.get("version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: written by a newer ezaudio (format {data.get('version')}); "
                "please upgrade"
            )
        try:
            components = data.get("components", {})
            text = data["text_encoder"]
            if not isinstance(text, dict) or not ({"name", "path"} & set(text)):
                raise CheckpointError(f"{where}: text_encoder needs a 'name' or a 'path'")
            return cls(
                sample_rate=int(data["sample_rate"]),
                latent_rate=float(data["latent_rate"]),
                text_encoder=text,
                latent_scale=float(data.get("latent_scale", 1.0)),
                latent_shift=float(data.get("latent_shift", 0.0)),
                posterior_noise=float(data.get("posterior_noise", 1.0)),
                scheduler=config_from_dict(SchedulerConfig, data.get("scheduler", {}), where),
                sampling=config_from_dict(SamplingDefaults, data.get("sampling", {}), where),
                dit=str(components.get("dit", "dit")),
                vae=str(components.get("vae", "vae")),
                name=str(data.get("name", "")),
            )
        except KeyError as error:
            raise CheckpointError(f"{where}: missing field {error.args[0]!r}") from error
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{where}: {error}") from error


def read_index(folder: str | os.PathLike[str]) -> ModelIndex:
    """Read ``folder/ezaudio.json``."""
    folder = Path(folder)
    path = folder / INDEX_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: not an ezaudio model folder (no {INDEX_NAME})")
    return ModelIndex.from_dict(read_json(path), where=str(path))


def write_index(folder: str | os.PathLike[str], index: ModelIndex) -> Path:
    """Write ``folder/ezaudio.json`` atomically."""
    path = Path(folder) / INDEX_NAME
    text = json.dumps(index.to_dict(), indent=2) + "\n"

    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    write_atomic(path, write)
    return path


def pack_half_precision(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    sampling: dict[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    """Copy a model folder with every floating weight stored as float16 (half the bytes).

    The networks still load and run in float32 (or any dtype asked for); only storage is
    halved. ``sampling`` replaces fields of the sampling defaults, ``name`` the model name.
    Written into a temporary folder and renamed into place, so ``out`` is never half-written.
    """
    import shutil

    import torch
    from safetensors.torch import save_file

    from ezaudio.nn.component import WEIGHTS_NAME, load_safetensors, write_atomic

    source, out = Path(source), Path(out)
    index = read_index(source)
    if sampling:
        index.sampling = config_from_dict(
            SamplingDefaults, {**config_to_dict(index.sampling), **sampling}, "sampling"
        )
    if name is not None:
        index.name = name
    staging = out.with_name(f".{out.name}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging)
    for weights in staging.rglob(WEIGHTS_NAME):
        state = {
            key: value.to(torch.float16) if value.is_floating_point() else value
            for key, value in load_safetensors(weights).items()
        }
        tensors = {k: v.contiguous() for k, v in state.items()}
        # written anew (not over the copy), so it gets the usual permissions whatever the
        # source's were
        write_atomic(weights, lambda tmp, tensors=tensors: save_file(tensors, tmp))
    write_index(staging, index)
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    return out
