"""Safe reading of checkpoint files written by other projects.

Only two formats are read: safetensors, and torch pickles opened with
``torch.load(weights_only=True)`` (which refuses arbitrary objects).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ezaudio.errors import CheckpointError
from ezaudio.nn.component import load_safetensors


def load_torch_file(path: str | os.PathLike[str]) -> Any:
    """Load a ``.pt``/``.pth``/``.ckpt`` file with ``weights_only=True`` on the CPU."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(_unpickling_message(path, str(error))) from error
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        zipfile.BadZipFile,
        # torch's weights-only unpickler raises these bare on some non-pickle bytes
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
    ) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({first})") from error


def _unpickling_message(path: Path, text: str) -> str:
    """One line for a refused load, without torch's advice to turn the safety off."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"{path}: refused to unpickle the Python object {found.group(1)} "
            "(only tensors and plain containers are read)"
        )
    return f"{path}: corrupt or unreadable checkpoint (not a torch weights file)"


def load_state_file(path: str | os.PathLike[str], *keys: str) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a torch file.

    For torch files, the first of ``keys`` present at the top level (for
    example ``'model'`` or ``'state_dict'``) is unwrapped; a file that already
    is a flat ``{name: tensor}`` dict is returned as is.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    data = load_torch_file(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(data).__name__}")
    for key in keys:
        if key in data and isinstance(data[key], dict):
            data = data[key]
            break
    else:
        if not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise CheckpointError(
                f"{path}: no state dict under any of {list(keys)}; "
                f"top-level keys {sorted(data)[:8]}"
            )
    bad = [k for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: non-tensor entries {bad[:8]}")
    return dict(data)
