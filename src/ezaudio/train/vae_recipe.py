"""YAML recipes of ``ezaudio train-vae``: the Oobleck waveform VAE and its GAN losses.

Five sections (``model``, ``data``, ``optim``, ``loss``, ``run``); unknown keys are
refused by name and every problem is a one-line :class:`InvalidInputError`. The
defaults are the official 24 kHz VAE training settings (the ``training`` section of
the official ``config.json``, run by stable-audio-tools); ``recipes/vae-oobleck-24k.yaml``
spells them out and ``recipes/tiny-vae.yaml`` trains the tiny preset in minutes on a CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ezaudio.config import VAE_PRESETS, VAEConfig
from ezaudio.errors import InvalidInputError
from ezaudio.train.recipe import check_max_minutes, check_posterior_noise
from ezaudio.train.recipe_io import plain, read_recipe_yaml, section_from_dict


@dataclass
class VAEModelSection:
    """The VAE to train: a preset (plus overrides) or an existing VAE folder."""

    vae_preset: str = "oobleck-24k"
    vae_overrides: dict[str, Any] = field(default_factory=dict)  # VAEConfig fields
    # A VAE folder (config.json + model.safetensors) or a model folder (ezaudio.json):
    # its architecture and weights are the starting point; vae_preset is then ignored.
    init_from: str | None = None
    # Train the decoder alone (needs init_from): the encoder, and so the latent space that
    # a DiT was trained on, stays exactly as it was; only the reconstructions improve.
    freeze_encoder: bool = False
    # Scale of the posterior noise in the training forward: latent = mean + scale * std *
    # noise. 1 is the official sampling; 0 trains the decoder on posterior means (a decoder
    # for a DiT trained on means; see docs/training.md).
    posterior_noise: float = 1.0


@dataclass
class VAEDataSection:
    manifest: str = ""
    split: str = "train"
    # official sample_size 12000 samples at 24 kHz
    clip_seconds: float = 0.5
    num_workers: int = 0
    # stable-audio-tools' loader inverts the polarity of a clip with probability 0.5
    phase_flip_prob: float = 0.5
    # random crops drawn per clip, the loudest kept (1 = the official uniform crop; more
    # favour the events of sparse data over the pauses between them)
    crop_candidates: int = 1
    # clips for the reconstructions written every run.validate_every steps ("" = the
    # training split)
    validation_split: str = ""


@dataclass
class VAEOptimSection:
    """Two AdamW optimisers with InverseLR schedules; the networks update on alternate steps."""

    batch_size: int = 8  # stable-audio-tools' default; the official batch is not published
    grad_accum: int = 1
    max_steps: int = 1_000_000
    lr: float = 1.5e-4  # autoencoder
    disc_lr: float = 3e-4  # discriminator
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 1e-3
    # InverseLR: lr_n = lr * (1 - warmup^(n + 1)) * (1 + n / gamma)^-power, n = the
    # optimiser's own update count
    inverse_lr_gamma: float = 200_000.0
    inverse_lr_power: float = 0.5
    inverse_lr_warmup: float = 0.999
    mixed_precision: str = "no"  # no | bf16 | fp16
    max_grad_norm: float = 0.0  # 0 = no clipping (official)
    ema_decay: float | None = None  # official: no EMA
    head_lr: float = 1e-3  # the latent heads' learning rate (loss.latent_spectrum / _pitch)


@dataclass
class VAELossSection:
    """Loss weights and the spectral/discriminator resolutions (official values)."""

    kl: float = 1e-4
    mrstft: float = 1.0
    adversarial: float = 0.1
    feature_matching: float = 5.0
    l1: float = 0.0
    # steps of reconstruction-only training before the discriminator joins (0 = official)
    discriminator_start_step: int = 0
    # False: official mean |f_real - f_fake|; True: divided by mean |f_real| (EnCodec paper)
    feature_matching_normalize: bool = False
    perceptual_weighting: bool = True
    stft_fft_sizes: tuple[int, ...] = (1280, 640, 320, 160, 80, 40, 20)
    stft_hop_sizes: tuple[int, ...] = (320, 160, 80, 40, 20, 10, 5)
    stft_win_lengths: tuple[int, ...] = (1280, 640, 320, 160, 80, 40, 20)
    disc_filters: int = 64
    disc_n_ffts: tuple[int, ...] = (1280, 640, 320, 160, 80)
    disc_hop_lengths: tuple[int, ...] = (320, 160, 80, 40, 20)
    disc_win_lengths: tuple[int, ...] = (1280, 640, 320, 160, 80)
    # Not official (0 = off): auxiliary heads on the posterior means, see
    # ezaudio.train.latent_heads. L1 of a head predicting each latent frame's log-frequency
    # spectrum, and cross-entropy of a head classifying the pitch of its tonal frames.
    latent_spectrum: float = 0.0
    latent_pitch: float = 0.0
    # steps in which the heads learn from detached means (no gradient to the encoder yet)
    latent_head_warmup: int = 100

    @property
    def uses_discriminator(self) -> bool:
        return self.adversarial > 0 or self.feature_matching > 0

    @property
    def uses_latent_heads(self) -> bool:
        return self.latent_spectrum > 0 or self.latent_pitch > 0


@dataclass
class VAERunSection:
    output_dir: str = "runs/vae"
    seed: int = 0
    checkpoint_every: int = 10_000
    keep_last: int = 3
    log_every: int = 10
    validate_every: int = 0  # 0 = never (official demos: every 10000 steps)
    validation_clips: int = 4
    validation_seconds: float = 5.0
    max_minutes: float | None = None  # wall-clock budget of one invocation (see recipe.py)


@dataclass
class VAERecipe:
    """One VAE training run."""

    model: VAEModelSection = field(default_factory=VAEModelSection)
    data: VAEDataSection = field(default_factory=VAEDataSection)
    optim: VAEOptimSection = field(default_factory=VAEOptimSection)
    loss: VAELossSection = field(default_factory=VAELossSection)
    run: VAERunSection = field(default_factory=VAERunSection)

    def vae_config(self) -> VAEConfig | None:
        """The preset's config with the overrides (None when ``model.init_from`` decides)."""
        if self.model.init_from:
            return None
        config = VAE_PRESETS[self.model.vae_preset]
        overrides = {
            k: tuple(v) if isinstance(v, list) else v for k, v in self.model.vae_overrides.items()
        }
        try:
            return dataclasses.replace(config, **overrides)
        except (TypeError, ValueError) as error:  # InvalidInputError is a ValueError
            raise InvalidInputError(f"model.vae_overrides: {error}") from error

    def validate(self) -> VAERecipe:
        """Check every value; raise :class:`InvalidInputError` naming the field."""
        model, data, optim, loss, run = self.model, self.data, self.optim, self.loss, self.run
        if model.init_from:
            if model.vae_overrides:
                raise InvalidInputError(
                    "model.vae_overrides cannot change a VAE loaded with model.init_from"
                )
        elif model.vae_preset not in VAE_PRESETS:
            raise InvalidInputError(
                f"model.vae_preset: unknown VAE preset {model.vae_preset!r}; "
                f"known: {sorted(VAE_PRESETS)}"
            )
        if not isinstance(model.vae_overrides, dict):
            raise InvalidInputError("model.vae_overrides must be a mapping of VAEConfig fields")
        bad = sorted(set(model.vae_overrides) - {f.name for f in dataclasses.fields(VAEConfig)})
        if bad:
            raise InvalidInputError(f"model.vae_overrides: unknown VAE config keys {bad}")
        if not model.init_from:
            self.vae_config()  # the overrides must build a valid config
        if not isinstance(model.freeze_encoder, bool):
            raise InvalidInputError("model.freeze_encoder must be true or false")
        check_posterior_noise(model.posterior_noise, "model.posterior_noise")
        if model.freeze_encoder and not model.init_from:
            raise InvalidInputError(
                "model.freeze_encoder needs model.init_from (the VAE whose encoder to keep)"
            )
        if not data.manifest:
            raise InvalidInputError("data.manifest must name a manifest file")
        positive = {
            "optim.batch_size": optim.batch_size,
            "optim.grad_accum": optim.grad_accum,
            "optim.max_steps": optim.max_steps,
            "loss.disc_filters": loss.disc_filters,
            "run.checkpoint_every": run.checkpoint_every,
            "run.keep_last": run.keep_last,
            "run.log_every": run.log_every,
        }
        for name, value in positive.items():
            _integer(name, value, low=1)
        _integer("data.num_workers", data.num_workers, low=0)
        _integer("data.crop_candidates", data.crop_candidates, low=1)
        _integer("loss.discriminator_start_step", loss.discriminator_start_step, low=0)
        _integer("loss.latent_head_warmup", loss.latent_head_warmup, low=0)
        _integer("run.seed", run.seed, low=0)
        _integer("run.validate_every", run.validate_every, low=0)
        _integer("run.validation_clips", run.validation_clips, low=0)
        for section, name in (
            ("data", "clip_seconds"), ("data", "phase_flip_prob"), ("optim", "lr"),
            ("optim", "disc_lr"), ("optim", "weight_decay"), ("optim", "inverse_lr_gamma"),
            ("optim", "inverse_lr_power"), ("optim", "inverse_lr_warmup"),
            ("optim", "max_grad_norm"), ("loss", "kl"), ("loss", "mrstft"),
            ("loss", "adversarial"), ("loss", "feature_matching"), ("loss", "l1"),
            ("loss", "latent_spectrum"), ("loss", "latent_pitch"), ("optim", "head_lr"),
            ("run", "validation_seconds"),
        ):  # fmt: skip
            _coerce_number(getattr(self, section), section, name)
        if optim.ema_decay is not None:
            _coerce_number(optim, "optim", "ema_decay")
            if not 0 <= optim.ema_decay < 1:
                raise InvalidInputError("optim.ema_decay must be in [0, 1) or null (no EMA)")
        betas = optim.betas
        if (
            not isinstance(betas, tuple)
            or len(betas) != 2
            or not all(_is_number(b) and 0 <= b < 1 for b in betas)
        ):
            raise InvalidInputError(f"optim.betas must be two numbers in [0, 1), got {optim.betas}")
        if not data.clip_seconds > 0:
            raise InvalidInputError("data.clip_seconds must be positive")
        if not run.validation_seconds > 0:
            raise InvalidInputError("run.validation_seconds must be positive")
        if not 0 <= data.phase_flip_prob <= 1:
            raise InvalidInputError("data.phase_flip_prob must be in [0, 1]")
        for name in ("lr", "disc_lr", "head_lr", "inverse_lr_gamma"):
            if not getattr(optim, name) > 0:
                raise InvalidInputError(f"optim.{name} must be positive")
        if not 0 <= optim.inverse_lr_warmup < 1:
            raise InvalidInputError("optim.inverse_lr_warmup must be in [0, 1)")
        for name in ("weight_decay", "inverse_lr_power", "max_grad_norm"):
            if getattr(optim, name) < 0:
                raise InvalidInputError(f"optim.{name} must be >= 0")
        if optim.mixed_precision is False:  # YAML reads a bare `no` as false
            optim.mixed_precision = "no"
        if optim.mixed_precision not in ("no", "bf16", "fp16"):
            raise InvalidInputError("optim.mixed_precision must be no, bf16 or fp16")
        for name in ("kl", "mrstft", "adversarial", "feature_matching", "l1", "latent_spectrum",
                     "latent_pitch"):  # fmt: skip
            if getattr(loss, name) < 0:
                raise InvalidInputError(f"loss.{name} must be >= 0")
        if model.freeze_encoder and loss.uses_latent_heads:
            raise InvalidInputError(
                "loss.latent_spectrum and loss.latent_pitch teach the encoder; they must be 0 "
                "with model.freeze_encoder"
            )
        if not isinstance(loss.feature_matching_normalize, bool):
            raise InvalidInputError("loss.feature_matching_normalize must be true or false")
        if not isinstance(loss.perceptual_weighting, bool):
            raise InvalidInputError("loss.perceptual_weighting must be true or false")
        _resolutions("loss.stft", loss.stft_fft_sizes, loss.stft_hop_sizes, loss.stft_win_lengths)
        _resolutions("loss.disc", loss.disc_n_ffts, loss.disc_hop_lengths, loss.disc_win_lengths)
        check_max_minutes(run.max_minutes)
        return self

    def warnings(self) -> list[str]:
        """Valid settings that are likely a mistake, one line each (printed by the CLI)."""
        found = []
        if self.model.posterior_noise == 0 and not self.model.freeze_encoder:
            found.append(
                "model.posterior_noise is 0 while the encoder trains: nothing ties the "
                "posterior std to the audio, so the exported VAE is only usable through its "
                "means (a DiT on its latents needs data.posterior_noise: 0)"
            )
        return found

    def check_audio_length(self, sample_rate: int, usable: Callable[[int], int]) -> int:
        """Samples per training clip; refuse clips too short for the VAE or an STFT.

        ``usable(n)``: how many samples of an n-sample clip the losses compare (the
        decoder may return fewer than it was given).
        """
        samples = round(self.data.clip_seconds * sample_rate)
        kept = usable(samples) if samples > 0 else 0
        needed = {"the largest MR-STFT resolution": max(self.loss.stft_fft_sizes) // 2 + 1}
        if self.loss.uses_discriminator:
            needed["the largest discriminator STFT"] = max(self.loss.disc_n_ffts)
        for what, count in needed.items():
            if kept < count:
                raise InvalidInputError(
                    f"data.clip_seconds {self.data.clip_seconds} gives {samples} samples at "
                    f"{sample_rate} Hz ({kept} after decoding), fewer than the {count} of {what}"
                )
        return samples


_SECTIONS = {
    "model": VAEModelSection,
    "data": VAEDataSection,
    "optim": VAEOptimSection,
    "loss": VAELossSection,
    "run": VAERunSection,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerce_number(section: Any, prefix: str, name: str) -> None:
    """Accept numbers; turn numeric strings (YAML reads ``1e-4`` as text) into floats."""
    value = getattr(section, name)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidInputError(f"{prefix}.{name} must be a number, got {value!r}") from None
        setattr(section, name, value)
    if not _is_number(value) or not math.isfinite(value):
        raise InvalidInputError(f"{prefix}.{name} must be a finite number, got {value!r}")


def _integer(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise InvalidInputError(f"{name} must be {kind}, got {value!r}")


def _resolutions(prefix: str, ffts: Any, hops: Any, wins: Any) -> None:
    names = ("fft_sizes", "hop_sizes", "win_lengths") if prefix.endswith("stft") else (
        "n_ffts", "hop_lengths", "win_lengths")  # fmt: skip
    lists = (ffts, hops, wins)
    for name, values in zip(names, lists):
        if not isinstance(values, tuple) or not values:
            raise InvalidInputError(f"{prefix}_{name} must be a non-empty list of integers")
        for value in values:
            _integer(f"{prefix}_{name}", value, low=1)
    if not len(ffts) == len(hops) == len(wins):
        raise InvalidInputError(f"{prefix}_{'/'.join(names)} must have the same length")
    if any(w > n for w, n in zip(wins, ffts)):
        raise InvalidInputError(f"{prefix}_{names[2]}: every window must be at most its FFT size")


def vae_recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> VAERecipe:
    """Build a :class:`VAERecipe` from nested dicts, refusing unknown sections and keys."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise InvalidInputError(f"{where}: unknown sections {unknown}")
    sections = {
        name: section_from_dict(cls, data.get(name), name, where) for name, cls in _SECTIONS.items()
    }
    return VAERecipe(**sections)


def vae_recipe_to_dict(recipe: VAERecipe) -> dict[str, Any]:
    """Recipe -> nested plain dicts (tuples as lists), ready for YAML or JSON."""
    return plain(recipe)


def load_vae_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> VAERecipe:
    """Read a YAML VAE recipe; ``overrides`` are ``section.key=value`` strings (YAML values)."""
    data = read_recipe_yaml(path, overrides)
    return vae_recipe_from_dict(data, where=str(path)).validate()
