"""Dataclass configs of the networks and the named presets.

A config is what ``config.json`` of a component folder holds. Presets are the
paper's sizes (``ezaudio-l``, ``ezaudio-xl``), the ablation baselines of the
paper's Fig. 2 at EzAudio-L size, and a tiny size for tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ezaudio.errors import InvalidInputError

TIME_FUSIONS = ("ada_sola_bias", "ada_sola", "ada_single", "ada", "token")
NORMS = ("layernorm", "rmsnorm")
QK_NORMS = ("layernorm", "rmsnorm", "none")
ACTIVATIONS = ("geglu", "gelu", "gelu-approximate")


@dataclass(frozen=True)
class DiTConfig:
    """EzAudio-DiT hyper-parameters (official ``model`` section, renamed).

    ``latent_channels`` is the VAE latent width (official ``out_chans``); with
    ``masked_modelling`` the input is [noisy | known | mask] = 2C + 1 channels.
    ``depth`` counts the in/out blocks as the official code does: depth // 2
    in-blocks, one middle block and depth // 2 out-blocks.
    """

    latent_channels: int = 128
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: int = 1
    qkv_bias: bool = False
    qk_norm: str = "layernorm"
    norm: str = "layernorm"
    activation: str = "geglu"
    context_dim: int | None = 1024
    context_norm: bool = True
    time_fusion: str = "ada_sola_bias"
    ada_sola_rank: int | None = 32
    ada_sola_alpha: float | None = 32
    rope: bool = True
    long_skip: bool = True
    skip_norm: bool = True
    final_conv: bool = True
    masked_modelling: bool = True
    # Absolute position embedding length (0 = none, the official setting).
    abs_pos_length: int = 0
    # Masked-modelling training settings, kept with the weights (paper II-C-1).
    mask_ratio: tuple[float, float] = (0.25, 1.0)
    mask_span: int = 10
    mask_prob: float = 0.25

    def __post_init__(self) -> None:
        _choice("time_fusion", self.time_fusion, TIME_FUSIONS)
        _choice("norm", self.norm, NORMS)
        _choice("qk_norm", self.qk_norm, QK_NORMS)
        _choice("activation", self.activation, ACTIVATIONS)
        if self.embed_dim % self.num_heads:
            raise InvalidInputError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.rope and (self.embed_dim // self.num_heads) % 2:
            raise InvalidInputError("RoPE needs an even head dimension")
        if self.time_fusion in ("ada_sola", "ada_sola_bias") and not self.ada_sola_rank:
            raise InvalidInputError(f"time_fusion {self.time_fusion!r} needs ada_sola_rank")
        if self.depth < 1 or self.latent_channels < 1 or self.patch_size < 1:
            raise InvalidInputError("depth, latent_channels and patch_size must be positive")

    @property
    def in_channels(self) -> int:
        """Input channels of the patch embedding."""
        return 2 * self.latent_channels + 1 if self.masked_modelling else self.latent_channels

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


@dataclass(frozen=True)
class VAEConfig:
    """Oobleck waveform VAE (stable-audio-tools layout, VAE bottleneck).

    ``latent_dim`` is the latent width; the encoder emits 2 x latent_dim
    (mean and pre-softplus scale). Hop size = prod(strides) samples per frame.
    """

    sample_rate: int = 24000
    audio_channels: int = 1
    channels: int = 128
    c_mults: tuple[int, ...] = (1, 2, 4, 8)
    strides: tuple[int, ...] = (2, 4, 6, 10)
    latent_dim: int = 128
    use_snake: bool = True
    final_tanh: bool = False

    def __post_init__(self) -> None:
        if len(self.c_mults) != len(self.strides):
            raise InvalidInputError("c_mults and strides must have the same length")
        if min(self.strides, default=1) < 1 or self.channels < 1 or self.latent_dim < 1:
            raise InvalidInputError("strides, channels and latent_dim must be positive")

    @property
    def hop_length(self) -> int:
        """Waveform samples per latent frame."""
        hop = 1
        for stride in self.strides:
            hop *= stride
        return hop

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (Hz)."""
        return self.sample_rate / self.hop_length


@dataclass(frozen=True)
class SchedulerConfig:
    """Noise schedule and DDIM settings (official ``diff`` section)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    rescale_betas_zero_snr: bool = True
    prediction_type: str = "v_prediction"
    timestep_spacing: str = "trailing"

    def __post_init__(self) -> None:
        _choice("beta_schedule", self.beta_schedule, ("scaled_linear", "linear"))
        _choice("prediction_type", self.prediction_type, ("v_prediction", "epsilon"))
        _choice("timestep_spacing", self.timestep_spacing, ("trailing", "leading", "linspace"))


@dataclass(frozen=True)
class SamplingDefaults:
    """Defaults of :meth:`ezaudio.EzAudio.generate` stored with a model."""

    seconds: float = 10.0
    steps: int = 100
    guidance_scale: float = 5.0
    guidance_rescale: float = 0.75
    eta: float = 1.0
    edit_guidance_scale: float = 3.5
    edit_guidance_rescale: float = 0.0
    boundary: float = 2.0


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidInputError(f"{name} must be one of {list(allowed)}, got {value!r}")


# Named DiT sizes. EzAudio-L/XL follow the official yml files; the baselines
# (paper Fig. 2) are the same code with the AdaLN or skip design swapped.
DIT_PRESETS: dict[str, DiTConfig] = {
    "ezaudio-l": DiTConfig(
        embed_dim=1024,
        depth=24,
        num_heads=16,
        ada_sola_rank=32,
        ada_sola_alpha=32,
        context_dim=1024,
    ),
    "ezaudio-xl": DiTConfig(
        embed_dim=1152,
        depth=28,
        num_heads=16,
        ada_sola_rank=36,
        ada_sola_alpha=36,
        context_dim=2048,
    ),
    "tiny": DiTConfig(
        latent_channels=8,
        embed_dim=64,
        depth=4,
        num_heads=4,
        ada_sola_rank=4,
        ada_sola_alpha=4,
        context_dim=32,
    ),
    # The shipped offline default (docs/results.md): 14.8 M parameters over the 25 Hz x 32
    # latents of the "oobleck-16k" VAE, text through the offline MiniLM (384-dim states).
    "ezaudio-s": DiTConfig(
        latent_channels=32,
        embed_dim=256,
        depth=8,
        num_heads=4,
        ada_sola_rank=16,
        ada_sola_alpha=16,
        context_dim=384,
    ),
}
_L = DIT_PRESETS["ezaudio-l"]
_S = DIT_PRESETS["ezaudio-s"]
_NO_SOLA = {"ada_sola_rank": None, "ada_sola_alpha": None, "long_skip": False, "skip_norm": False}
DIT_PRESETS.update(
    {
        # Fig. 2 in miniature (docs/results.md): the baselines at the size of ezaudio-s.
        "crossdit-s": dataclasses.replace(_S, time_fusion="ada", **_NO_SOLA),
        "pixart-s": dataclasses.replace(_S, time_fusion="ada_single", **_NO_SOLA),
        # DiT-style cross-attention model with a full AdaLN-Zero in every block.
        "crossdit-l": dataclasses.replace(
            _L,
            time_fusion="ada",
            ada_sola_rank=None,
            ada_sola_alpha=None,
            long_skip=False,
            skip_norm=False,
        ),
        # PixArt-alpha AdaLN-single: one shared AdaLN plus a per-block bias table.
        "pixart-l": dataclasses.replace(
            _L,
            time_fusion="ada_single",
            ada_sola_rank=None,
            ada_sola_alpha=None,
            long_skip=False,
            skip_norm=False,
        ),
        # Stable-Audio-DiT style: timestep as a prepended token, RoPE, QK-norm,
        # no long skips.
        "stable-audio-dit-l": dataclasses.replace(
            _L,
            time_fusion="token",
            ada_sola_rank=None,
            ada_sola_alpha=None,
            long_skip=False,
            skip_norm=False,
        ),
    }
)

VAE_PRESETS: dict[str, VAEConfig] = {
    "oobleck-24k": VAEConfig(),
    "tiny": VAEConfig(
        sample_rate=16000, channels=16, c_mults=(1, 2, 4), strides=(2, 4, 5), latent_dim=8
    ),
    # The shipped offline default's VAE: 16 kHz, 640x down-sampling (25 latent frames per
    # second), 32 latent channels, 2.8 M parameters.
    "oobleck-16k": VAEConfig(
        sample_rate=16000, channels=32, c_mults=(1, 2, 4, 8), strides=(2, 4, 8, 10), latent_dim=32
    ),
}

# Text encoders that pair with each preset (hub id, max length, hidden size).
TEXT_ENCODER_FOR_PRESET: dict[str, str] = {
    "ezaudio-l": "google/flan-t5-large",
    "ezaudio-xl": "google/flan-t5-xl",
}


def dit_preset(name: str) -> DiTConfig:
    """Look a DiT preset up by name, with the known names in the error."""
    try:
        return DIT_PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown DiT preset {name!r}; known: {sorted(DIT_PRESETS)}"
        ) from None


def vae_preset(name: str) -> VAEConfig:
    """Look a VAE preset up by name."""
    try:
        return VAE_PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown VAE preset {name!r}; known: {sorted(VAE_PRESETS)}"
        ) from None


__all__ = [
    "DIT_PRESETS",
    "VAE_PRESETS",
    "DiTConfig",
    "SamplingDefaults",
    "SchedulerConfig",
    "VAEConfig",
    "dit_preset",
    "vae_preset",
]
