"""The masked v-prediction loss of EzAudio training (paper II-C-1)."""

from __future__ import annotations

import torch

from ezaudio.diffusion.schedule import NoiseSchedule


# Min-SNR weighting (Hang et al. 2023, Sec. 3.4), v-prediction form: min(SNR, gamma) / (SNR + 1).
def min_snr_weights(schedule: NoiseSchedule, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """[B] loss weights for ``timesteps`` [B]."""
    snr = schedule.snr(timesteps).float()
    return torch.clamp(snr, max=gamma) / (snr + 1)


def masked_velocity_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    frame_weight: torch.Tensor,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over samples of the MSE over the frames to be generated.

    ``prediction``/``target`` [B, C, L]; ``frame_weight`` [B, L] (1 on masked,
    valid frames, 0 elsewhere); ``sample_weight`` [B] (e.g. min-SNR) or None.
    A sample with no weighted frame contributes 0.
    """
    weight = frame_weight.to(prediction.dtype)[:, None, :]  # [B, 1, L]
    squared = (prediction.float() - target.float()).square() * weight
    frames = weight.sum(dim=(1, 2)) * prediction.shape[1]  # [B] weighted elements
    per_sample = squared.sum(dim=(1, 2)) / frames.clamp_min(1)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight.to(per_sample)
    return per_sample.mean()
