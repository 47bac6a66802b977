"""Experiment (not the recipe): whole-VAE fine-tuning with an auxiliary latent-spectrum head.

The record of what ran; the recipe has the same heads since as `loss.latent_spectrum` /
`loss.latent_pitch` (ezaudio.train.latent_heads), checkpointed and resumable, which this
script is not.

A small convolutional head reads the encoder's posterior means [B, D, L] and predicts the
log power of the audio on a log-frequency axis (24 bins per octave, 40 Hz - 7.6 kHz) for
every latent frame; its L1 error, times WEIGHT, is added to the VAE's objective. The head
gives the encoder a short gradient path to fine frequency detail (pitch), which the
MR-STFT loss through the decoder did not teach it in ~1400 CPU steps ("The encoder on
means", docs/results.md). The head is thrown away after training; the exported VAE is an
ordinary Oobleck VAE. Everything else is `ezaudio train-vae` with the given recipe and
--set overrides (VAETrainer, subclassed here).

    python train_aux.py RECIPE --weight 1.0 --set KEY=VALUE ...
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

from ezaudio.train.vae_recipe import load_vae_recipe
from ezaudio.train.vae_trainer import VAETrainer

BINS_PER_OCTAVE = 24
LOW_HZ = 40.0
HIGH_HZ = 7600.0
N_FFT = 2048
# Floor of the power, ~64 dB under a full-scale sine (power (N_FFT / 4)^2 = 2.6e5): the head
# need not model faint tails and silence in detail.
POWER_FLOOR = 0.1


def log_frequency_filters(sample_rate: int, n_fft: int) -> torch.Tensor:
    """[bins, n_fft // 2 + 1] triangles centred on a log-frequency grid, rows summing to 1.
    A triangle's half-width is the grid step at its centre, at least 1.5 FFT bins."""
    count = int(math.log2(HIGH_HZ / LOW_HZ) * BINS_PER_OCTAVE) + 1
    centres = LOW_HZ * 2.0 ** (torch.arange(count) / BINS_PER_OCTAVE)  # [bins] Hz
    freqs = torch.arange(n_fft // 2 + 1) * sample_rate / n_fft  # [F] Hz
    resolution = sample_rate / n_fft
    half = torch.clamp(centres * (2 ** (1 / BINS_PER_OCTAVE) - 1), min=1.5 * resolution)
    tri = (1 - (freqs[None, :] - centres[:, None]).abs() / half[:, None]).clamp(min=0)
    return tri / tri.sum(dim=1, keepdim=True)


def latent_frame_spectrum(audio: torch.Tensor, hop: int, frames: int, filters) -> torch.Tensor:
    """audio [B, 1, N] -> log power [B, bins, frames], window k centred on latent frame k
    (samples k * hop .. (k + 1) * hop)."""
    pad = (N_FFT - hop) // 2
    x = F.pad(audio[:, 0], (pad, pad + N_FFT))  # [B, N + ...]
    window = torch.hann_window(N_FFT, device=audio.device)
    spec = torch.stft(x, N_FFT, hop, window=window, center=False, return_complex=True)
    power = spec.abs().square()[..., :frames]  # [B, F, frames]
    return torch.log(filters @ power + POWER_FLOOR)  # [B, bins, frames]


class SpectrumHead(nn.Module):
    """Latent means [B, D, L] -> log-frequency log power [B, bins, L]."""

    def __init__(self, latent_dim: int, bins: int, width: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(latent_dim, width, 3, padding=1), nn.SiLU(),
            nn.Conv1d(width, width, 1), nn.SiLU(), nn.Conv1d(width, bins, 1),
        )  # fmt: skip

    def forward(self, mean: torch.Tensor) -> torch.Tensor:
        return self.net(mean)


class AuxTrainer(VAETrainer):
    def __init__(self, recipe, weight: float, head_lr: float, warmup: int, resume=False) -> None:
        super().__init__(recipe, resume=resume)
        self.weight = weight
        self.warmup = warmup  # steps in which the head learns alone (no gradient to the encoder)
        cfg = self.vae.config
        self.filters = log_frequency_filters(cfg.sample_rate, N_FFT)
        self.head = SpectrumHead(cfg.latent_dim, self.filters.shape[0])
        self.head_optimizer = torch.optim.AdamW(self.head.parameters(), lr=head_lr)
        self.last_aux = float("nan")

    def generator_pass(self, audio):
        decoded, mean, std, _ = self.autoencoder(audio, self.generator)
        _, _, mrstft, kl, l1 = self._reconstruction_terms(audio, decoded, mean, std)
        frames = mean.shape[-1]
        target = latent_frame_spectrum(audio, self.vae.config.hop_length, frames, self.filters)
        if self.step < self.warmup:
            mean = mean.detach()
        aux = (self.head(mean.float()) - target).abs().mean()
        self.last_aux = aux.item()
        objective = self._objective(mrstft, kl, l1, mrstft.new_zeros(()), mrstft.new_zeros(()))
        objective = objective + self.weight * aux
        zero = mrstft.new_zeros(())
        terms = torch.stack([objective, mrstft, kl, l1, zero, zero, zero, zero, zero])
        return objective, terms.detach()

    def train_step(self, micro_batches):
        self.head_optimizer.zero_grad(set_to_none=True)
        record = super().train_step(micro_batches)
        self.head_optimizer.step()
        record["aux"] = self.last_aux
        return record

    def _log_metrics(self, record, started, started_step):
        super()._log_metrics(record, started, started_step)
        if self.step % self.recipe.run.log_every == 0 or self.step <= 5:
            print(f"step {self.step} mrstft {record['mrstft']:.4f} aux {record['aux']:.4f}",
                  flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100, help="head-only steps first")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    recipe = load_vae_recipe(args.recipe, args.set)
    trainer = AuxTrainer(recipe, args.weight, args.head_lr, args.warmup)
    last = trainer.train()
    print(f"last checkpoint: {last}")
    folder = trainer.export(recipe.run.output_dir + "/model")
    print(f"exported {folder}")


if __name__ == "__main__":
    main()
