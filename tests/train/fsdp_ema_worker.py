"""Run by torchrun (2 CPU processes, gloo) from test_fp16_fsdp.py: FSDP2-shard a tiny DiT
with torch's ``fully_shard`` (accelerate only shards on GPUs), train two steps with the
trainer's loss and check that the sharded EMA gathers into what one unsharded process
computes, and loads back. Writes ``ok-rank{r}`` into the folder given as argv[1]."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from ezaudio.config import dit_preset
from ezaudio.diffusion.schedule import NoiseSchedule
from ezaudio.nn.dit import EzAudioDiT
from ezaudio.train.diffusion_loss import masked_modelling_loss
from ezaudio.train.ema import EMA
from ezaudio.train.engine_utils import full_tensors, register_block_methods
from ezaudio.train.recipe import MaskingSection


def train(model: EzAudioDiT, ema: EMA) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule, generator = NoiseSchedule.from_config(), torch.Generator().manual_seed(0)
    latents = torch.randn(2, 8, 40, generator=generator)  # the same batch on every rank
    valid = torch.ones(2, 40, dtype=torch.bool)
    context = torch.randn(2, 5, model.config.context_dim, generator=generator)
    text = lambda: (context, torch.ones(2, 5, dtype=torch.bool))  # noqa: E731
    for _ in range(2):
        loss = masked_modelling_loss(
            model, schedule, latents, valid, MaskingSection(), generator, text=text
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update(model)


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    reference = EzAudioDiT(dit_preset("tiny"))
    sharded = EzAudioDiT(dit_preset("tiny"))
    sharded.load_state_dict(reference.state_dict())
    for block in sharded.blocks():
        fully_shard(block)
    fully_shard(sharded)
    register_block_methods(sharded)  # as the trainer does after accelerate's prepare
    sharded.gradient_checkpointing = True  # recomputation under FSDP gives the same result
    reference_ema, sharded_ema = EMA(reference, 0.5), EMA(sharded, 0.5)
    assert any(isinstance(v, DTensor) for v in sharded_ema.state_dict().values())
    train(reference, reference_ema)
    train(sharded, sharded_ema)
    gathered = sharded_ema.full_state_dict()
    expected = reference_ema.full_state_dict()
    assert gathered.keys() == expected.keys()
    for key in expected:
        assert not isinstance(gathered[key], DTensor)
        torch.testing.assert_close(gathered[key], expected[key], rtol=1e-5, atol=1e-6)
    weights = full_tensors(sharded.state_dict())
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(weights[key], value, rtol=1e-5, atol=1e-6)
    fresh = EMA(sharded, 0.5)
    fresh.load_state_dict(gathered, sharded_ema.updates)
    for key, value in fresh.full_state_dict().items():
        assert torch.equal(value, gathered[key]), key
    Path(sys.argv[1], f"ok-rank{rank}").write_text("ok")
    # Both ranks reach teardown together: a rank that destroys its group while its peer
    # still talks to it can abort in gloo's background thread (seen once in CI).
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
