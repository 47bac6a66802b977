"""Properties of the DDIM update, guidance and the sampling loop."""

from __future__ import annotations

import pytest
import torch

from ezaudio.diffusion import NoiseSchedule, ddim_sample, guide
from ezaudio.diffusion.ddim import ddim_step


@pytest.fixture
def schedule() -> NoiseSchedule:
    return NoiseSchedule.from_config()


def test_perfect_velocity_recovers_the_clean_sample(schedule):
    """With the true v, one eta=0 step to the clean end returns x_0 exactly."""
    clean, noise = torch.randn(2, 4, 10), torch.randn(2, 4, 10)
    t = torch.tensor([600, 600])
    noisy = schedule.add_noise(clean, noise, t)
    v = schedule.velocity(clean, noise, t)
    out = ddim_step(v, noisy, schedule.alpha_bar(600), 1.0)
    torch.testing.assert_close(out, clean, atol=1e-5, rtol=1e-5)


def test_sampler_with_oracle_denoiser_reaches_the_target(schedule):
    target = torch.randn(1, 3, 8)

    def oracle(x, t):
        alpha = schedule.alpha_bar(t)
        noise = (x - alpha**0.5 * target) / (1 - alpha) ** 0.5 if alpha < 1 else torch.zeros_like(x)
        return alpha**0.5 * noise - (1 - alpha) ** 0.5 * target

    for eta in (0.0, 1.0):
        out = ddim_sample(
            oracle,
            torch.randn(1, 3, 8),
            schedule,
            steps=10,
            eta=eta,
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )
        torch.testing.assert_close(out, target, atol=1e-4, rtol=1e-4)


def test_sampling_is_reproducible_by_generator_and_calls_back(schedule):
    steps_seen = []

    def run(seed):
        return ddim_sample(
            lambda x, t: 0.1 * x,
            torch.ones(1, 2, 4),
            schedule,
            steps=5,
            eta=1.0,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
            callback=lambda i, n: steps_seen.append((i, n)),
        )

    torch.testing.assert_close(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    assert steps_seen[:5] == [(i, 5) for i in range(1, 6)]


def test_guidance_scale_one_and_zero(schedule):
    v_pos, v_neg = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    torch.testing.assert_close(guide(v_pos, v_neg, 1.0, 0.0), v_pos)
    torch.testing.assert_close(guide(v_pos, v_neg, 0.0, 0.0), v_neg)
    torch.testing.assert_close(guide(v_pos, v_neg, 1.0, 1.0), v_pos)


def test_full_rescale_matches_the_conditional_std():
    v_pos, v_neg = torch.randn(2, 3, 50), torch.randn(2, 3, 50)
    out = guide(v_pos, v_neg, 7.0, 1.0)
    torch.testing.assert_close(out.std(dim=(1, 2)), v_pos.std(dim=(1, 2)))


def test_per_sample_guidance_scales():
    v_pos, v_neg = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    out = guide(v_pos, v_neg, torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(out[0], v_pos[0])
    torch.testing.assert_close(out[1], guide(v_pos[1:], v_neg[1:], 4.0)[0])


def test_timestep_bounds(schedule):
    with pytest.raises(ValueError):
        schedule.timesteps(0)
    assert schedule.timesteps(1).tolist() == [999]
