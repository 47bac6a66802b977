"""Save and load a network as a folder: ``config.json`` + ``model.safetensors``.

Every network in :mod:`ezaudio.nn` pairs a dataclass config with an
``nn.Module`` through :class:`Component`. The folder is enough to rebuild the
network with no code edits and no pickles.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ezaudio.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

C = TypeVar("C")
M = TypeVar("M", bound="Component")


def config_from_dict(cls: type[C], data: dict[str, Any], where: str = "config") -> C:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys by name."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - {"_class"})
    if unknown:
        raise CheckpointError(f"{where}: unknown keys {unknown}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: {error}") from error


def config_to_dict(config: Any) -> dict[str, Any]:
    """Dataclass -> JSON-ready dict (tuples become lists)."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        out[field.name] = list(value) if isinstance(value, tuple) else value
    return out


def read_json(path: Path) -> Any:
    """Read a JSON file, turning every failure into a one-line :class:`CheckpointError`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as error:
        raise CheckpointError(f"{path}: file not found") from error
    except IsADirectoryError as error:
        raise CheckpointError(f"{path}: is a folder, expected a JSON file") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from error


def write_atomic(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so no half-written file stays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file owner-only; give it the usual permissions (0666 & ~umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file to CPU with clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: corrupt or unreadable safetensors file ({error})"
        ) from error


def check_state_dict(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Raise :class:`CheckpointError` listing missing, unexpected and mis-shaped keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys {_clip(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_clip(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes {_clip(shapes)}")
    if problems:
        raise CheckpointError(f"{where} does not fit its config: " + "; ".join(problems))


def _clip(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)})"


class Component(nn.Module):
    """An ``nn.Module`` built from a dataclass config and stored as a folder.

    Subclasses set ``config_class`` and take the config as their only
    constructor argument.
    """

    config_class: ClassVar[type]

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def from_config(cls: type[M], config: Any | dict[str, Any]) -> M:
        """Build a randomly initialised network from a config or a dict."""
        if isinstance(config, dict):
            config = config_from_dict(cls.config_class, config, where=cls.__name__)
        return cls(config)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CheckpointError(f"{folder}: cannot create folder ({error.strerror})") from error
        config = {"_class": type(self).__name__, **config_to_dict(self.config)}
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}

        def write_config(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(config, handle, indent=2)
                handle.write("\n")

        write_atomic(folder / WEIGHTS_NAME, lambda tmp: save_file(state, tmp))
        write_atomic(folder / CONFIG_NAME, write_config)
        return folder

    @classmethod
    def from_pretrained(
        cls: type[M],
        folder: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> M:
        """Rebuild the network saved by :meth:`save_pretrained` in ``folder``."""
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: model folder not found")
        data = read_json(folder / CONFIG_NAME)
        stored_class = data.get("_class") if isinstance(data, dict) else None
        if stored_class is not None and stored_class != cls.__name__:
            raise CheckpointError(f"{folder}: holds a {stored_class}, not a {cls.__name__}")
        model = cls.from_config(config_from_dict(cls.config_class, data, where=str(folder)))
        state = load_safetensors(folder / WEIGHTS_NAME)
        model.load_checked(state, where=str(folder / WEIGHTS_NAME))
        model.to(device=device, dtype=dtype)
        return model.eval()

    def load_checked(self, state: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
        """Load ``state`` strictly; any mismatch raises one :class:`CheckpointError`."""
        check_state_dict(self, state, where)
        bad = [k for k, v in state.items() if v.is_floating_point() and not _finite(v)]
        if bad:
            raise CheckpointError(f"{where}: non-finite values in {_clip(sorted(bad))}")
        self.load_state_dict(state, strict=True)

    def num_parameters(self) -> int:
        """Number of parameters (buffers excluded)."""
        return sum(p.numel() for p in self.parameters())


def _finite(tensor: torch.Tensor) -> bool:
    return bool(torch.isfinite(tensor).all()) if tensor.numel() else True


def fan_in_uniform_(weight: torch.Tensor) -> None:
    """Kaiming-uniform with a = sqrt(5), torch's default for Linear weights."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
