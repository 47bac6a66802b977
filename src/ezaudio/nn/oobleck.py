"""Oobleck waveform VAE, the autoencoder EzAudio runs its diffusion in.

The layout follows the stable-audio-tools ``OobleckEncoder`` /
``OobleckDecoder`` pair with a VAE bottleneck, so that ``state_dict()`` keys are
those of the official checkpoints without their ``autoencoder.`` prefix:
weight-normalised convolutions hold ``weight_g``/``weight_v``/``bias`` and
SnakeBeta activations hold log-scale ``alpha``/``beta``.

Audio is [B, C, N] (C = ``audio_channels``); latents are [B, latent_dim, L] with
L ~ N / hop_length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ezaudio.config import VAEConfig
from ezaudio.errors import InvalidInputError
from ezaudio.nn.component import Component

RESIDUAL_DILATIONS = (1, 3, 9)
RESIDUAL_KERNEL = 7
STD_FLOOR = 1e-4
SNAKE_EPS = 1e-9


# Weight normalisation (Salimans & Kingma, 2016): w = g * v / ||v||, the norm
# taken over every dim but 0 (torch.nn.utils.weight_norm with dim=0).
def weight_norm_weight(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """Rebuild a weight from its magnitude ``g`` [D0, 1, ...] and direction ``v`` [D0, ...]."""
    dims = tuple(range(1, weight_v.dim()))
    return weight_v * (weight_g / weight_v.norm(p=2, dim=dims, keepdim=True))


class _WeightNormConv(nn.Module):
    """Shared parameters of a weight-normalised 1-D (transposed) convolution."""

    def __init__(
        self, weight_shape: tuple[int, int, int], out_channels: int, fan_in: int, bias: bool
    ) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(weight_shape))  # [D0, D1, K]
        self.weight_g = nn.Parameter(torch.empty(weight_shape[0], 1, 1))  # [D0, 1, 1]
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None  # [out]
        self._fan_in = fan_in
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default conv init for ``v`` and ``bias``; ``g`` = ||v|| so w = v at start."""
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))
        with torch.no_grad():
            dims = tuple(range(1, self.weight_v.dim()))
            self.weight_g.copy_(self.weight_v.norm(p=2, dim=dims, keepdim=True))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self._fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> torch.Tensor:
        """The effective convolution weight g * v / ||v||."""
        return weight_norm_weight(self.weight_g, self.weight_v)


class WNConv1d(_WeightNormConv):
    """Weight-normalised ``Conv1d``; weight [out, in, k], ``weight_g`` [out, 1, 1]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        shape = (out_channels, in_channels, kernel_size)
        super().__init__(shape, out_channels, in_channels * kernel_size, bias)
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, in, T] -> [B, out, T']
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


class WNConvTranspose1d(_WeightNormConv):
    """Weight-normalised ``ConvTranspose1d``; weight [in, out, k], ``weight_g`` [in, 1, 1].

    As with ``torch.nn.utils.weight_norm(dim=0)``, the norm is per *input*
    channel, since dim 0 of a transposed-conv weight is the input channel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        # torch computes the default-init fan-in of a transposed conv from weight dim 1.
        shape = (in_channels, out_channels, kernel_size)
        super().__init__(shape, out_channels, out_channels * kernel_size, bias)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, in, T] -> [B, out, T']
        return F.conv_transpose1d(x, self.weight, self.bias, self.stride, self.padding)


# SnakeBeta (BigVGAN, Lee et al. 2023): x + 1/beta * sin^2(alpha x), alpha and
# beta per channel and stored as logarithms.
def snake_beta(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """SnakeBeta on x [B, C, T] with linear-scale ``alpha``, ``beta`` [1, C, 1]."""
    return x + (1.0 / (beta + SNAKE_EPS)) * torch.sin(x * alpha).pow(2)


class SnakeBeta(nn.Module):
    """Periodic activation with log-scale per-channel ``alpha`` (frequency) and ``beta`` (scale)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # zeros in log scale = alpha = beta = 1
        self.alpha = nn.Parameter(torch.zeros(channels))  # [C]
        self.beta = nn.Parameter(torch.zeros(channels))  # [C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.exp()[None, :, None]  # [1, C, 1]
        beta = self.beta.exp()[None, :, None]  # [1, C, 1]
        return snake_beta(x, alpha, beta)


def activation(channels: int, use_snake: bool) -> nn.Module:
    """SnakeBeta over ``channels`` when ``use_snake``, else ELU."""
    return SnakeBeta(channels) if use_snake else nn.ELU()


class ResidualUnit(nn.Module):
    """x + conv1x1(act(conv7_dilated(act(x)))), length preserving."""

    def __init__(self, channels: int, dilation: int, use_snake: bool) -> None:
        super().__init__()
        padding = dilation * (RESIDUAL_KERNEL - 1) // 2
        self.layers = nn.Sequential(
            activation(channels, use_snake),
            WNConv1d(channels, channels, RESIDUAL_KERNEL, dilation=dilation, padding=padding),
            activation(channels, use_snake),
            WNConv1d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)  # [B, C, T]


def residual_units(channels: int, use_snake: bool) -> list[nn.Module]:
    """The three residual units (dilations 1, 3, 9) of every encoder/decoder block."""
    return [ResidualUnit(channels, d, use_snake) for d in RESIDUAL_DILATIONS]


class EncoderBlock(nn.Module):
    """3 residual units, activation, strided conv (k = 2 stride).

    [B, in, T] -> [B, out, ~T / stride]
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, use_snake: bool) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *residual_units(in_channels, use_snake),
            activation(in_channels, use_snake),
            WNConv1d(
                in_channels,
                out_channels,
                kernel_size=2 * stride,
                stride=stride,
                padding=math.ceil(stride / 2),
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DecoderBlock(nn.Module):
    """Activation, transposed conv (k = 2 stride), 3 residual units.

    [B, in, T] -> [B, out, ~T * stride]
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, use_snake: bool) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            activation(in_channels, use_snake),
            WNConvTranspose1d(
                in_channels,
                out_channels,
                kernel_size=2 * stride,
                stride=stride,
                padding=math.ceil(stride / 2),
            ),
            *residual_units(out_channels, use_snake),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _block_widths(config: VAEConfig) -> list[int]:
    """Channel widths between stages: [channels, c_mults[0] * channels, ...]."""
    return [config.channels * m for m in (1, *config.c_mults)]


class OobleckEncoder(nn.Module):
    """Audio [B, audio_channels, N] -> [B, 2 * latent_dim, L] (mean and pre-softplus scale)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = _block_widths(config)
        self.layers = nn.Sequential(
            WNConv1d(config.audio_channels, widths[0], kernel_size=7, padding=3),
            *(
                EncoderBlock(widths[i], widths[i + 1], stride, config.use_snake)
                for i, stride in enumerate(config.strides)
            ),
            activation(widths[-1], config.use_snake),
            WNConv1d(widths[-1], 2 * config.latent_dim, kernel_size=3, padding=1),
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.layers(audio)


class OobleckDecoder(nn.Module):
    """Latents [B, latent_dim, L] -> audio [B, audio_channels, N']."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = _block_widths(config)
        blocks = [
            DecoderBlock(widths[i + 1], widths[i], config.strides[i], config.use_snake)
            for i in reversed(range(len(config.strides)))
        ]
        self.layers = nn.Sequential(
            WNConv1d(config.latent_dim, widths[-1], kernel_size=7, padding=3),
            *blocks,
            activation(widths[0], config.use_snake),
            WNConv1d(widths[0], config.audio_channels, kernel_size=7, padding=3, bias=False),
            nn.Tanh() if config.final_tanh else nn.Identity(),
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.layers(latents)


# VAE prior term (Kingma & Welling, 2014) as stable-audio-tools writes it:
# KL = sum_c (mu^2 + sigma^2 - log sigma^2 - 1), averaged over batch and frames
# (twice the textbook KL, kept for parity with the official training loss).
def vae_kl(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Official Oobleck KL term of ``mean``, ``std`` [B, latent_dim, L] -> scalar."""
    var = std * std
    return (mean * mean + var - var.log() - 1).sum(dim=1).mean()


class WaveformVAE(Component):
    """Oobleck encoder + VAE bottleneck + Oobleck decoder (EzAudio's 24 kHz waveform VAE)."""

    config_class = VAEConfig
    config: VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.encoder = OobleckEncoder(config)
        self.decoder = OobleckDecoder(config)

    @property
    def sample_rate(self) -> int:
        """Audio sample rate in Hz."""
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame (product of the strides)."""
        return self.config.hop_length

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.config.latent_rate

    @property
    def latent_dim(self) -> int:
        """Latent channels."""
        return self.config.latent_dim

    def encoder_output(self, audio: torch.Tensor) -> torch.Tensor:
        """Raw encoder output: audio [B, C, N] -> [B, 2 * latent_dim, L] (mean | scale)."""
        self._check_audio(audio)
        return self.encoder(audio)

    def encode_distribution(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of audio [B, C, N]: (mean, std), each [B, latent_dim, L].

        std = softplus(scale) + 1e-4, as the official VAE bottleneck computes it.
        """
        mean, scale = self.encoder_output(audio).chunk(2, dim=1)
        return mean, F.softplus(scale) + STD_FLOOR

    def encode(
        self,
        audio: torch.Tensor,
        sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Audio [B, C, N] -> latents [B, latent_dim, L].

        With ``sample`` the latents are mean + std * noise (noise from
        ``torch.randn`` with ``generator``); otherwise the posterior mean.
        """
        mean, std = self.encode_distribution(audio)
        if not sample:
            return mean
        noise = torch.randn(
            mean.shape, generator=generator, device=mean.device, dtype=mean.dtype
        )  # [B, latent_dim, L]
        return mean + std * noise

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, latent_dim, L] -> audio [B, C, N'] (N' = L * hop_length for even strides)."""
        if latents.dim() != 3 or latents.shape[1] != self.latent_dim:
            raise InvalidInputError(
                f"latents must be [batch, {self.latent_dim}, frames], got {list(latents.shape)}"
            )
        return self.decoder(latents)

    def forward(
        self, audio: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled reconstruction of audio [B, C, N] and the KL term: ([B, C, N'], scalar)."""
        mean, std = self.encode_distribution(audio)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.decoder(mean + std * noise), vae_kl(mean, std)

    def _check_audio(self, audio: torch.Tensor) -> None:
        channels = self.config.audio_channels
        if audio.dim() != 3 or audio.shape[1] != channels:
            raise InvalidInputError(
                f"audio must be [batch, {channels}, samples], got {list(audio.shape)}"
            )
        if audio.shape[-1] < self.hop_length:
            raise InvalidInputError(
                f"audio needs at least {self.hop_length} samples (one latent frame), "
                f"got {audio.shape[-1]}"
            )


__all__ = [
    "DecoderBlock",
    "EncoderBlock",
    "OobleckDecoder",
    "OobleckEncoder",
    "ResidualUnit",
    "SnakeBeta",
    "WNConv1d",
    "WNConvTranspose1d",
    "WaveformVAE",
    "snake_beta",
    "vae_kl",
    "weight_norm_weight",
]
