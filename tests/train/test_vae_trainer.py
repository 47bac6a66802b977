"""The waveform VAE trainer: losses, ``ezaudio train-vae`` end to end, resume, overfitting,
bad data, recipes, and two processes on gloo."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import RATE, tiny_vae_recipe, write_recipe, write_world

from ezaudio.cli import main
from ezaudio.config import VAE_PRESETS
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.train.engine_utils import epoch_batches
from ezaudio.train.vae_losses import (
    MultiResolutionSTFTLoss,
    MultiScaleSTFTDiscriminator,
    a_weighting_fir,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from ezaudio.train.vae_recipe import load_vae_recipe, vae_recipe_from_dict
from ezaudio.train.vae_trainer import VAETrainer, _Autoencode, inverse_lr_factor

ROOT = Path(__file__).parents[2]
OFFICIAL = ROOT / "tests" / "data_files" / "reference" / "manifest_vae.json"
STEP_TERMS = (
    "loss", "mrstft", "kl", "l1", "adversarial", "feature_matching", "disc_loss",
    "latent_spectrum", "latent_pitch",
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tone(batch: int = 2, samples: int = 4000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / RATE
    freqs = 300 + 200 * torch.arange(batch)[:, None]
    wave = 0.5 * torch.sin(2 * math.pi * freqs * t) + 0.05 * torch.randn(
        batch, samples, generator=generator
    )
    return wave[:, None]  # [B, 1, N]


# ------------------------------------------------------------------------- losses
@pytest.mark.parametrize("perceptual", [True, False])
def test_mrstft_is_zero_for_identical_signals_and_grows_with_distortion(perceptual):
    recipe = vae_recipe_from_dict({"data": {"manifest": "x"}}).validate().loss
    loss = MultiResolutionSTFTLoss(
        recipe.stft_fft_sizes, recipe.stft_hop_sizes, recipe.stft_win_lengths,
        sample_rate=RATE, perceptual_weighting=perceptual,
    )  # fmt: skip
    clean = tone()
    assert loss(clean, clean).item() == 0.0
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    values = [loss(clean, clean + level * noise).item() for level in (0.003, 0.03, 0.3)]
    assert 0 < values[0] < values[1] < values[2], values
    assert loss(clean, 0.5 * clean).item() > values[0]  # a gain error is a distortion too
    fake = (clean + 0.1 * noise).requires_grad_()
    loss(clean, fake).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


def test_a_weighting_fir_is_the_one_scipy_designs():
    """auraloss' perceptual filter: bilinear A-weighting, freqz at 512 points, 101-tap firls."""
    signal_ = pytest.importorskip("scipy.signal")
    import numpy as np

    for fs in (16000, 24000):
        f1, f2, f3, f4 = (2 * np.pi * f for f in (20.598997, 107.65265, 737.86223, 12194.217))
        numerator = [f4**2 * 10 ** (1.9997 / 20), 0, 0, 0, 0]
        denominator = np.polymul([1, 2 * f4, f4**2], [1, 2 * f1, f1**2])
        denominator = np.polymul(np.polymul(denominator, [1, f3]), [1, f2])
        b, a = signal_.bilinear(numerator, denominator, fs=fs)
        freqs, response = signal_.freqz(b, a, worN=512, fs=fs)
        expected = signal_.firls(101, freqs, np.abs(response), fs=fs)
        ours = np.array(a_weighting_fir(float(fs)))
        assert np.abs(ours - expected).max() <= 1e-9 * np.abs(expected).max()


def test_discriminator_outputs_per_scale():
    ffts, hops = (256, 128, 64), (64, 32, 16)
    disc = MultiScaleSTFTDiscriminator(8, ffts, hops, ffts)
    audio = tone(batch=3)
    logits, features = disc(audio)
    assert len(logits) == len(features) == 3
    for n_fft, hop, scale_logits, maps in zip(ffts, hops, logits, features):
        frames = 1 + (4000 - n_fft) // hop  # no centring
        bins = [n_fft // 2 + 1]
        for _ in range(3):  # three 3x9 convs with frequency stride 2
            bins.append((bins[-1] - 1) // 2 + 1)
        assert [tuple(m.shape) for m in maps] == [
            (3, 8, frames, bins[0]), (3, 8, frames, bins[1]), (3, 8, frames, bins[2]),
            (3, 8, frames, bins[3]), (3, 8, frames, bins[3]),
        ]  # fmt: skip
        assert tuple(scale_logits.shape) == (3, 1, frames, bins[3])
    # per-clip: clip 0 alone gives what it gives in the batch
    alone, _ = disc(audio[:1])
    torch.testing.assert_close(alone[0], logits[0][:1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least 256 samples"):
        disc(audio[..., :200])


def test_frozen_discriminator_sends_gradients_to_the_audio_only():
    disc = MultiScaleSTFTDiscriminator(4, (128,), (32,), (128,))
    audio = tone(batch=1).requires_grad_()
    logits, features = disc.frozen(audio)
    (logits[0].mean() + features[0][-1].mean()).backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())


def test_hinge_losses_on_hand_values():
    real = [torch.tensor([2.0, 0.5]), torch.tensor([[0.0]])]
    fake = [torch.tensor([-3.0, 0.0]), torch.tensor([[1.0]])]
    # scale 1: mean(relu(1 - [2, .5])) = .25, mean(relu(1 + [-3, 0])) = .5
    # scale 2: relu(1 - 0) = 1, relu(1 + 1) = 2
    assert discriminator_hinge_loss(real, fake).item() == pytest.approx(0.75 + 3.0)
    # -mean(fake) per scale: 1.5 and -1
    assert generator_adversarial_loss(fake).item() == pytest.approx(0.5)
    confident = discriminator_hinge_loss([torch.tensor([1.0, 5.0])], [torch.tensor([-1.0, -7.0])])
    assert confident.item() == 0.0  # beyond the margins the hinge is flat


def test_feature_matching_is_zero_for_identical_features_and_averages_layers():
    generator = torch.Generator().manual_seed(0)
    real = [[torch.randn(2, 3, 4, 5, generator=generator) for _ in range(4)] for _ in range(2)]
    assert feature_matching_loss(real, real).item() == 0.0
    assert feature_matching_loss(real, real, normalize=True).item() == 0.0
    twos = [[torch.full((2, 2), 2.0), torch.full((3,), 4.0)]]
    zeros = [[torch.zeros(2, 2), torch.zeros(3)]]
    # layers: |2 - 0| = 2 and |4 - 0| = 4, averaged: 3
    assert feature_matching_loss(twos, zeros).item() == pytest.approx(3.0)
    # normalised by mean|real| (+ 1e-3): 2 / 2.001 and 4 / 4.001, averaged
    expected = (2 / 2.001 + 4 / 4.001) / 2
    assert feature_matching_loss(twos, zeros, normalize=True).item() == pytest.approx(expected)
    fake = [[r + 0.1 for r in scale] for scale in real]
    scaled = feature_matching_loss([[10 * r for r in s] for s in real],
                                   [[10 * f for f in s] for s in fake], normalize=True)  # fmt: skip
    assert scaled.item() == pytest.approx(  # scale-free up to the 1e-3 epsilon
        feature_matching_loss(real, fake, normalize=True).item(), rel=3e-3
    )


def test_inverse_lr_is_the_official_schedule():
    assert inverse_lr_factor(0, 200_000, 0.5, 0.999) == pytest.approx(1 - 0.999)
    assert inverse_lr_factor(199_999, 200_000, 0.5, 0.0) == pytest.approx(2**-0.5, rel=1e-5)
    assert inverse_lr_factor(10_000, 200_000, 0.5, 0.999) == pytest.approx(
        (1 - 0.999**10_001) * (1 + 10_000 / 200_000) ** -0.5
    )


# ------------------------------------------------------------------------ recipes
def test_the_official_recipe_is_the_official_training_config():
    official = json.loads(OFFICIAL.read_text())["config"]
    training, losses = official["training"], official["training"]["loss_configs"]
    recipe = load_vae_recipe(ROOT / "recipes" / "vae-oobleck-24k.yaml")
    vae = recipe.vae_config()
    encoder = official["model"]["encoder"]["config"]
    assert (vae.channels, list(vae.c_mults), list(vae.strides)) == (
        encoder["channels"], encoder["c_mults"], encoder["strides"]
    )  # fmt: skip
    assert vae.latent_dim == official["model"]["latent_dim"]
    assert round(recipe.data.clip_seconds * vae.sample_rate) == official["sample_size"]
    for name, lr in (("autoencoder", recipe.optim.lr), ("discriminator", recipe.optim.disc_lr)):
        settings = training["optimizer_configs"][name]
        assert settings["optimizer"]["type"] == "AdamW"
        assert settings["optimizer"]["config"] == {
            "betas": list(recipe.optim.betas), "lr": lr, "weight_decay": recipe.optim.weight_decay
        }  # fmt: skip
        assert settings["scheduler"] == {"type": "InverseLR", "config": {
            "inv_gamma": recipe.optim.inverse_lr_gamma, "power": recipe.optim.inverse_lr_power,
            "warmup": recipe.optim.inverse_lr_warmup}}  # fmt: skip
    loss = recipe.loss
    disc = losses["discriminator"]
    assert disc["type"] == "encodec"
    assert disc["config"] == {
        "filters": loss.disc_filters, "n_ffts": list(loss.disc_n_ffts),
        "hop_lengths": list(loss.disc_hop_lengths), "win_lengths": list(loss.disc_win_lengths),
    }  # fmt: skip
    assert disc["weights"] == {"adversarial": loss.adversarial, "feature_matching": 5.0}
    assert losses["spectral"]["config"] == {
        "fft_sizes": list(loss.stft_fft_sizes), "hop_sizes": list(loss.stft_hop_sizes),
        "win_lengths": list(loss.stft_win_lengths), "perceptual_weighting": True,
    }  # fmt: skip
    assert losses["spectral"]["weights"]["mrstft"] == loss.mrstft
    assert losses["time"]["weights"]["l1"] == loss.l1
    assert losses["bottleneck"]["weights"]["kl"] == loss.kl
    assert training["warmup_steps"] == loss.discriminator_start_step
    assert training["use_ema"] is False and recipe.optim.ema_decay is None


def test_recipe_errors_are_one_line(world, tmp_path, capsys):
    cases = {
        "batch_sise": tiny_vae_recipe(world, tmp_path / "a", optim={"batch_sise": 4}),
        "disc_n_ffts": tiny_vae_recipe(world, tmp_path / "b", loss={"disc_n_ffts": [256, 128]}),
        "optim.lr must be a": tiny_vae_recipe(world, tmp_path / "c", optim={"lr": "fast"}),
        "vae_preset": tiny_vae_recipe(world, tmp_path / "d", model={"vae_preset": "huge"}),
        # 0.01 s is 160 samples at 16 kHz: too short for the 1280-point MR-STFT resolution
        "clip_seconds 0.01": tiny_vae_recipe(world, tmp_path / "e", data={"clip_seconds": 0.01}),
        "freeze_encoder needs model.init_from": tiny_vae_recipe(
            world, tmp_path / "f", model={"vae_preset": "tiny", "freeze_encoder": True}
        ),
        "data.crop_candidates must be a positive integer": tiny_vae_recipe(
            world, tmp_path / "g", data={"crop_candidates": 0}
        ),
        "model.posterior_noise must be a number from 0 to 1": tiny_vae_recipe(
            world, tmp_path / "h", model={"vae_preset": "tiny", "posterior_noise": 1.5}
        ),
    }
    for index, (needle, recipe) in enumerate(cases.items()):
        path = write_recipe(tmp_path / f"r{index}.yaml", recipe)
        assert main(["train-vae", str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err, err
    recipe = write_recipe(tmp_path / "ok.yaml", tiny_vae_recipe(world, tmp_path / "none"))
    assert main(["train-vae", str(recipe), "--resume"]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err
    # YAML reads 1e-3 as a string: taken as the number it means
    recipe = vae_recipe_from_dict(tiny_vae_recipe(world, tmp_path, optim={"lr": "1e-3"}))
    assert recipe.validate().optim.lr == 1e-3


# -------------------------------------------------------------------- end to end
def test_train_vae_through_the_cli_exports_a_vae_that_loads(world, tmp_path):
    run = tmp_path / "run"
    recipe = tiny_vae_recipe(
        world, run, optim={"max_steps": 5, "ema_decay": 0.9},
        loss={"discriminator_start_step": 2}, run={"validate_every": 5, "validation_clips": 2},
    )  # fmt: skip
    path = write_recipe(tmp_path / "vae.yaml", recipe)
    assert main(["train-vae", str(path), "--export", str(tmp_path / "exported"), "--quiet"]) == 0
    records = metrics(run)
    assert [m["step"] for m in records] == [1, 2, 3, 4, 5]
    # reconstruction only before step 2, then the networks alternate, autoencoder on even steps
    assert [m["update"] for m in records] == ["autoencoder"] * 3 + ["discriminator", "autoencoder"]
    assert all(math.isfinite(m[k]) for m in records for k in STEP_TERMS)
    assert records[0]["adversarial"] == records[0]["disc_loss"] == 0.0
    assert all(m["disc_loss"] > 0 and m["feature_matching"] > 0 for m in records[2:])
    assert all(m["mrstft"] > 0 and m["kl"] > 0 for m in records)
    # each InverseLR schedule advances with its own network's updates: 4 and 1 of them
    assert records[-1]["lr"] == pytest.approx(1e-3 * (1 + 4 / 200_000) ** -0.5, rel=1e-12)
    assert records[-1]["disc_lr"] == pytest.approx(1e-3 * (1 + 1 / 200_000) ** -0.5, rel=1e-12)
    last = run / "checkpoints" / "step-00000005"
    names = {p.name for p in last.iterdir()}
    assert {"discriminator.safetensors", "disc_optimizer.pt", "disc_scheduler.json",
            "model.safetensors", "ema.safetensors", "optimizer.pt"} <= names  # fmt: skip
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000004", "step-00000005"
    ]  # keep_last 2  # fmt: skip
    assert len(list((run / "samples" / "step-00000005").glob("*-recon.wav"))) == 2
    assert json.loads((run / "validation.jsonl").read_text())["step"] == 5
    assert any((run / "logs").iterdir())
    hashes = json.loads((run / "rank_weights.json").read_text())
    assert len(hashes) == 1
    vae = WaveformVAE.from_pretrained(tmp_path / "exported")
    assert vae.config == VAE_PRESETS["tiny"]
    ema = load_file(last / "ema.safetensors")
    for key, value in vae.state_dict().items():
        assert torch.equal(value, ema[key]), key
    with torch.no_grad():
        audio = vae.decode(vae.encode(tone(batch=1), sample=False))
    assert torch.isfinite(audio).all()


def _train_command(recipe: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ezaudio.cli", "train-vae", str(recipe), "--no-export", *extra]


def test_a_killed_run_resumes_as_if_never_stopped(world, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    steps = 10
    settings = {
        "optim": {"max_steps": steps, "batch_size": 2, "inverse_lr_warmup": 0.5},
        "run": {"checkpoint_every": 2, "keep_last": 20},
    }
    straight = write_recipe(
        tmp_path / "a.yaml", tiny_vae_recipe(world, tmp_path / "straight", **settings)
    )
    killed_run = tmp_path / "killed"
    killed = write_recipe(tmp_path / "b.yaml", tiny_vae_recipe(world, killed_run, **settings))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    uninterrupted = subprocess.Popen(_train_command(straight), env=env, **quiet)
    process = subprocess.Popen(_train_command(killed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    target = killed_run / "checkpoints" / "step-00000004"
    deadline = time.time() + 240
    while not target.is_dir() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert target.is_dir(), "the run never wrote its step-4 checkpoint"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    final = f"checkpoints/step-{steps:08d}"
    assert not (killed_run / final).exists(), "finished before the kill"
    _, err = uninterrupted.communicate(timeout=240)
    assert uninterrupted.returncode == 0, err.decode()[-2000:]

    resumed = subprocess.run(_train_command(killed, "--resume"), env=env, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert b"resumed from" in resumed.stdout + resumed.stderr

    def logged(run: Path) -> list[tuple]:
        return [tuple(m[k] for k in ("step", "update", *STEP_TERMS, "lr", "disc_lr"))
                for m in metrics(run)]  # fmt: skip

    assert logged(killed_run) == logged(tmp_path / "straight")
    assert [m["step"] for m in metrics(killed_run)] == list(range(1, steps + 1))
    for name in ("model.safetensors", "discriminator.safetensors"):
        a = load_file(tmp_path / "straight" / final / name)
        b = load_file(killed_run / final / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    a = torch.load(tmp_path / "straight" / final / "disc_optimizer.pt", weights_only=True)
    b = torch.load(killed_run / final / "disc_optimizer.pt", weights_only=True)
    assert all(torch.equal(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"]) for k in a["state"])


def fit_two_tones(trainer: VAETrainer, steps: int) -> list[float]:
    """MR-STFT losses of ``steps`` updates on one batch of two tones, with the same
    posterior noise every step."""
    t = torch.arange(2000) / RATE
    batch = {"audio": 0.5 * torch.sin(2 * math.pi * torch.tensor([[330.0], [550.0]]) * t)[:, None]}
    state = trainer.generator.get_state()
    losses = []
    for _ in range(steps):
        trainer.generator.set_state(state)
        losses.append(trainer.train_step([batch])["mrstft"])
    return losses


def test_overfitting_one_batch_lowers_the_reconstruction_loss(world, tmp_path):
    """Reconstruction only (adversarial weights 0) of one batch of two tones, with the same
    posterior noise every step, starting from the world's VAE folder."""
    recipe = tiny_vae_recipe(
        world, tmp_path / "fit", model={"vae_preset": "tiny", "init_from": str(world / "vae")},
        optim={"lr": 3.0e-3}, data={"phase_flip_prob": 0.0, "clip_seconds": 0.125},
        loss={"adversarial": 0.0, "feature_matching": 0.0}, run={"seed": 1},
    )  # fmt: skip
    trainer = VAETrainer(vae_recipe_from_dict(recipe).validate())
    start = load_file(world / "vae" / "model.safetensors")  # seed 1 would initialise others
    assert all(torch.equal(v, start[k]) for k, v in trainer.vae.state_dict().items())
    losses = fit_two_tones(trainer, steps=40)
    early, late = sum(losses[3:8]) / 5, sum(losses[-5:]) / 5
    # seen: ~11.4 at first, ~6.2 once the output gain is right (steps 3-7), ~3.4 at the end
    assert late <= 0.4 * losses[0], (losses[0], late)
    assert late <= 0.7 * early, (early, late)


def test_freeze_encoder_trains_the_decoder_alone(world, tmp_path):
    """The latent space a DiT was trained on survives: encoder weights bit-identical,
    decoder weights moved, reconstruction loss down on a fixed batch."""
    recipe = tiny_vae_recipe(
        world, tmp_path / "dec", optim={"lr": 3.0e-3},
        model={"vae_preset": "tiny", "init_from": str(world / "vae"), "freeze_encoder": True},
        data={"phase_flip_prob": 0.0, "clip_seconds": 0.125, "crop_candidates": 3},
        loss={"adversarial": 0.0, "feature_matching": 0.0},
    )  # fmt: skip
    trainer = VAETrainer(vae_recipe_from_dict(recipe).validate())
    assert trainer.dataset.crop_candidates == 3  # the recipe's data.crop_candidates
    start = {k: v.clone() for k, v in trainer.vae.state_dict().items()}
    assert not any(p.requires_grad for p in trainer.vae.encoder.parameters())
    losses = fit_two_tones(trainer, steps=12)
    after = trainer.vae.state_dict()
    encoder = [k for k in start if k.startswith("encoder.")]
    decoder = [k for k in start if k.startswith("decoder.")]
    assert encoder and decoder
    assert all(torch.equal(after[k], start[k]) for k in encoder)
    assert any(not torch.equal(after[k], start[k]) for k in decoder)
    assert min(losses[-3:]) < 0.8 * losses[0], losses


def test_posterior_noise_scales_the_noise_of_the_latents_the_decoder_sees(world):
    # 0: the decoder learns from posterior means; 1: from samples (official); the noise
    # is drawn either way, so the generator moves on alike
    vae = WaveformVAE.from_pretrained(world / "vae").eval()
    audio = torch.randn(2, 1, 8 * vae.hop_length, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        means = _Autoencode(vae, True, 0.0)
        generator = torch.Generator().manual_seed(1)
        recon, mean, std, heads = means(audio, generator)
        assert heads.spectrum == 0 and heads.pitch == 0  # no heads
        torch.testing.assert_close(recon, vae.decode(mean), rtol=0, atol=0)
        after_means = generator.get_state()
        samples = _Autoencode(vae, True, 1.0)
        generator = torch.Generator().manual_seed(1)
        noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
        recon = samples(audio, generator).decoded
        torch.testing.assert_close(recon, vae.decode(mean + std * noise))
        assert torch.equal(generator.get_state(), after_means)
        assert (recon - vae.decode(mean)).abs().max() > 1e-4


def test_a_trained_encoder_without_posterior_noise_is_warned_about(world, tmp_path, capsys):
    def warnings(**model):
        return vae_recipe_from_dict(tiny_vae_recipe(world, tmp_path / "w", model=model)).warnings()

    assert warnings(vae_preset="tiny") == []
    assert warnings(init_from=str(world / "vae"), freeze_encoder=True, posterior_noise=0) == []
    (warning,) = warnings(vae_preset="tiny", posterior_noise=0)
    assert "posterior_noise is 0 while the encoder trains" in warning
    # the CLI prints it once, even with --quiet, and trains all the same
    recipe = tiny_vae_recipe(
        world, tmp_path / "run", model={"vae_preset": "tiny", "posterior_noise": 0},
        optim={"max_steps": 1},
    )  # fmt: skip
    path = write_recipe(tmp_path / "v.yaml", recipe)
    assert main(["train-vae", str(path), "--no-export", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: model.posterior_noise is 0") == 1


def test_bad_files_are_skipped_and_an_all_bad_batch_weighs_nothing(tmp_path, caplog):
    folder = tmp_path / "bad_world"
    write_world(folder, clips=2, bad=True)  # 2 tones, then garbage, empty, silent, missing
    bad = {2, 3, 4, 5}
    # a seed whose first epoch has a batch of bad files only
    seed = next(s for s in range(50) if any(
        set(b) <= bad for b in epoch_batches(6, 2, s, 0, 0, 1)))  # fmt: skip
    recipe = tiny_vae_recipe(
        folder, tmp_path / "run", optim={"batch_size": 2, "max_steps": 3},
        run={"seed": seed, "checkpoint_every": 3},
    )  # fmt: skip
    trainer = VAETrainer(vae_recipe_from_dict(recipe).validate())
    with caplog.at_level("WARNING"):
        trainer.train()
    records = metrics(tmp_path / "run")
    assert len(records) == 3
    empty = [m for m in records if m["mrstft"] == 0.0]  # the silent stand-in, weight 0
    assert len(empty) == 1 and all(m[k] == 0.0 for m in empty for k in STEP_TERMS)
    assert all(m["mrstft"] > 0 for m in records if m not in empty)
    assert set(trainer.dataset.skipped) == {"unreadable", "empty", "silent", "missing"}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "garbage.wav" in logged and "missing.wav" in logged
    assert all(torch.isfinite(v).all() for v in trainer.vae.state_dict().values())


def test_the_tiny_recipe_runs_with_overrides(world, tmp_path):
    recipe = ROOT / "recipes" / "tiny-vae.yaml"
    args = ["train-vae", str(recipe), "--no-export", "--quiet"]
    for override in (
        f"data.manifest={world / 'train.jsonl'}", f"run.output_dir={tmp_path / 'run'}",
        "optim.max_steps=2", "data.clip_seconds=0.25", "optim.batch_size=4",
        "run.validate_every=0", "loss.discriminator_start_step=0",
    ):  # fmt: skip
        args += ["--set", override]
    assert main(args) == 0
    assert [m["update"] for m in metrics(tmp_path / "run")] == ["autoencoder", "discriminator"]


def test_two_processes_on_gloo_keep_identical_weights(world, tmp_path):
    """DDP on two CPU processes (gloo): both networks, and the latent heads, stay identical
    on both ranks."""
    run = tmp_path / "ddp"
    heads = {"latent_spectrum": 1.0, "latent_pitch": 0.5, "latent_head_warmup": 1}
    recipe = write_recipe(
        tmp_path / "ddp.yaml",
        tiny_vae_recipe(world, run, optim={"batch_size": 2, "max_steps": 3, "grad_accum": 2},
                        run={"checkpoint_every": 3}, loss=heads),
    )  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(port), "-m", "ezaudio.cli", "train-vae", str(recipe), "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    hashes = json.loads((run / "rank_weights.json").read_text())
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    folder = run / "checkpoints" / "step-00000003"
    assert json.loads((folder / "trainer_state.json").read_text())["processes"] == 2
    assert (folder / "rng-rank1.safetensors").is_file()
    assert (folder / "latent_heads.safetensors").is_file()
    assert all(m["latent_spectrum"] > 0 for m in metrics(run))
    assert [m["update"] for m in metrics(run)] == ["autoencoder", "discriminator", "autoencoder"]
    assert WaveformVAE.from_pretrained(run / "model").config == VAE_PRESETS["tiny"]


def test_max_minutes_ends_a_vae_run_with_a_checkpoint_and_an_export(world, tmp_path):
    run = tmp_path / "vae-timed"
    recipe = tiny_vae_recipe(world, run, optim={"max_steps": 5}, run={"max_minutes": 1e-9})
    assert main(["train-vae", str(write_recipe(tmp_path / "v.yaml", recipe))]) == 0
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001"]
    assert (run / "model" / "config.json").is_file()
