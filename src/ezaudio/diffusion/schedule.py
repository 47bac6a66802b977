"""Noise schedule: scaled-linear betas rescaled to zero terminal SNR, v-prediction targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ezaudio.config import SchedulerConfig


# Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Alg. 1.
def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last step has SNR 0 and the first is unchanged."""
    alphas_bar_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last))
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1.0 - alphas


def make_betas(config: SchedulerConfig) -> torch.Tensor:
    """[T] float32 betas of the configured schedule."""
    steps = config.num_train_timesteps
    if config.beta_schedule == "scaled_linear":
        betas = torch.linspace(config.beta_start**0.5, config.beta_end**0.5, steps) ** 2
    else:
        betas = torch.linspace(config.beta_start, config.beta_end, steps)
    betas = betas.float()
    if config.rescale_betas_zero_snr:
        betas = rescale_zero_terminal_snr(betas)
    return betas


@dataclass
class NoiseSchedule:
    """alpha_bar_t for t = 0..T-1 and the maps between clean data, noise and velocity."""

    config: SchedulerConfig
    alphas_cumprod: torch.Tensor  # [T] float32

    @classmethod
    def from_config(cls, config: SchedulerConfig | None = None) -> NoiseSchedule:
        config = config or SchedulerConfig()
        betas = make_betas(config)
        return cls(config, torch.cumprod(1.0 - betas, dim=0))

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def _coefficients(
        self, timesteps: torch.Tensor, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        alpha_bar = self.alphas_cumprod.to(like.device)[timesteps.to(like.device).long()]
        shape = (-1,) + (1,) * (like.dim() - 1)
        return (
            alpha_bar.sqrt().to(like.dtype).reshape(shape),
            (1 - alpha_bar).sqrt().to(like.dtype).reshape(shape),
        )

    # Forward process q(x_t | x_0): x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps.
    def add_noise(
        self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """Noisy samples at ``timesteps`` [B] for clean [B, ...] and noise [B, ...]."""
        signal, sigma = self._coefficients(timesteps, clean)
        return signal * clean + sigma * noise

    # v-prediction target (Salimans & Ho 2022): v = sqrt(a_t) eps - sqrt(1 - a_t) x_0.
    def velocity(
        self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """The velocity the network is trained to predict."""
        signal, sigma = self._coefficients(timesteps, clean)
        return signal * noise - sigma * clean

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio a_t / (1 - a_t) at ``timesteps`` (inf-free: 0 at the last step)."""
        alpha_bar = self.alphas_cumprod[timesteps.cpu().long()]
        return (alpha_bar / (1 - alpha_bar).clamp_min(1e-12)).to(timesteps.device)

    def timesteps(self, num_steps: int) -> torch.Tensor:
        """Inference timesteps [num_steps], high to low, with the configured spacing."""
        total = self.num_train_timesteps
        if not 1 <= num_steps <= total:
            raise ValueError(f"steps must be in [1, {total}], got {num_steps}")
        spacing = self.config.timestep_spacing
        if spacing == "trailing":
            steps = np.round(np.arange(total, 0, -total / num_steps)).astype(np.int64) - 1
        elif spacing == "leading":
            steps = (np.arange(0, num_steps) * (total // num_steps)).round()[::-1].astype(np.int64)
        else:
            steps = np.linspace(0, total - 1, num_steps).round()[::-1].astype(np.int64)
        return torch.from_numpy(steps.copy())

    def previous_timestep(self, timestep: int, num_steps: int) -> int:
        """The timestep a DDIM step from ``timestep`` lands on (negative = the clean end)."""
        return int(timestep) - self.num_train_timesteps // num_steps

    def alpha_bar(self, timestep: int) -> float:
        """alpha_bar at ``timestep``; 1.0 for a negative step (the final, clean sample)."""
        return 1.0 if timestep < 0 else float(self.alphas_cumprod[timestep])
