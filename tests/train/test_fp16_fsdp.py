"""fp16 (loss scaling), FSDP and the GPU training benchmark, as far as a CPU can check them.

accelerate gives no GradScaler and no fp16 autocast on the CPU (fp16 there silently
trains in float32) and only shards (FSDP) on GPUs. So the fp16 test gives the trainer's
accelerator a CPU ``torch.amp.GradScaler`` and fp16 autocast, which is exactly what
accelerate does on a GPU; the FSDP test shards with torch's ``fully_shard`` directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_world import tiny_recipe

import ezaudio.train.trainer as trainer_module
from ezaudio.errors import InvalidInputError
from ezaudio.train.recipe import recipe_from_dict
from ezaudio.train.trainer import DiTTrainer

ROOT = Path(__file__).parents[2]


def _cpu_fp16_accelerator(real_make_accelerator):
    def make(mixed_precision, grad_accum, distributed="ddp"):
        acc = real_make_accelerator(mixed_precision, grad_accum, distributed)
        assert acc.scaler is None and not acc.native_amp  # accelerate on the CPU
        acc.native_amp = True  # fp16 autocast, as on a GPU
        acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        return acc

    return make


def test_fp16_skips_overflowing_steps_and_resumes_the_loss_scale(world, tmp_path, monkeypatch):
    monkeypatch.setattr(
        trainer_module, "make_accelerator", _cpu_fp16_accelerator(trainer_module.make_accelerator)
    )
    recipe = tiny_recipe(
        world, tmp_path / "run",
        optim={"mixed_precision": "fp16", "max_steps": 1, "max_grad_norm": 1.0},
        run={"checkpoint_every": 100},
    )  # fmt: skip
    trainer = DiTTrainer(recipe_from_dict(recipe).validate())
    assert trainer.optimizer.scaler is trainer.accelerator.scaler

    norms = []
    real_clip = trainer.accelerator.clip_grad_norm_
    trainer.accelerator.clip_grad_norm_ = lambda *a, **k: norms.append(real_clip(*a, **k))
    trainer.train()  # one real step: the gradients are unscaled before clipping
    assert trainer.skipped_steps == 0 and trainer.ema.updates == 1
    assert 0 < float(norms[0]) < 100, "clipping saw scaled gradients (x1024)"

    # Step 2 overflows: the scaler skips it, so weights, EMA and schedule stay put.
    model = trainer.accelerator.unwrap_model(trainer.model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    shadow = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    scheduled = trainer.scheduler.last_epoch
    real_loss = trainer.latent_loss
    trainer.latent_loss = lambda *a: real_loss(*a) * float("inf")
    trainer.recipe.optim.max_steps = 2
    trainer.train()
    assert trainer.step == 2 and trainer.skipped_steps == 1
    assert trainer.accelerator.scaler.get_scale() == 2.0**9  # backed off
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, shadow[k]) for k, v in trainer.ema.state_dict().items())
    assert trainer.scheduler.last_epoch == scheduled and trainer.ema.updates == 1

    trainer.latent_loss = real_loss  # step 3 is real again
    trainer.recipe.optim.max_steps = 3
    last = trainer.train()
    assert trainer.ema.updates == 2 and trainer.skipped_steps == 1
    assert not all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in records] == [0, 1, 1]
    assert [r["loss_scale"] for r in records] == [2.0**10, 2.0**9, 2.0**9]

    state = json.loads((last / "trainer_state.json").read_text())
    assert state["grad_scaler"]["scale"] == 2.0**9 and state["skipped_steps"] == 1
    resumed = DiTTrainer(recipe_from_dict(recipe).validate(), resume=last)
    assert resumed.accelerator.scaler.get_scale() == 2.0**9
    assert resumed.skipped_steps == 1 and resumed.ema.updates == 2


def test_fsdp_is_refused_on_the_cpu_and_bad_values_by_name(world, tmp_path):
    recipe = tiny_recipe(world, tmp_path / "run", run={"distributed": "fsdp"})
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="fsdp needs CUDA GPUs"):
            DiTTrainer(recipe_from_dict(recipe).validate())
    recipe["run"]["distributed"] = "zero3"
    with pytest.raises(InvalidInputError, match="run.distributed"):
        recipe_from_dict(recipe).validate()


def test_fsdp_sharded_ema_gathers_to_the_unsharded_one_on_two_processes(tmp_path):
    """Two CPU processes (gloo), the DiT sharded with FSDP2 per block as the trainer's
    plugin does: training, the sharded EMA and its gather/load match one process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", "29534", str(Path(__file__).with_name("fsdp_ema_worker.py")),
        str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ok-rank0").is_file() and (tmp_path / "ok-rank1").is_file()


BLOCKER = """
import runpy, sys
BLOCKED = {"soundfile", "soxr", "auraloss", "fastapi"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the GPU machine does not have it")
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_benchmark_runs_on_the_cpu_without_audio_packages(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    command = [
        sys.executable, "-c", BLOCKER, str(ROOT / "benchmarks" / "gpu_train_memory.py"),
        "--preset", "tiny", "--batch", "2", "--frames", "50", "--steps", "2", "--warmup", "1",
        "--variants", "bf16+ckpt", "fp16", "fp32", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    for name in ("bf16+ckpt", "fp32"):
        r = results[name]
        assert r["losses_finite"] and r["steps_per_s"] > 0 and r["peak_rss_mib"] > 0
        assert r["batch"] == 2 and r["frames"] == 50 and r["timed_steps"] == 2
    assert "GPU" in results["fp16"]["skipped"]
    assert results["bf16+ckpt"]["gradient_checkpointing"] is True
