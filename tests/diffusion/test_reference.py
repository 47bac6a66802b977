"""Schedule, DDIM and guidance against the official implementation's numbers."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ezaudio.config import SchedulerConfig
from ezaudio.diffusion.ddim import ddim_step
from ezaudio.diffusion.guidance import guide
from ezaudio.diffusion.schedule import NoiseSchedule


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture
def schedule(reference_dir) -> NoiseSchedule:
    official = json.loads((reference_dir / "scheduler_config.json").read_text())
    assert official.pop("clip_sample") is False
    return NoiseSchedule.from_config(SchedulerConfig(**official))


@pytest.fixture
def io(reference_dir):
    return load_file(reference_dir / "scheduler_io.safetensors")


def test_alphas_cumprod_and_zero_terminal_snr(schedule, io):
    assert relative_error(schedule.alphas_cumprod, io["alphas_cumprod"]) <= 1e-5
    assert schedule.alphas_cumprod[-1] == 0  # zero terminal SNR


@pytest.mark.parametrize("steps", [25, 50, 100])
def test_trailing_timesteps(schedule, io, steps):
    assert torch.equal(schedule.timesteps(steps), io[f"timesteps_{steps}"])


def test_add_noise_and_velocity_target(schedule, io):
    t = io["train_timesteps"]
    assert relative_error(schedule.add_noise(io["clean"], io["noise"], t), io["noisy"]) <= 1e-5
    assert relative_error(schedule.velocity(io["clean"], io["noise"], t), io["velocity"]) <= 1e-5


def test_deterministic_ddim_steps(schedule, io):
    for index, t in enumerate(io["ddim_eta0_step_timesteps"].tolist()):
        previous = schedule.previous_timestep(t, 50)
        out = ddim_step(
            io["model_output"], io["sample"], schedule.alpha_bar(t), schedule.alpha_bar(previous)
        )
        assert relative_error(out, io["ddim_eta0_prev_samples"][index]) <= 1e-5, t


@pytest.mark.parametrize(
    ("key", "scale", "rescale"),
    [("w3.0_phi0.0", 3.0, 0.0), ("w5.0_phi0.75", 5.0, 0.75), ("w5.0_phi1.0", 5.0, 1.0)],
)
def test_guidance_with_rescaling(reference_dir, key, scale, rescale):
    io = load_file(reference_dir / "cfg_rescale_io.safetensors")
    assert relative_error(guide(io["v_pos"], io["v_neg"], scale, rescale), io[key]) <= 1e-5
