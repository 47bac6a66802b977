"""Training recipes as YAML: the paper's three stages (II-C) and their hyper-parameters.

A recipe has five sections (``model``, ``data``, ``optim``, ``masking``,
``run``) plus ``stage``; unknown keys are refused by name so a typo never
silently trains something else. ``recipes/`` holds the paper's settings for
EzAudio-L/XL and a tiny recipe that trains in minutes on a CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ezaudio.errors import InvalidInputError
from ezaudio.train.recipe_io import plain, read_recipe_yaml, section_from_dict


@dataclass
class ModelSection:
    """What is trained and what stays frozen."""

    dit_preset: str = "tiny"
    dit_overrides: dict[str, Any] = field(default_factory=dict)
    vae: str = ""  # folder of a trained WaveformVAE (frozen)
    text_encoder: str = "minilm"  # stages 2-3 (frozen)
    init_from: str | None = None  # a training checkpoint or a model folder


@dataclass
class DataSection:
    manifest: str = ""  # raw audio (a CSV/JSONL manifest); not needed when latents is set
    latents: str = ""  # a latent cache folder (`ezaudio data encode`); used instead of manifest
    split: str = "train"
    clip_seconds: float = 10.0
    num_workers: int = 0
    cache_text: bool = False  # keep each caption's text states in memory after first use
    # Scale of the posterior noise in the training latents: mean + scale * std * noise.
    # 1 is the official sampling; 0 trains on posterior means (with a decoder trained on
    # means, train-vae's model.posterior_noise = 0). Stored in the exported model's
    # ezaudio.json, so that EzAudio.edit encodes its input the same way.
    posterior_noise: float = 1.0


@dataclass
class OptimSection:
    """AdamW and the learning-rate schedule (paper: AdamW, batch 128)."""

    batch_size: int = 128
    grad_accum: int = 1
    max_steps: int = 100_000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"  # constant | cosine | linear (after warm-up)
    max_grad_norm: float = 1.0
    ema_decay: float = 0.999
    mixed_precision: str = "no"  # no | bf16 | fp16
    gradient_checkpointing: bool = False
    min_snr_gamma: float | None = None
    # Frame weights 1 + activity_weight * min(d / activity_scale, 1), d a latent frame's
    # distance from its clip's median frame (not in the paper; 0: off). See docs/training.md.
    activity_weight: float = 0.0
    activity_scale: float = 4.0


@dataclass
class MaskingSection:
    """Masked diffusion modelling (paper II-C-1) and caption dropout for CFG."""

    ratio: tuple[float, float] = (0.25, 1.0)
    span: int = 10
    full_mask_prob: float = 0.75  # share of samples generated from nothing (text-to-audio)
    caption_drop_prob: float = 0.1  # share of captions replaced by "" (stages 2-3)


@dataclass
class RunSection:
    output_dir: str = "runs/ezaudio"
    seed: int = 0
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    validate_every: int = 0  # 0 = never
    validation_prompts: tuple[str, ...] = ("a dog barks",)
    validation_seconds: float = 5.0
    validation_steps: int = 25
    distributed: str = "ddp"  # ddp | fsdp (FSDP2 via accelerate; GPUs only)
    # Wall-clock budget of one invocation: at the first step past it the run writes a
    # checkpoint and ends (and exports) as if max_steps were reached; --resume goes on.
    max_minutes: float | None = None


@dataclass
class Recipe:
    """One training run: stage 1 (masked pre-training, no text), 2 (text alignment) or 3."""

    stage: int = 1
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    masking: MaskingSection = field(default_factory=MaskingSection)
    run: RunSection = field(default_factory=RunSection)

    def validate(self) -> Recipe:
        """Check values; raise :class:`InvalidInputError` naming the field."""
        if self.stage not in (1, 2, 3):
            raise InvalidInputError(f"stage must be 1, 2 or 3, got {self.stage!r}")
        if not self.model.vae:
            raise InvalidInputError("model.vae must name a trained VAE folder")
        if not self.data.manifest and not self.data.latents:
            raise InvalidInputError(
                "data.manifest must name a manifest file (or data.latents a latent cache folder)"
            )
        if self.stage > 1 and not self.model.text_encoder:
            raise InvalidInputError(f"stage {self.stage} needs model.text_encoder")
        positive = {
            "optim.batch_size": self.optim.batch_size,
            "optim.grad_accum": self.optim.grad_accum,
            "optim.max_steps": self.optim.max_steps,
            "run.checkpoint_every": self.run.checkpoint_every,
            "run.keep_last": self.run.keep_last,
            "run.log_every": self.run.log_every,
            "masking.span": self.masking.span,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if not self.optim.lr > 0:
            raise InvalidInputError(f"optim.lr must be positive, got {self.optim.lr!r}")
        if self.optim.schedule not in ("constant", "cosine", "linear"):
            raise InvalidInputError("optim.schedule must be constant, cosine or linear")
        if self.optim.mixed_precision is False:  # YAML reads an unquoted `no` as false
            self.optim.mixed_precision = "no"
        if self.optim.mixed_precision not in ("no", "bf16", "fp16"):
            raise InvalidInputError("optim.mixed_precision must be no, bf16 or fp16")
        if self.run.distributed not in ("ddp", "fsdp"):
            raise InvalidInputError("run.distributed must be ddp or fsdp")
        if not 0 <= self.optim.ema_decay < 1:
            raise InvalidInputError("optim.ema_decay must be in [0, 1)")
        low, high = self.masking.ratio
        if not 0 <= low <= high <= 1:
            raise InvalidInputError(
                f"masking.ratio must satisfy 0 <= low <= high <= 1, got {low}, {high}"
            )
        for name in ("full_mask_prob", "caption_drop_prob"):
            value = getattr(self.masking, name)
            if not 0 <= value <= 1:
                raise InvalidInputError(f"masking.{name} must be in [0, 1], got {value}")
        if self.data.clip_seconds <= 0:
            raise InvalidInputError("data.clip_seconds must be positive")
        check_posterior_noise(self.data.posterior_noise, "data.posterior_noise")
        weight, scale = self.optim.activity_weight, self.optim.activity_scale
        if not _is_real(weight) or not weight >= 0:
            raise InvalidInputError(f"optim.activity_weight must be a number >= 0, got {weight!r}")
        if not _is_real(scale) or not scale > 0:
            raise InvalidInputError(
                f"optim.activity_scale must be a positive number, got {scale!r}"
            )
        check_max_minutes(self.run.max_minutes)
        return self


def _is_real(value: object) -> bool:
    """An int or float, not a bool (YAML's true/false)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_posterior_noise(value: float, name: str) -> None:
    """A posterior-noise scale (``name`` in the recipe): a number from 0 to 1."""
    if not _is_real(value) or not 0 <= value <= 1:
        raise InvalidInputError(f"{name} must be a number from 0 to 1, got {value!r}")


def check_max_minutes(value: float | None) -> None:
    """``run.max_minutes``: None (no limit) or a positive number of minutes."""
    if value is None:
        return
    if not _is_real(value) or not value > 0:
        raise InvalidInputError(f"run.max_minutes must be a positive number, got {value!r}")


_SECTIONS = {
    "model": ModelSection,
    "data": DataSection,
    "optim": OptimSection,
    "masking": MaskingSection,
    "run": RunSection,
}


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from nested dicts, refusing unknown keys by name."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - {"stage", *_SECTIONS})
    if unknown:
        raise InvalidInputError(f"{where}: unknown sections {unknown}")
    sections = {
        name: section_from_dict(cls, data.get(name), name, where) for name, cls in _SECTIONS.items()
    }
    return Recipe(stage=data.get("stage", 1), **sections)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Recipe -> nested plain dicts (tuples as lists), ready for YAML or JSON."""
    return plain(recipe)


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe; ``overrides`` are ``section.key=value`` strings (YAML values)."""
    return recipe_from_dict(read_recipe_yaml(path, overrides), where=str(path)).validate()
