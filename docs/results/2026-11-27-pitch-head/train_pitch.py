"""Experiment (not the recipe): the latent-spectrum head plus a pitch head on the encoder.

The record of what ran; the recipe has the same heads since as `loss.latent_spectrum` /
`loss.latent_pitch` (ezaudio.train.latent_heads), checkpointed and resumable, which this
script is not.

"A spectrum head for the encoder" (docs/results.md) added the L1 error of a head that
predicts the log-frequency log power of each latent frame from the posterior means: the
head learnt its task, yet the encoder kept pitch no better (~3 semitones), likely because a
tone's single peak weighs little in an L1 over ~180 bins. Here a second head of the same
shape classifies, on the same 24-bins-per-octave grid, the strongest bin of every *tonal*
frame (spectral flatness under 0.01 and not faint): cross-entropy, times PITCH_WEIGHT, is
added to the objective of train_aux.py (spectrum head included). Both heads are thrown away
after training; the exported VAE is an ordinary Oobleck VAE.

    python train_pitch.py RECIPE --weight 1.0 --pitch-weight 0.3 --set KEY=VALUE ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "2026-11-27-latent-spectrum"))
from train_aux import N_FFT, AuxTrainer, SpectrumHead, latent_frame_spectrum  # noqa: E402

from ezaudio.train.vae_recipe import load_vae_recipe  # noqa: E402

FLATNESS_MAX = 0.01  # the pitch probe's definition of a tonal frame
FAINT = 10.0  # banded power under this (~ -40 dB under a full-scale sine) is not a target


def pitch_targets(audio: torch.Tensor, hop: int, frames: int, filters: torch.Tensor):
    """audio [B, 1, N] -> (strongest log-frequency bin [B, frames] (long), tonal mask
    [B, frames] (bool)); windows placed as in ``latent_frame_spectrum``."""
    pad = (N_FFT - hop) // 2
    x = F.pad(audio[:, 0], (pad, pad + N_FFT))
    window = torch.hann_window(N_FFT, device=audio.device)
    spec = torch.stft(x, N_FFT, hop, window=window, center=False, return_complex=True)
    power = spec.abs().square()[..., :frames] + 1e-10  # [B, F, frames]
    flatness = power.log().mean(dim=1).exp() / power.mean(dim=1)  # [B, frames]
    banded = filters @ power  # [B, bins, frames]
    strongest, index = banded.max(dim=1)  # [B, frames]
    return index, (flatness < FLATNESS_MAX) & (strongest > FAINT)


class PitchTrainer(AuxTrainer):
    def __init__(self, recipe, weight, head_lr, warmup, pitch_weight, resume=False) -> None:
        super().__init__(recipe, weight, head_lr, warmup, resume=resume)
        self.pitch_weight = pitch_weight
        cfg = self.vae.config
        self.pitch_head = SpectrumHead(cfg.latent_dim, self.filters.shape[0])  # logits
        self.head_optimizer.add_param_group({"params": list(self.pitch_head.parameters())})
        self.last_pitch = float("nan")
        self.last_tonal = 0.0

    def generator_pass(self, audio):
        # train_aux.AuxTrainer.generator_pass with the pitch term added
        decoded, mean, std, _ = self.autoencoder(audio, self.generator)
        _, _, mrstft, kl, l1 = self._reconstruction_terms(audio, decoded, mean, std)
        hop, frames = self.vae.config.hop_length, mean.shape[-1]
        spectrum = latent_frame_spectrum(audio, hop, frames, self.filters)  # [B, bins, L]
        target, tonal = pitch_targets(audio, hop, frames, self.filters)  # [B, L], [B, L]
        if self.step < self.warmup:
            mean = mean.detach()
        aux = (self.head(mean.float()) - spectrum).abs().mean()
        self.last_aux = aux.item()
        zero = mrstft.new_zeros(())
        objective = self._objective(mrstft, kl, l1, zero, zero) + self.weight * aux
        self.last_tonal = tonal.float().mean().item()
        if tonal.any():
            ce = F.cross_entropy(self.pitch_head(mean.float()), target, reduction="none")
            pitch = ce[tonal].mean()  # the tonal frames' mean
            objective = objective + self.pitch_weight * pitch
            self.last_pitch = pitch.item()
        terms = torch.stack([objective, mrstft, kl, l1, zero, zero, zero, zero, zero])
        return objective, terms.detach()

    def _log_metrics(self, record, started, started_step):
        super()._log_metrics(record, started, started_step)
        if self.step % self.recipe.run.log_every == 0 or self.step <= 5:
            print(f"step {self.step} pitch_ce {self.last_pitch:.4f} tonal {self.last_tonal:.3f}",
                  flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--weight", type=float, default=1.0, help="spectrum head's L1")
    parser.add_argument("--pitch-weight", type=float, default=0.3, help="pitch head's CE")
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100, help="head-only steps first")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    recipe = load_vae_recipe(args.recipe, args.set)
    trainer = PitchTrainer(recipe, args.weight, args.head_lr, args.warmup, args.pitch_weight)
    last = trainer.train()
    print(f"last checkpoint: {last}")
    folder = trainer.export(recipe.run.output_dir + "/model")
    print(f"exported {folder}")


if __name__ == "__main__":
    main()
