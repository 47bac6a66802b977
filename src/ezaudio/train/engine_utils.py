"""Pieces every ezaudio trainer shares: the accelerator, the per-process random
generator, the seeded per-epoch data order sharded by rank, metrics files, TensorBoard
and the check that all processes hold the same weights.

They are the DiT trainer's (``trainer.py``) behaviour written as free functions, so
that the VAE trainer reuses them rather than copying; ``DiTTrainer`` can switch to them
without changing what it computes (same seeds, same order, same files).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Per-process generator seed: seed * GENERATOR_STRIDE + rank (as DiTTrainer).
GENERATOR_STRIDE = 1_000_003


def make_accelerator(mixed_precision: str, grad_accum: int):
    """An ``accelerate.Accelerator``; several processes and no GPU -> gloo on the CPU."""
    from accelerate import Accelerator

    many = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum,
        cpu=many and not torch.cuda.is_available(),
    )


def process_generator(seed: int, rank: int) -> torch.Generator:
    """The CPU generator every random draw of process ``rank`` comes from."""
    return torch.Generator().manual_seed(seed * GENERATOR_STRIDE + rank)


def epoch_batches(
    size: int, batch_size: int, seed: int, epoch: int, rank: int, world: int
) -> list[list[int]]:
    """Process ``rank``'s batches of epoch ``epoch``: a permutation of range(size) seeded
    with seed + epoch, dealt to the ``world`` processes in turn, cut into full batches
    (size // world // batch_size of them; the remainder is dropped)."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    shard = order[rank::world]
    count = (size // world) // batch_size
    return [shard[i * batch_size : (i + 1) * batch_size] for i in range(count)]


@dataclass
class DataPosition:
    """Where a run is in its data: the epoch and the batches of it already consumed."""

    epoch: int = 0
    batch: int = 0


def batch_stream(
    dataset: Any,
    position: DataPosition,
    batch_size: int,
    seed: int,
    rank: int,
    world: int,
    num_workers: int,
    collate_fn: Callable[[list[Any]], Any],
) -> Iterator[Any]:
    """Batches from ``position`` on, for ever; ``position`` advances with every batch yielded,
    so a checkpoint of it restarts the stream at the next unseen batch. The dataset's
    ``set_epoch`` is called before each epoch (crops are drawn from seed and epoch)."""
    from torch.utils.data import DataLoader

    while True:
        dataset.set_epoch(position.epoch)
        batches = epoch_batches(len(dataset), batch_size, seed, position.epoch, rank, world)
        loader = DataLoader(
            dataset, batch_sampler=batches[position.batch :], collate_fn=collate_fn,
            num_workers=num_workers,
        )  # fmt: skip
        for batch in loader:
            position.batch += 1
            yield batch
        position.epoch += 1
        position.batch = 0


def tensorboard_writer(accelerator: Any, log_dir: Path):
    """A TensorBoard ``SummaryWriter`` on the main process (None elsewhere or if missing)."""
    if not accelerator.is_main_process:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the records of steps after ``step``, so a resumed run's log reads as one run."""
    if not path.is_file():
        return
    kept = [
        line for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]  # fmt: skip
    path.write_text("".join(line + "\n" for line in kept))


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(dict(record)) + "\n")


def weights_digest(modules: Mapping[str, nn.Module]) -> str:
    """SHA-256 of every tensor of the modules' state dicts (names included)."""
    digest = hashlib.sha256()
    for prefix, module in modules.items():
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{prefix}.{name}".encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def check_ranks_in_sync(
    accelerator: Any, modules: Mapping[str, nn.Module], out_file: Path
) -> list[str]:
    """Hash every process's weights, write the hashes to ``out_file`` (main process) and
    fail loudly if the processes have drifted apart (they must stay identical under DDP)."""
    from accelerate.utils import gather_object

    hashes = gather_object([weights_digest(modules)])
    if accelerator.is_main_process:
        out_file.write_text(json.dumps(hashes, indent=2))
        if len(set(hashes)) != 1:
            raise RuntimeError(f"processes hold different weights after training: {hashes}")
    return hashes
