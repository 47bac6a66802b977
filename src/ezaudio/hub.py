"""Finding a model folder by name: a local folder, an official preset, or a hub repository.

Official presets (``ezaudio-l``, ``ezaudio-xl``) are downloaded from the
authors' hub repository as ``.pt`` files, read with ``weights_only=True``,
converted once into the native folder and kept in the ezaudio cache
(``$EZAUDIO_CACHE`` or ``~/.cache/ezaudio``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ezaudio.config import SamplingDefaults, dit_preset, vae_preset
from ezaudio.errors import CheckpointError
from ezaudio.model_folder import INDEX_NAME, ModelIndex, write_index
from ezaudio.text.encoder import hub_offline, hub_reachable

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class OfficialModel:
    """Where an official checkpoint lives and which presets describe it."""

    repo_id: str
    dit_file: str
    vae_file: str
    dit_preset: str
    vae_preset: str
    text_encoder: str
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)


OFFICIAL_MODELS: dict[str, OfficialModel] = {
    "ezaudio-l": OfficialModel(
        "OpenSound/EzAudio", "ckpts/s3/ezaudio_s3_l.pt", "ckpts/vae/1m.pt",
        "ezaudio-l", "oobleck-24k", "google/flan-t5-large",
    ),
    "ezaudio-xl": OfficialModel(
        "OpenSound/EzAudio", "ckpts/s3/ezaudio_s3_xl.pt", "ckpts/vae/1m.pt",
        "ezaudio-xl", "oobleck-24k", "google/flan-t5-xl",
    ),
}  # fmt: skip


def cache_root() -> Path:
    """Where converted official models are kept."""
    return Path(os.environ.get("EZAUDIO_CACHE", Path.home() / ".cache" / "ezaudio"))


def default_model_folder() -> Path | None:
    """The model bundled with the package, if this build ships one."""
    folder = Path(__file__).parent / "default_model"
    return folder if (folder / INDEX_NAME).is_file() else None


def resolve_model_folder(name: str | os.PathLike[str] | None) -> Path:
    """Turn a model name into a local folder holding ``ezaudio.json``."""
    if name is None:
        folder = default_model_folder()
        if folder is None:
            raise CheckpointError(
                "no default model is bundled with this ezaudio build; pass a model folder, "
                "'ezaudio-l', 'ezaudio-xl' or a hub id"
            )
        return folder
    text = os.fspath(name)
    if not text.strip():  # Path("") is the current folder; an empty name is a mistake
        raise CheckpointError("empty model name; pass a model folder, a preset or a hub id")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: is a file; a model is a folder with {INDEX_NAME}")
        if not (path / INDEX_NAME).is_file():
            raise CheckpointError(f"{path}: not an ezaudio model folder (no {INDEX_NAME})")
        return path
    if text in OFFICIAL_MODELS:
        return official_model_folder(text)
    if _REPO_ID.match(text) and not text.startswith((".", "/")):
        return _snapshot(text)
    raise CheckpointError(
        f"{text}: no such folder, and not a known preset ({sorted(OFFICIAL_MODELS)}) or hub id"
    )


def _download_allowed() -> bool:
    return not hub_offline() and hub_reachable()


def _snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=not _download_allowed()))
    except Exception as error:  # huggingface_hub raises many types; all mean "not available"
        raise CheckpointError(
            f"{repo_id}: not in the local hub cache and the hub cannot be reached or has no such "
            f"repository ({type(error).__name__})"
        ) from error
    if not (folder / INDEX_NAME).is_file():
        raise CheckpointError(f"{repo_id}: the repository holds no {INDEX_NAME}")
    return folder


def _download(repo_id: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=not _download_allowed()))
    except Exception as error:  # see _snapshot
        raise CheckpointError(
            f"{repo_id}/{filename}: not in the local hub cache and the hub cannot be reached "
            f"({type(error).__name__})"
        ) from error


def official_model_folder(name: str) -> Path:
    """Download (once) and convert an official preset; returns the cached native folder."""
    from ezaudio.checkpoints.files import load_state_file
    from ezaudio.checkpoints.official_dit import dit_state_from_official
    from ezaudio.checkpoints.official_vae import vae_state_from_official
    from ezaudio.nn.dit import EzAudioDiT
    from ezaudio.nn.oobleck import WaveformVAE

    spec = OFFICIAL_MODELS[name]
    target = cache_root() / name
    if (target / INDEX_NAME).is_file():
        return target
    dit_file = _download(spec.repo_id, spec.dit_file)
    vae_file = _download(spec.repo_id, spec.vae_file)

    dit = EzAudioDiT(dit_preset(spec.dit_preset))
    state = dit_state_from_official(load_state_file(dit_file, "model"), dit.config, str(dit_file))
    dit.load_checked({k: v.float() for k, v in state.items()}, where=str(dit_file))
    vae = WaveformVAE(vae_preset(spec.vae_preset))
    vae.load_checked(
        vae_state_from_official(load_state_file(vae_file, "state_dict")), str(vae_file)
    )

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    try:
        dit.save_pretrained(staging / "dit")
        vae.save_pretrained(staging / "vae")
        index = ModelIndex(
            sample_rate=vae.sample_rate, latent_rate=vae.latent_rate,
            text_encoder={"name": spec.text_encoder, "kind": "t5", "max_length": 100,
                          "padding": "max_length"},
            sampling=spec.sampling, name=name,
        )  # fmt: skip
        write_index(staging, index)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
