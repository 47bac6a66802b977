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
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ezaudio.errors import InvalidInputError

# Per-process generator seed: seed * GENERATOR_STRIDE + rank (as DiTTrainer).
GENERATOR_STRIDE = 1_000_003


def make_accelerator(mixed_precision: str, grad_accum: int, distributed: str = "ddp"):
    """An ``accelerate.Accelerator``; several processes and no GPU -> gloo on the CPU.

    ``distributed`` is ``ddp`` (replicated weights, the default) or ``fsdp``: FSDP2 through
    accelerate's ``FullyShardedDataParallelPlugin``, each ``DiTBlock`` a shard unit. FSDP
    needs GPUs: accelerate 1.x only shards on GPU-like devices and on the CPU would silently
    fall back to DDP, so it is refused there.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    many = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not many:
        # accelerate keeps one state per process and refuses a second Accelerator with
        # other settings: a notebook (or test session) that trains stage 1 in fp32 and
        # then stage 2 in bf16 would fail. A single process has nothing to lose by a reset.
        AcceleratorState._reset_state(reset_partial_state=True)
    plugin = None
    if distributed == "fsdp":
        if not torch.cuda.is_available():
            raise InvalidInputError(
                "run.distributed: fsdp needs CUDA GPUs (accelerate only shards on GPUs; "
                "on the CPU it would silently run DDP); use ddp"
            )
        plugin = fsdp_plugin()
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum,
        cpu=many and not torch.cuda.is_available(),
        fsdp_plugin=plugin,
    )


def fsdp_plugin(block_class: str = "DiTBlock"):
    """accelerate's FSDP2 plugin: shard every ``block_class`` and the rest of the model as
    units, free gathered weights after each forward, full (gathered) state dicts."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        reshard_after_forward=True,
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=[block_class],
        state_dict_type="FULL_STATE_DICT",
        cpu_ram_efficient_loading=False,
        activation_checkpointing=False,  # the DiT's own gradient_checkpointing flag does it
    )


def register_block_methods(model: nn.Module) -> None:
    """Make FSDP2 gather a sharded ``DiTBlock``'s weights for ``context_keys_values`` too:
    ``EzAudioDiT.prepare_context`` calls it outside the block's ``forward`` (the text
    keys/values are computed once per forward for all blocks)."""
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    for block in model.blocks():
        if isinstance(block, FSDPModule):
            register_fsdp_forward_method(block, "context_keys_values")


def is_fsdp(accelerator: Any) -> bool:
    """True when ``accelerator`` shards the model (FSDP)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def full_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every sharded ``DTensor`` gathered into a plain tensor.

    A collective under FSDP: every process must call it; plain tensors pass through."""
    from torch.distributed.tensor import DTensor

    return {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in state.items()}


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


def weights_digest(modules: Mapping[str, nn.Module | Mapping[str, torch.Tensor]]) -> str:
    """SHA-256 of every tensor of the modules' state dicts (names included); a value may
    also be a state dict itself (e.g. the gathered weights of a sharded model)."""
    digest = hashlib.sha256()
    for prefix, module in modules.items():
        state = module.state_dict() if isinstance(module, nn.Module) else module
        for name, tensor in sorted(state.items()):
            digest.update(f"{prefix}.{name}".encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def check_ranks_in_sync(
    accelerator: Any,
    modules: Mapping[str, nn.Module | Mapping[str, torch.Tensor]],
    out_file: Path,
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


def time_is_up(accelerator: Any, started: float, max_minutes: float | None) -> bool:
    """Whether ``max_minutes`` of wall time have passed since ``started`` (perf_counter).

    Every process gets the same answer (any process past the budget stops them all), so
    the ranks leave the training loop at the same step."""
    if max_minutes is None:
        return False
    late = time.perf_counter() - started > max_minutes * 60.0
    if accelerator.num_processes == 1:
        return late
    flag = torch.tensor(float(late), device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def stop_for_time(trainer: Any, started: float) -> Path | None:
    """The checkpoint a run ends on when ``run.max_minutes`` has passed before
    ``optim.max_steps`` (written now unless this step's was already), else None.

    ``trainer`` is a :class:`~ezaudio.train.trainer.DiTTrainer` or a VAE trainer: it has
    ``recipe``, ``step``, ``accelerator``, ``checkpoint_dir``, ``save_checkpoint()`` and
    ``_say()``."""
    from ezaudio.train.checkpointing import step_folder

    recipe = trainer.recipe
    if trainer.step >= recipe.optim.max_steps:
        return None
    if not time_is_up(trainer.accelerator, started, recipe.run.max_minutes):
        return None
    if trainer.step % recipe.run.checkpoint_every:
        folder = trainer.save_checkpoint()
    else:
        folder = step_folder(trainer.checkpoint_dir, trainer.step)
    trainer._say(
        f"run.max_minutes ({recipe.run.max_minutes:g}) reached: stopped at step "
        f"{trainer.step}; --resume goes on"
    )
    return folder


def trainer_batches(trainer: Any) -> Iterator[dict[str, Any] | None]:
    """A trainer's batches from its data position on (seeded, sharded by rank); ``trainer``
    has ``dataset``, ``position``, ``recipe`` and ``accelerator``."""
    from ezaudio.data.dataset import collate_skipping

    acc, recipe = trainer.accelerator, trainer.recipe
    return batch_stream(
        trainer.dataset, trainer.position, recipe.optim.batch_size, recipe.run.seed,
        acc.process_index, acc.num_processes, recipe.data.num_workers, collate_skipping,
    )  # fmt: skip
