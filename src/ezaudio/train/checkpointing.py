"""Training checkpoints: one folder per step, written atomically, the last K kept.

``step-00001000/`` holds ``model.safetensors`` and ``ema.safetensors`` (the
trained network and its EMA), ``optimizer.pt`` and ``scheduler.json``,
``rng-rank{r}.safetensors`` (every random state of each process) and
``trainer_state.json`` (step, data position, recipe). Nothing is unpickled on
resume beyond ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ezaudio.checkpoints.files import load_torch_file
from ezaudio.errors import CheckpointError
from ezaudio.nn.component import read_json

STEP_DIR = re.compile(r"^step-(\d{8})$")
STATE_NAME = "trainer_state.json"


def step_folder(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.match(p.name) and (p / STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Every random state a training step can touch, as tensors."""
    state = {"torch_cpu": torch.get_rng_state(), "train_generator": generator.get_state()}
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"torch_cuda_{index}"] = cuda_state
    return state


def restore_rng_state(state: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch_cpu"])
    generator.set_state(state["train_generator"])
    cuda = [state[k] for k in sorted(state) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def write_checkpoint(
    root: Path,
    step: int,
    model_state: dict[str, torch.Tensor] | None,
    ema_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict[str, Any] | None,
    scheduler_state: dict[str, Any] | None,
    trainer_state: dict[str, Any] | None,
    rng: dict[str, torch.Tensor],
    rank: int,
    is_main: bool,
) -> Path:
    """Write this process's part of checkpoint ``step``.

    Every rank writes its random states into the staging folder; the main
    process writes the rest and then renames the folder into place (the caller
    synchronises the ranks between the two phases via :func:`finish_checkpoint`).
    """
    staging = root / f".step-{step:08d}.tmp"
    staging.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous().cpu() for k, v in rng.items()}, staging / f"rng-rank{rank}.safetensors"
    )
    if is_main:
        save_file(_cpu(model_state), staging / "model.safetensors")
        save_file(_cpu(ema_state), staging / "ema.safetensors")
        torch.save(optimizer_state, staging / "optimizer.pt")
        (staging / "scheduler.json").write_text(json.dumps(scheduler_state, default=float))
        (staging / STATE_NAME).write_text(json.dumps(trainer_state, indent=2))
    return staging


def finish_checkpoint(root: Path, step: int, keep_last: int) -> Path:
    """Main process: move the staged folder into place and drop all but the last ``keep_last``."""
    staging = root / f".step-{step:08d}.tmp"
    final = step_folder(root, step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _cpu(state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in (state or {}).items()}


def read_checkpoint(folder: Path, rank: int) -> dict[str, Any]:
    """Everything :func:`write_checkpoint` stored, for process ``rank``."""
    folder = Path(folder)
    if not (folder / STATE_NAME).is_file():
        raise CheckpointError(f"{folder}: not a training checkpoint (no {STATE_NAME})")
    rng_file = folder / f"rng-rank{rank}.safetensors"
    if not rng_file.is_file():
        raise CheckpointError(
            f"{folder}: no random state for process {rank}; "
            "resume with the same number of processes"
        )
    return {
        "model": load_file(folder / "model.safetensors"),
        "ema": load_file(folder / "ema.safetensors"),
        "optimizer": load_torch_file(folder / "optimizer.pt"),
        "scheduler": json.loads((folder / "scheduler.json").read_text()),
        "trainer": read_json(folder / STATE_NAME),
        "rng": load_file(rng_file),
    }
