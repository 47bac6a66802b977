"""The DiT training loss: masked v-prediction, and the optional activity weighting."""

from __future__ import annotations

import pytest
import torch
from tiny_world import tiny_recipe

from ezaudio.data.masking import training_masks
from ezaudio.diffusion.schedule import NoiseSchedule
from ezaudio.errors import InvalidInputError
from ezaudio.train.diffusion_loss import (
    activity_weights,
    masked_modelling_loss,
    masked_velocity_loss,
)
from ezaudio.train.recipe import MaskingSection, recipe_from_dict


def sparse_latents() -> torch.Tensor:
    """[2, 4, 10]: clip 0 silent (a constant frame) but for frame 3 (distance 8 from it) and
    frame 6 (distance 2); clip 1 silent throughout."""
    silent = torch.tensor([0.5, -1.0, 0.25, 2.0])[None, :, None].repeat(2, 1, 10)
    silent[0, :, 3] += torch.tensor([8.0, 0.0, 0.0, 0.0])
    silent[0, :, 6] += torch.tensor([0.0, 0.0, 2.0, 0.0])
    return silent


def test_activity_weights_grow_with_the_distance_from_the_median_frame_up_to_the_scale():
    weights = activity_weights(sparse_latents(), weight=4.0, scale=4.0)  # [B, L]
    expected = torch.ones(2, 10)
    expected[0, 3] = 5.0  # distance 8, past the scale: 1 + 4
    expected[0, 6] = 3.0  # distance 2 = half the scale: 1 + 4 / 2
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(activity_weights(sparse_latents(), 0.0, 4.0), torch.ones(2, 10))


def test_masked_velocity_loss_is_the_weighted_mean_of_the_squared_errors():
    prediction = torch.zeros(1, 2, 3)
    target = torch.tensor([[[1.0, 2.0, 3.0], [1.0, 0.0, 1.0]]])
    weight = torch.tensor([[1.0, 0.0, 3.0]])  # frame 1 left out, frame 2 counts 3 times
    loss = masked_velocity_loss(prediction, target, weight)
    assert loss.item() == pytest.approx((1 * (1 + 1) + 3 * (9 + 1)) / ((1 + 3) * 2))


def test_the_training_loss_weights_the_event_frames_of_a_sparse_clip():
    schedule = NoiseSchedule.from_config()
    latents = sparse_latents()
    valid = torch.ones(2, 10, dtype=torch.bool)
    masking = MaskingSection(ratio=(0.25, 1.0), span=2, full_mask_prob=1.0)

    def zero_model(noisy, timesteps, context, context_mask, gt=None, gt_mask=None):
        return torch.zeros_like(noisy)

    def loss(**options):
        return masked_modelling_loss(
            zero_model, schedule, latents, valid, masking, torch.Generator().manual_seed(3),
            **options,
        )  # fmt: skip

    # the same draws as the loss makes, in its order: masks, timesteps, noise
    generator = torch.Generator().manual_seed(3)
    generate = training_masks(2, 10, (0.25, 1.0), 2, 1.0, generator=generator)
    timesteps = torch.randint(0, schedule.num_train_timesteps, (2,), generator=generator)
    noise = torch.randn(tuple(latents.shape), generator=generator)
    target = schedule.velocity(latents, noise, timesteps)
    zeros = torch.zeros_like(target)
    plain = masked_velocity_loss(zeros, target, generate.float())
    weighted = masked_velocity_loss(
        zeros, target, generate.float() * activity_weights(latents, 4.0, 4.0)
    )
    assert loss().item() == pytest.approx(plain.item())
    assert loss(activity_weight=0.0).item() == pytest.approx(plain.item())
    assert loss(activity_weight=4.0, activity_scale=4.0).item() == pytest.approx(weighted.item())
    assert abs(weighted.item() - plain.item()) > 1e-3


@pytest.mark.parametrize(
    ("optim", "message"),
    [
        ({"activity_weight": -1.0}, "optim.activity_weight must be a number >= 0"),
        ({"activity_weight": "lots"}, "optim.activity_weight must be a number >= 0"),
        ({"activity_scale": 0.0}, "optim.activity_scale must be a positive number"),
    ],
)
def test_bad_activity_settings_are_refused(world, tmp_path, optim, message):
    recipe = recipe_from_dict(tiny_recipe(world, tmp_path / "run", optim=optim))
    with pytest.raises(InvalidInputError, match=message):
        recipe.validate()


def test_activity_weighting_is_off_by_default(world, tmp_path):
    optim = recipe_from_dict(tiny_recipe(world, tmp_path / "run")).validate().optim
    assert optim.activity_weight == 0.0


def test_the_trainer_passes_the_activity_settings_to_its_loss(world, tmp_path):
    from ezaudio.train.trainer import DiTTrainer

    def first_loss(name, **optim):
        recipe = recipe_from_dict(tiny_recipe(world, tmp_path / name, optim=optim)).validate()
        trainer = DiTTrainer(recipe)
        channels = trainer.vae.config.latent_dim
        latents = torch.randn(2, channels, 12, generator=torch.Generator().manual_seed(0))
        latents[:, :, 5] += 6.0  # one loud frame in each clip  [B, C, L]
        valid = torch.ones(2, 12, dtype=torch.bool)
        return trainer.latent_loss(latents, valid, ["", ""]).item()

    plain, again = first_loss("a"), first_loss("b")
    weighted = first_loss("c", activity_weight=4.0, activity_scale=2.0)
    assert plain == pytest.approx(again)  # the same draws
    assert abs(weighted - plain) > 1e-4
