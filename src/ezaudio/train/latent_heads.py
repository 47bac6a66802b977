"""Auxiliary heads on the VAE's posterior means: a short gradient path from pitch to encoder.

Not in the paper or the official recipe (both weights default to 0). The MR-STFT loss
reaches the encoder only through the decoder, and on the small world VAEs it taught the
encoder only a coarse pitch (about 3 semitones; docs/results.md, "What the VAE loses").
Two small convolutional heads read the posterior means ``[B, D, L]`` and predict, for
every latent frame, what a 2048-point spectrum centred on that frame holds, on a
log-frequency grid of 24 bins per octave (40 Hz up to 7.6 kHz or 0.475 x the rate):

* ``loss.latent_spectrum``: the L1 error of the predicted log power of every bin
  (docs/results.md, "A spectrum head for the encoder");
* ``loss.latent_pitch``: the cross-entropy of classifying the strongest bin of every
  *tonal* frame (spectral flatness under 0.01 and not faint), averaged over those frames
  (docs/results.md, "A pitch head for the encoder": the decoded pitch error went from 3.3
  to 1.1 semitones).

For the first ``loss.latent_head_warmup`` steps the heads learn from detached means (the
encoder gets no gradient from them). The heads are checkpointed with the run and thrown
away on export: the exported VAE is an ordinary Oobleck VAE.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ezaudio.errors import InvalidInputError

BINS_PER_OCTAVE = 24
LOW_HZ = 40.0
HIGH_HZ = 7600.0
N_FFT = 2048
# Floor of the banded power: ~64 dB under a full-scale sine (power (N_FFT / 4)^2 = 2.6e5),
# so that the spectrum head need not model faint tails and silence in detail.
POWER_FLOOR = 0.1
# A frame is tonal when its spectral flatness (geometric / arithmetic mean of the power) is
# under this and its strongest band is above FAINT (~ -40 dB under a full-scale sine).
FLATNESS_MAX = 0.01
FAINT = 10.0
HEAD_WIDTH = 256


def log_frequency_filters(sample_rate: int, n_fft: int = N_FFT) -> torch.Tensor:
    """Triangles centred on a log-frequency grid: [bins, n_fft // 2 + 1], rows summing to 1.

    Centres run from 40 Hz in steps of 1/24 octave up to 7.6 kHz (or 0.475 x the rate,
    whichever is lower); a triangle's half-width is the grid step at its centre, at least
    1.5 FFT bins."""
    high = min(HIGH_HZ, 0.475 * sample_rate)
    if high <= LOW_HZ:
        raise InvalidInputError(f"a sample rate of {sample_rate} Hz leaves no log-frequency bins")
    count = int(math.log2(high / LOW_HZ) * BINS_PER_OCTAVE) + 1
    centres = LOW_HZ * 2.0 ** (torch.arange(count) / BINS_PER_OCTAVE)  # [bins] Hz
    freqs = torch.arange(n_fft // 2 + 1) * sample_rate / n_fft  # [F] Hz
    resolution = sample_rate / n_fft
    half = torch.clamp(centres * (2 ** (1 / BINS_PER_OCTAVE) - 1), min=1.5 * resolution)
    tri = (1 - (freqs[None, :] - centres[:, None]).abs() / half[:, None]).clamp(min=0)
    return tri / tri.sum(dim=1, keepdim=True)


def check_hop(hop: int, n_fft: int = N_FFT) -> None:
    """Refuse a latent hop longer than the FFT whose windows are centred on latent frames."""
    if hop > n_fft:
        raise InvalidInputError(
            f"a latent hop of {hop} samples is longer than the {n_fft}-point FFT"
        )


def frame_power(audio: torch.Tensor, hop: int, frames: int, n_fft: int = N_FFT) -> torch.Tensor:
    """audio [B, 1, N] -> power spectrum [B, n_fft // 2 + 1, frames]; window k (Hann, n_fft
    samples) is centred on latent frame k, i.e. on samples k * hop .. (k + 1) * hop."""
    check_hop(hop, n_fft)
    pad = (n_fft - hop) // 2
    x = F.pad(audio[:, 0].float(), (pad, pad + n_fft))  # [B, N + n_fft + ...]
    window = torch.hann_window(n_fft, device=audio.device)
    spec = torch.stft(x, n_fft, hop, window=window, center=False, return_complex=True)
    return spec.abs().square()[..., :frames]  # [B, F, frames]


def spectrum_targets(power: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Power [B, F, L] -> log banded power [B, bins, L] (floored at POWER_FLOOR)."""
    return torch.log(filters @ power + POWER_FLOOR)


def pitch_targets(power: torch.Tensor, filters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Power [B, F, L] -> (strongest log-frequency bin [B, L] (long), tonal mask [B, L])."""
    power = power + 1e-10
    flatness = power.log().mean(dim=1).exp() / power.mean(dim=1)  # [B, L]
    strongest, index = (filters @ power).max(dim=1)  # [B, L]
    return index, (flatness < FLATNESS_MAX) & (strongest > FAINT)


class LatentHead(nn.Module):
    """Posterior means [B, D, L] -> one output per log-frequency bin [B, bins, L]."""

    def __init__(self, latent_dim: int, bins: int, width: int = HEAD_WIDTH) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(latent_dim, width, 3, padding=1), nn.SiLU(),
            nn.Conv1d(width, width, 1), nn.SiLU(), nn.Conv1d(width, bins, 1),
        )  # fmt: skip

    def forward(self, mean: torch.Tensor) -> torch.Tensor:
        return self.net(mean)


class HeadLosses(NamedTuple):
    """The heads' losses (0-dim tensors; 0 for a head that is off)."""

    spectrum: torch.Tensor  # mean |predicted - target| of the log banded power
    pitch: torch.Tensor  # cross-entropy over the tonal frames (0 when there are none)


class LatentHeads(nn.Module):
    """The spectrum head and the pitch head of a VAE's latents (either may be off)."""

    def __init__(
        self, latent_dim: int, sample_rate: int, hop: int, spectrum: bool, pitch: bool
    ) -> None:
        super().__init__()
        check_hop(hop)
        self.hop = hop
        self.register_buffer("filters", log_frequency_filters(sample_rate), persistent=False)
        bins = self.filters.shape[0]
        self.spectrum = LatentHead(latent_dim, bins) if spectrum else None
        self.pitch = LatentHead(latent_dim, bins) if pitch else None

    def forward(self, audio: torch.Tensor, mean: torch.Tensor) -> HeadLosses:
        """audio [B, 1, N] and its posterior means [B, D, L] -> :class:`HeadLosses`."""
        zero = mean.new_zeros((), dtype=torch.float32)
        power = frame_power(audio, self.hop, mean.shape[-1])  # [B, F, L]
        mean = mean.float()
        spectrum = pitch = zero
        if self.spectrum is not None:
            target = spectrum_targets(power, self.filters)  # [B, bins, L]
            spectrum = (self.spectrum(mean) - target).abs().mean()
        if self.pitch is not None:
            index, tonal = pitch_targets(power, self.filters)  # [B, L], [B, L]
            ce = F.cross_entropy(self.pitch(mean), index, reduction="none")  # [B, L]
            # always through the head (all its parameters take part in every step), 0 when
            # no frame is tonal
            pitch = (ce * tonal).sum() / tonal.sum().clamp(min=1)
        return HeadLosses(spectrum, pitch)
