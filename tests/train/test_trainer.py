"""The DiT trainer end to end on a tiny world: stages, resume, export, bad data, overfitting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import tiny_recipe, write_recipe, write_world

from ezaudio.cli import main
from ezaudio.errors import InvalidInputError
from ezaudio.pipeline import EzAudio
from ezaudio.train.recipe import recipe_from_dict
from ezaudio.train.recipe_io import read_recipe_yaml
from ezaudio.train.trainer import DiTTrainer


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_three_stages_through_the_cli_export_a_model_that_generates(world, tmp_path, capsys):
    runs = {}
    previous = None
    for stage in (1, 2, 3):
        run = tmp_path / f"stage{stage}"
        model = {"init_from": str(previous)} if previous else {}
        recipe = tiny_recipe(world, run, stage=stage, model=model, optim={"max_steps": 2})
        assert main(["train", str(write_recipe(tmp_path / f"s{stage}.yaml", recipe))]) == 0
        runs[stage] = run
        previous = run / "model"
        assert (previous / "ezaudio.json").is_file()
        assert len(metrics(run)) == 2 and all(m["loss"] > 0 for m in metrics(run))
    pipe = EzAudio.from_pretrained(runs[3] / "model", device="cpu")
    assert pipe.dit.config.context_dim == 384  # text path added in stage 2, kept in stage 3
    audio = pipe.generate("a tone number 3", seconds=0.25, steps=2, seed=0, progress=False)
    assert (
        audio.waveforms.shape == (1, 4000)
        and torch.isfinite(torch.from_numpy(audio.waveforms)).all()
    )
    stage1 = EzAudio.from_pretrained(runs[1] / "model", device="cpu")
    assert stage1.dit.config.context_dim is None  # stage 1 trains without text


def test_stage_two_at_step_zero_computes_what_stage_one_did(world, tmp_path):
    stage1 = DiTTrainer(recipe_from_dict(tiny_recipe(world, tmp_path / "s1")).validate())
    stage1.train()
    source = stage1.ema_model()
    recipe = tiny_recipe(
        world, tmp_path / "s2", stage=2,
        model={"init_from": str(tmp_path / "s1" / "checkpoints" / "step-00000004")},
    )  # fmt: skip
    stage2 = DiTTrainer(recipe_from_dict(recipe).validate())
    assert stage2.fresh_text_path and all(
        k.startswith("context_embed.") or ".cross_attn." in k or ".norm2." in k
        or ".norm_context." in k for k in stage2.fresh_text_path
    )  # fmt: skip
    target = stage2.accelerator.unwrap_model(stage2.model).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 40, generator=generator)
    gt = torch.randn(2, 8, 40, generator=generator)
    gt_mask = torch.zeros(2, 40, dtype=torch.bool)
    gt_mask[:, 10:30] = True
    context = torch.randn(2, 7, 384, generator=generator)
    with torch.no_grad():
        before = source(x, torch.tensor([900, 30]), gt=gt, gt_mask=gt_mask)
        after = target(x, torch.tensor([900, 30]), context, torch.ones(2, 7, dtype=torch.bool),
                       gt=gt, gt_mask=gt_mask)  # fmt: skip
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)


def test_overfitting_one_batch_lowers_the_loss_by_90_percent(world, tmp_path):
    recipe = tiny_recipe(
        world, tmp_path / "fit", optim={"lr": 3.0e-3, "max_steps": 1},
        masking={"full_mask_prob": 1.0},
    )  # fmt: skip
    trainer = DiTTrainer(recipe_from_dict(recipe).validate())
    latents, valid = trainer.encode(next(trainer._batches()))
    trainer.model.train()
    state = trainer.generator.get_state()
    losses = []
    for _ in range(300):
        trainer.generator.set_state(state)  # the same noise, timesteps and masks every step
        loss = trainer.latent_loss(latents, valid, [])
        trainer.optimizer.zero_grad()
        trainer.accelerator.backward(loss)
        trainer.optimizer.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.1 * losses[0], (losses[0], losses[-1])


def test_bad_files_are_skipped_and_counted(tmp_path, world, caplog):
    folder = tmp_path / "bad_world"
    write_world(folder, clips=4, bad=True)
    recipe = tiny_recipe(world, tmp_path / "run", data={"manifest": str(folder / "train.jsonl")})
    trainer = DiTTrainer(recipe_from_dict(recipe).validate())
    with caplog.at_level("WARNING"):
        trainer.train()
    assert len(metrics(tmp_path / "run")) == 4
    assert sum(trainer.dataset.skipped.values()) >= 4
    assert set(trainer.dataset.skipped) >= {"missing", "silent"}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "garbage.wav" in logged and "missing.wav" in logged


def _train_command(recipe: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ezaudio.cli", "train", str(recipe), "--no-export", *extra]


def test_a_killed_run_resumes_as_if_never_stopped(world, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    settings = {"optim": {"max_steps": 20}, "run": {"checkpoint_every": 2, "keep_last": 20}}
    straight = write_recipe(
        tmp_path / "a.yaml", tiny_recipe(world, tmp_path / "straight", **settings)
    )
    subprocess.run(_train_command(straight), check=True, env=env, capture_output=True)

    killed_run = tmp_path / "killed"
    killed = write_recipe(tmp_path / "b.yaml", tiny_recipe(world, killed_run, **settings))
    process = subprocess.Popen(_train_command(killed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    target = killed_run / "checkpoints" / "step-00000004"
    deadline = time.time() + 240
    while not target.is_dir() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert target.is_dir(), "the run never wrote its step-4 checkpoint"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed_run / "checkpoints" / "step-00000020").exists(), "finished before the kill"

    subprocess.run(_train_command(killed, "--resume"), check=True, env=env, capture_output=True)

    def losses(run: Path) -> list[tuple]:
        return [(m["step"], m["loss"], m["lr"]) for m in metrics(run)]

    assert losses(killed_run) == losses(tmp_path / "straight")
    assert [m["step"] for m in metrics(killed_run)] == list(range(1, 21))
    final = "checkpoints/step-00000020"
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(tmp_path / "straight" / final / name)
        b = load_file(killed_run / final / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_resume_without_a_checkpoint_is_a_clear_error(world, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(world, tmp_path / "none"))
    assert main(["train", str(recipe), "--resume"]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_recipe_errors_are_one_line(world, tmp_path, capsys):
    recipe = tiny_recipe(world, tmp_path / "x", optim={"batch_sise": 4})
    assert main(["train", str(write_recipe(tmp_path / "r.yaml", recipe))]) == 1
    err = capsys.readouterr().err.strip()
    assert "batch_sise" in err and "\n" not in err
    assert main(["train", str(tmp_path / "absent.yaml")]) == 1
    assert "not found" in capsys.readouterr().err


def test_two_processes_on_gloo_keep_identical_weights(world, tmp_path):
    """DDP on two CPU processes (gloo), started with torchrun."""
    run = tmp_path / "ddp"
    recipe = write_recipe(
        tmp_path / "ddp.yaml",
        tiny_recipe(world, run, optim={"batch_size": 2, "max_steps": 3}),
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", "29533", "-m", "ezaudio.cli", "train", str(recipe),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    hashes = json.loads((run / "rank_weights.json").read_text())
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    state = json.loads((run / "checkpoints" / "step-00000003" / "trainer_state.json").read_text())
    assert state["processes"] == 2
    assert (run / "checkpoints" / "step-00000003" / "rng-rank1.safetensors").is_file()
    assert (run / "model" / "ezaudio.json").is_file()


RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*stage*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_are_valid(path):
    from ezaudio.config import DIT_PRESETS
    from ezaudio.train.recipe import load_recipe

    recipe = load_recipe(path)
    assert recipe.model.dit_preset in DIT_PRESETS
    if path.stem.startswith("ezaudio-"):  # the paper's settings
        assert (recipe.optim.lr, recipe.optim.max_steps) == {
            1: (1e-4, 100_000),
            2: (5e-5, 50_000),
            3: (1e-5, 30_000),
        }[recipe.stage]
        total = recipe.optim.batch_size * recipe.optim.grad_accum * 8  # 8 GPUs
        assert total == 128


def test_the_tiny_recipe_runs_with_overrides(world, tmp_path):
    recipe = Path(__file__).parents[2] / "recipes" / "tiny-stage1.yaml"
    overrides = [
        f"data.manifest={world / 'train.jsonl'}", f"model.vae={world / 'vae'}",
        f"run.output_dir={tmp_path / 'run'}", "optim.max_steps=2", "data.clip_seconds=0.25",
    ]  # fmt: skip
    args = ["train", str(recipe), "--no-export"]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 0
    assert len(metrics(tmp_path / "run")) == 2


def test_batches_with_no_readable_file_run_as_zero_loss_steps(tmp_path, world):
    folder = tmp_path / "all_bad"
    (folder / "audio").mkdir(parents=True)
    for name in ("a", "b", "c", "d"):
        (folder / "audio" / f"{name}.wav").write_bytes(b"not audio at all" * 8)
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"audio": f"audio/{n}.wav", "caption": n}) + "\n" for n in "abcd")
    )
    recipe = tiny_recipe(
        world, tmp_path / "run", data={"manifest": str(folder / "train.jsonl")},
        optim={"max_steps": 2},
    )  # fmt: skip
    trainer = DiTTrainer(recipe_from_dict(recipe).validate())
    trainer.train()
    assert [m["loss"] for m in metrics(tmp_path / "run")] == [0.0, 0.0]
    assert trainer.dataset.skipped["unreadable"] == 4


def test_posterior_noise_zero_trains_on_posterior_means_and_is_exported(world, tmp_path):
    recipe = tiny_recipe(world, tmp_path / "means", data={"posterior_noise": 0.0})
    trainer = DiTTrainer(recipe_from_dict(recipe).validate())
    batch = next(trainer._batches())
    latents, _ = trainer.encode(batch)
    mean, std = trainer.vae.encode_distribution(batch["audio"])
    torch.testing.assert_close(latents, mean, rtol=0, atol=0)
    assert trainer.pipeline().posterior_noise == 0.0  # EzAudio.edit encodes this way too
    official = DiTTrainer(recipe_from_dict(tiny_recipe(world, tmp_path / "samples")).validate())
    sampled, _ = official.encode(next(official._batches()))
    assert (sampled - mean).abs().max() > 0.1 * std.max()
    assert official.pipeline().posterior_noise == 1.0
    bad = tiny_recipe(world, tmp_path / "bad", data={"posterior_noise": -0.5})
    with pytest.raises(InvalidInputError, match="data.posterior_noise must be a number"):
        recipe_from_dict(bad).validate()


def test_a_learning_rate_written_without_a_dot_is_a_number(world, tmp_path):
    # PyYAML (YAML 1.1) reads 1e-4 as a string; recipes read it as the number it means
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(world, tmp_path / "r"))
    data = read_recipe_yaml(path, ["optim.lr=1e-4", "optim.betas=[0.9, 9.99e-1]"])
    assert data["optim"]["lr"] == 1e-4 and data["optim"]["betas"] == [0.9, 0.999]
    assert recipe_from_dict(data).validate().optim.lr == 1e-4


def test_unquoted_no_for_mixed_precision_is_accepted(world, tmp_path):
    recipe = tiny_recipe(world, tmp_path / "r", optim={"mixed_precision": False})
    assert recipe_from_dict(recipe).validate().optim.mixed_precision == "no"


def test_max_minutes_stops_with_a_checkpoint_and_an_export_and_resume_goes_on(
    world, tmp_path, capsys
):
    run = tmp_path / "timed"
    # A budget already spent after the first step: the run stops at step 1 of 6.
    recipe = tiny_recipe(
        world, run, optim={"max_steps": 6}, run={"checkpoint_every": 4, "max_minutes": 1e-9}
    )
    path = write_recipe(tmp_path / "timed.yaml", recipe)
    assert main(["train", str(path)]) == 0
    said = capsys.readouterr()
    assert "run.max_minutes (1e-09) reached: stopped at step 1" in said.out + said.err
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001"]
    assert (run / "model" / "ezaudio.json").is_file() and len(metrics(run)) == 1
    assert main(["train", str(path), "--resume", "--set", "run.max_minutes=null"]) == 0
    assert [m["step"] for m in metrics(run)] == list(range(1, 7))


@pytest.mark.parametrize("value", [0, -1, "soon", True])
def test_max_minutes_must_be_a_positive_number(world, tmp_path, value):
    recipe = tiny_recipe(world, tmp_path / "r", run={"max_minutes": value})
    with pytest.raises(Exception, match="run.max_minutes must be a positive number"):
        recipe_from_dict(recipe).validate()


def test_stages_with_other_precisions_train_one_after_the_other_in_one_process(world, tmp_path):
    # accelerate keeps one state per process; a second trainer with other settings must work.
    for precision in ("no", "bf16"):
        recipe = tiny_recipe(
            world, tmp_path / precision, optim={"max_steps": 1, "mixed_precision": precision}
        )
        trainer = DiTTrainer(recipe_from_dict(recipe).validate())
        assert trainer.accelerator.mixed_precision == precision
        trainer.train()
