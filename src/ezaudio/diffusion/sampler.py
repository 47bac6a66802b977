"""The DDIM sampling loop over any ``denoise(x, t) -> model_output`` function."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ezaudio.diffusion.ddim import ddim_step
from ezaudio.diffusion.schedule import NoiseSchedule

Denoiser = Callable[[torch.Tensor, int], torch.Tensor]


def ddim_sample(
    denoise: Denoiser,
    noise: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int,
    eta: float = 1.0,
    generator: torch.Generator | list[torch.Generator] | None = None,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run ``steps`` DDIM updates from ``noise`` [B, C, L] (float32) and return x_0.

    ``denoise`` receives the current sample and the integer timestep.
    ``callback(step_index, steps)`` is called after each step (for progress UIs).
    Fresh noise for eta > 0 is drawn from ``generator`` after the initial noise,
    in the same order as the official code.
    """
    sample = noise
    timesteps = schedule.timesteps(steps).tolist()
    prediction = schedule.config.prediction_type
    for index, timestep in enumerate(
        tqdm(timesteps, desc="sampling", disable=not progress, leave=False)
    ):
        output = denoise(sample, timestep).to(sample.dtype)
        previous = schedule.previous_timestep(timestep, steps)
        sample = ddim_step(
            output,
            sample,
            schedule.alpha_bar(timestep),
            schedule.alpha_bar(previous),
            eta=eta,
            prediction_type=prediction,
            generator=generator,
        )
        if callback is not None:
            callback(index + 1, steps)
    return sample
