"""Diffusion maths as plain functions of tensors: schedule, DDIM, guidance, sampling loop.

Nothing here owns network weights; the sampler calls a ``denoise(x, t)`` function.
"""

from ezaudio.diffusion.guidance import guide
from ezaudio.diffusion.sampler import ddim_sample
from ezaudio.diffusion.schedule import NoiseSchedule

__all__ = ["NoiseSchedule", "ddim_sample", "guide"]
