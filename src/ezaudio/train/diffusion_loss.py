"""The masked v-prediction loss of EzAudio training (paper II-C-1)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from ezaudio.diffusion.schedule import NoiseSchedule


# Min-SNR weighting (Hang et al. 2023, Sec. 3.4), v-prediction form: min(SNR, gamma) / (SNR + 1).
def min_snr_weights(schedule: NoiseSchedule, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """[B] loss weights for ``timesteps`` [B]."""
    snr = schedule.snr(timesteps).float()
    return torch.clamp(snr, max=gamma) / (snr + 1)


# Activity weighting (this project's option, not the paper's): a latent frame's weight grows with
# its distance d from the clip's median frame, w = 1 + a * min(d / s, 1), so the few event frames
# of a mostly silent clip count up to (1 + a) times as much as its silent ones.
def activity_weights(latents: torch.Tensor, weight: float, scale: float) -> torch.Tensor:
    """[B, L] frame weights of ``latents`` [B, C, L]: ``weight`` a, ``scale`` s (latent units)."""
    latents = latents.float()
    median = latents.median(dim=2, keepdim=True).values  # [B, C, 1]
    distance = (latents - median).norm(dim=1)  # [B, L]
    return 1 + weight * (distance / scale).clamp(max=1)


def masked_velocity_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    frame_weight: torch.Tensor,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over samples of the (frame-weighted) MSE over the frames to be generated.

    ``prediction``/``target`` [B, C, L]; ``frame_weight`` [B, L] (1 on masked,
    valid frames, 0 elsewhere, or such a mask times non-negative weights);
    ``sample_weight`` [B] (e.g. min-SNR) or None. A sample with no weighted frame
    contributes 0.
    """
    weight = frame_weight.to(prediction.dtype)[:, None, :]  # [B, 1, L]
    squared = (prediction.float() - target.float()).square() * weight
    frames = weight.sum(dim=(1, 2)) * prediction.shape[1]  # [B] weighted elements
    per_sample = squared.sum(dim=(1, 2)) / frames.clamp_min(1)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight.to(per_sample)
    return per_sample.mean()


def masked_modelling_loss(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    latents: torch.Tensor,
    valid: torch.Tensor,
    masking: Any,
    generator: torch.Generator,
    *,
    text: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    min_snr_gamma: float | None = None,
    activity_weight: float = 0.0,
    activity_scale: float = 4.0,
) -> torch.Tensor:
    """The DiT training loss of one batch of latents (paper II-C-1), as the trainer computes it.

    Span-mask the latents (``masking``: a recipe ``MaskingSection``, its ``ratio``, ``span``
    and ``full_mask_prob``), noise them at a random timestep, predict the velocity of the
    masked frames given the rest and return :func:`masked_velocity_loss` over the masked,
    ``valid`` [B, L] frames. ``latents`` [B, C, L] are on the model's device. Every draw
    comes from the CPU ``generator`` in a fixed order (masks, timesteps, noise, then
    ``text``, which returns the text states and mask and may draw caption dropout from the
    same generator). The forward runs under ``autocast()``. ``activity_weight`` > 0 weights
    the frames by :func:`activity_weights` of the clean latents (0: the paper's loss).
    """
    from ezaudio.data.masking import training_masks

    device = latents.device
    batch_size, _, frames = latents.shape
    generate = training_masks(
        batch_size, frames, tuple(masking.ratio), masking.span, masking.full_mask_prob,
        generator=generator,
    ).to(device)  # [B, L] True = generated  # fmt: skip
    timesteps = torch.randint(
        0, schedule.num_train_timesteps, (batch_size,), generator=generator
    ).to(device)
    noise = torch.randn(tuple(latents.shape), generator=generator).to(device)
    noisy = schedule.add_noise(latents, noise, timesteps)
    target = schedule.velocity(latents, noise, timesteps)
    context = context_mask = None
    if text is not None:
        context, context_mask = text()
    with autocast():
        prediction = model(noisy, timesteps, context, context_mask, gt=latents, gt_mask=generate)
    weights = None
    if min_snr_gamma:
        weights = min_snr_weights(schedule, timesteps, min_snr_gamma)
    frame_weight = (generate & valid).float()  # [B, L]
    if activity_weight:
        frame_weight = frame_weight * activity_weights(latents, activity_weight, activity_scale)
    return masked_velocity_loss(prediction, target, frame_weight, weights)
