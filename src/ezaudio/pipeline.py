"""``EzAudio``: text-to-audio generation and editing (DiT + waveform VAE + text encoder)."""

from __future__ import annotations

import math
import numbers
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ezaudio.config import SamplingDefaults, SchedulerConfig
from ezaudio.data.audio import read_audio, resample
from ezaudio.diffusion import NoiseSchedule, ddim_sample, guide
from ezaudio.errors import AudioFileError, CheckpointError, InvalidInputError
from ezaudio.model_folder import ModelIndex, read_index, write_index
from ezaudio.nn.dit import ContextCache, EzAudioDiT
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.text import TextEncoder
from ezaudio.text.encoder import MINILM_ALIASES
from ezaudio.validation import (
    LIMITS,
    Limits,
    check_edit_region,
    check_eta,
    check_guidance_rescale,
    check_guidance_scale,
    check_prompts,
    check_seconds,
    check_seed,
    check_steps,
)

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}  # fmt: skip

ProgressCallback = Callable[[int, int], None]


@dataclass
class GeneratedAudio:
    """Waveforms [B, N] float32 at ``sample_rate`` Hz, with the seed used for each row."""

    waveforms: np.ndarray
    sample_rate: int
    seeds: list[int]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> cuda, then mps, then cpu; anything else is checked to exist."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidInputError(f"unknown device {device!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' asked for, but no CUDA GPU is available")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise InvalidInputError("device 'mps' asked for, but MPS is not available")
    return device


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``"float32"``/``"bf16"``/``"fp16"`` (and aliases) -> torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise InvalidInputError(
            f"dtype must be one of float32, bfloat16, float16; got {dtype!r}"
        ) from None


class EzAudio:
    """Generate and edit audio from text.

    The DiT runs in ``dtype`` (float32, bfloat16 or float16); the text encoder,
    the VAE and the sampler's arithmetic stay in float32.
    """

    def __init__(
        self,
        dit: EzAudioDiT,
        vae: WaveformVAE,
        text_encoder: TextEncoder,
        scheduler: SchedulerConfig | None = None,
        sampling: SamplingDefaults | None = None,
        latent_scale: float = 1.0,
        latent_shift: float = 0.0,
        device: str | torch.device | None = "cpu",
        dtype: str | torch.dtype | None = torch.float32,
        limits: Limits = LIMITS,
        name: str = "",
        posterior_noise: float = 1.0,
    ) -> None:
        if dit.config.latent_channels != vae.latent_dim:
            raise CheckpointError(
                f"DiT latent channels {dit.config.latent_channels} != "
                f"VAE latent dim {vae.latent_dim}"
            )
        if dit.config.context_dim is not None and dit.config.context_dim != text_encoder.dim:
            raise CheckpointError(
                f"DiT context dim {dit.config.context_dim} != text encoder dim {text_encoder.dim}"
            )
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.dit = dit.to(device=self.device, dtype=self.dtype).eval()
        self.vae = vae.to(device=self.device, dtype=torch.float32).eval()
        self.text_encoder = text_encoder.to(self.device)
        self.scheduler_config = scheduler or SchedulerConfig()
        self.schedule = NoiseSchedule.from_config(self.scheduler_config)
        self.sampling = sampling or SamplingDefaults()
        self.latent_scale = float(latent_scale)
        self.latent_shift = float(latent_shift)
        # how the DiT's training latents were drawn: mean + posterior_noise * std * noise
        self.posterior_noise = float(posterior_noise)
        self.limits = limits
        self.name = name

    # ------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = "auto",
        dtype: str | torch.dtype | None = "float32",
        text_encoder: str | TextEncoder | None = None,
    ) -> EzAudio:
        """Load a model folder, an official preset (``"ezaudio-l"``, ``"ezaudio-xl"``,
        downloaded and converted once) or a hub repository holding a model folder.

        ``text_encoder`` overrides the encoder named in the folder (an id, a path
        or a loaded :class:`TextEncoder`).
        """
        from ezaudio.hub import resolve_model_folder

        folder = resolve_model_folder(name_or_path)
        index = read_index(folder)
        dit = EzAudioDiT.from_pretrained(folder / index.dit)
        vae = WaveformVAE.from_pretrained(folder / index.vae)
        if not isinstance(text_encoder, TextEncoder):
            text_encoder = load_text_encoder(folder, index, override=text_encoder)
        if (
            abs(vae.sample_rate - index.sample_rate) > 0
            or abs(vae.latent_rate - index.latent_rate) > 1e-6
        ):
            raise CheckpointError(
                f"{folder}: ezaudio.json rates ({index.sample_rate} Hz, {index.latent_rate} Hz) "
                f"do not match the VAE ({vae.sample_rate} Hz, {vae.latent_rate} Hz)"
            )
        return cls(
            dit, vae, text_encoder, index.scheduler, index.sampling,
            index.latent_scale, index.latent_shift, device=device, dtype=dtype,
            name=index.name or str(name_or_path or folder.name),
            posterior_noise=index.posterior_noise,
        )  # fmt: skip

    def save_pretrained(
        self, folder: str | os.PathLike[str], store_text_encoder: bool | None = None
    ) -> Path:
        """Write the native model folder. The text encoder is stored inside the folder
        when ``store_text_encoder`` is True, or (None) when it was loaded from a local
        path; hub ids and the MiniLM alias are stored by name."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CheckpointError(f"{folder}: cannot create folder ({error.strerror})") from error
        self.dit.float().save_pretrained(folder / "dit")
        self.dit.to(self.dtype)
        self.vae.save_pretrained(folder / "vae")
        described = self.text_encoder.describe()
        name = described["name"]
        if store_text_encoder is None:
            store_text_encoder = name.lower() not in MINILM_ALIASES and Path(name).exists()
        if store_text_encoder:
            self.text_encoder.save_pretrained(folder / "text_encoder")
            text = {"path": "text_encoder"}
        else:
            text = {k: described[k] for k in ("name", "kind", "max_length", "padding")}
        index = ModelIndex(
            sample_rate=self.sample_rate, latent_rate=self.latent_rate, text_encoder=text,
            latent_scale=self.latent_scale, latent_shift=self.latent_shift,
            posterior_noise=self.posterior_noise,
            scheduler=self.scheduler_config, sampling=self.sampling, name=self.name,
        )  # fmt: skip
        write_index(folder, index)
        return folder

    # ---------------------------------------------------------- properties
    @property
    def sample_rate(self) -> int:
        """Output audio rate (Hz)."""
        return self.vae.sample_rate

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.vae.latent_rate

    def frames_for(self, seconds: float) -> int:
        """Latent frames covering ``seconds`` of audio (rounded up, so the clip's end is
        generated rather than padded), a multiple of the DiT's patch size."""
        patch = self.dit.config.patch_size
        frames = max(1, math.ceil(seconds * self.latent_rate - 1e-6))
        return math.ceil(frames / patch) * patch

    # ------------------------------------------------------------ generate
    @torch.no_grad()
    def generate(
        self,
        prompt: str | list[str],
        seconds: float | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float | None = None,
        eta: float | None = None,
        seed: int | None = None,
        negative_prompt: str | list[str] = "",
        progress: bool = True,
        callback: ProgressCallback | None = None,
    ) -> GeneratedAudio:
        """Generate ``seconds`` of audio per prompt.

        Row i of a batch uses seed ``seed + i`` (a random base seed when None),
        so a prompt gives the same audio alone or inside a batch. An empty
        prompt generates unconditionally (no guidance), as the official code does.
        """
        defaults = self.sampling
        prompts = check_prompts(prompt, limits=self.limits)
        seconds = check_seconds(
            defaults.seconds if seconds is None else seconds, limits=self.limits
        )
        options = self._options(steps, guidance_scale, guidance_rescale, eta, seed, edit=False)
        negatives = self._negatives(negative_prompt, len(prompts))
        frames = self.frames_for(seconds)
        shape = (len(prompts), self.dit.config.latent_channels, frames)
        latents, seeds = self._sample(
            prompts, negatives, shape, options, None, None, progress, callback
        )
        audio = self._decode(latents, round(seconds * self.sample_rate))
        return GeneratedAudio(audio, self.sample_rate, seeds)

    # ---------------------------------------------------------------- edit
    @torch.no_grad()
    def edit(
        self,
        audio: str | os.PathLike[str] | np.ndarray | torch.Tensor,
        prompt: str | list[str],
        mask_start: float,
        mask_length: float,
        boundary: float | None = None,
        sample_rate: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float | None = None,
        eta: float | None = None,
        seed: int | None = None,
        negative_prompt: str | list[str] = "",
        progress: bool = True,
        callback: ProgressCallback | None = None,
    ) -> GeneratedAudio:
        """Regenerate ``mask_length`` seconds from ``mask_start`` given the audio around it.

        Official semantics: the clip is peak-normalised for the model; the region
        plus ``boundary`` seconds of context on each side (at most half the region)
        is encoded; latent frames outside the region are kept from the input;
        a region reaching past the end pads with silence and outpaints. Samples
        outside [start - boundary, end + boundary] are the input's, unchanged.
        ``audio`` is a file path, or an array [N] / [channels, N] at ``sample_rate``.
        """
        prompts = check_prompts(prompt, limits=self.limits)
        wave = self._load_audio(audio, sample_rate)  # [N] float32 at self.sample_rate
        rate = self.sample_rate
        duration = len(wave) / rate
        defaults = self.sampling
        boundary = defaults.boundary if boundary is None else boundary
        start, length, boundary = check_edit_region(
            mask_start, mask_length, boundary, duration, self.limits
        )
        if length < 1 / self.latent_rate:
            raise InvalidInputError(
                f"mask_length must be at least one latent frame ({1 / self.latent_rate:g} s), "
                f"got {length:g}"
            )
        options = self._options(steps, guidance_scale, guidance_rescale, eta, seed, edit=True)
        negatives = self._negatives(negative_prompt, len(prompts))

        end = start + length
        if end > duration:  # outpainting: pad with silence up to the region's end
            wave = np.pad(wave, (0, round((end - duration) * rate)))
        total = len(wave) / rate
        peak = float(np.abs(wave).max()) + 1e-9
        normalised = wave / peak
        boundary = min(length / 2, boundary)
        chunk_start, chunk_end = max(start - boundary, 0.0), min(end + boundary, total)
        first, last = round(chunk_start * rate), round(chunk_end * rate)
        hop = self.vae.hop_length * self.dit.config.patch_size
        padded = math.ceil((last - first) / hop) * hop
        chunk = normalised[first : first + padded]  # real audio beyond the chunk when there is some
        chunk = np.pad(chunk, (0, padded - len(chunk)))
        chunk_tensor = torch.from_numpy(chunk.astype(np.float32))[None, None].to(self.device)

        seeds = self._seeds(options["seed"], len(prompts))
        # The posterior sample of each row comes from that row's seed (drawn on the CPU, as
        # all noise here), so row i of a batch equals a single edit with seed + i.
        mean, std = self.vae.encode_distribution(chunk_tensor)  # [1, C, L] each
        noise = torch.cat(
            [
                torch.randn(mean.shape, generator=torch.Generator().manual_seed(s ^ 0x5EED))
                for s in seeds
            ]
        ).to(mean.device)  # [B, C, L]
        known = self._to_dit(mean + self.posterior_noise * std * noise)
        frames = known.shape[-1]
        low = round((start - chunk_start) * self.latent_rate)
        high = max(low + 1, round((end - chunk_start) * self.latent_rate))
        region = torch.zeros(1, frames, dtype=torch.bool, device=self.device)
        region[:, low : min(high, frames)] = True  # [1, L], True = generate
        batch = len(prompts)
        region = region.expand(batch, -1)
        options["seed"] = seeds[0]
        latents, seeds = self._sample(
            prompts, negatives, tuple(known.shape), options, known, region, progress, callback
        )
        latents = torch.where(region[:, None, :], latents, known)
        edited = self._decode(latents, last - first) * peak  # [B, last - first]
        out = np.repeat(wave[None, :], batch, axis=0).astype(np.float32)
        out[:, first:last] = edited
        return GeneratedAudio(out, rate, seeds)

    # ------------------------------------------------------------- helpers
    def _options(self, steps, guidance_scale, guidance_rescale, eta, seed, edit: bool) -> dict:
        defaults = self.sampling
        if guidance_scale is None:
            guidance_scale = defaults.edit_guidance_scale if edit else defaults.guidance_scale
        if guidance_rescale is None:
            guidance_rescale = defaults.edit_guidance_rescale if edit else defaults.guidance_rescale
        steps = check_steps(defaults.steps if steps is None else steps, self.limits)
        if steps > self.schedule.num_train_timesteps:
            raise InvalidInputError(
                f"steps must be at most {self.schedule.num_train_timesteps}, got {steps}"
            )
        return {
            "steps": steps,
            "guidance_scale": check_guidance_scale(guidance_scale, self.limits),
            "guidance_rescale": check_guidance_rescale(guidance_rescale),
            "eta": check_eta(defaults.eta if eta is None else eta),
            "seed": check_seed(seed, self.limits),
        }

    def _negatives(self, negative_prompt: str | list[str], batch: int) -> list[str]:
        negatives = check_prompts(negative_prompt, name="negative_prompt", limits=self.limits)
        if len(negatives) == 1:
            negatives = negatives * batch
        if len(negatives) != batch:
            raise InvalidInputError(
                f"negative_prompt must be one prompt or one per prompt ({batch}), "
                f"got {len(negatives)}"
            )
        return negatives

    def _seeds(self, seed: int | None, batch: int) -> list[int]:
        base = secrets.randbelow(2**31) if seed is None else seed
        return [(base + i) % (self.limits.max_seed + 1) for i in range(batch)]

    def _to_dit(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents + self.latent_shift) * self.latent_scale

    def _from_dit(self, latents: torch.Tensor) -> torch.Tensor:
        return latents / self.latent_scale - self.latent_shift

    def _sample(
        self,
        prompts: list[str],
        negatives: list[str],
        shape: tuple[int, int, int],
        options: dict,
        known: torch.Tensor | None,
        region: torch.Tensor | None,
        progress: bool,
        callback: ProgressCallback | None,
    ) -> tuple[torch.Tensor, list[int]]:
        batch = len(prompts)
        seeds = self._seeds(options["seed"], batch)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        # Initial noise first, then per-step noise, from each row's generator (official order).
        noise = torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generators])
        noise = noise.to(self.device)  # [B, C, L] float32

        # An empty prompt is unconditional: guidance scale 1 returns v_pos as is.
        scales = torch.tensor(
            [options["guidance_scale"] if p else 1.0 for p in prompts], device=self.device
        )
        use_cfg = self.dit.config.context_dim is not None and bool((scales != 1).any())
        cache = self._context(prompts + negatives if use_cfg else prompts)
        rescale = options["guidance_rescale"]
        if use_cfg and known is not None:
            known, region = torch.cat([known, known]), torch.cat([region, region])

        def denoise(x: torch.Tensor, t: int) -> torch.Tensor:
            if not use_cfg:
                return self.dit(x, t, cache, gt=known, gt_mask=region).float()
            both = self.dit(torch.cat([x, x]), t, cache, gt=known, gt_mask=region).float()
            v_pos, v_neg = both.chunk(2)
            return guide(v_pos, v_neg, scales, rescale)

        latents = ddim_sample(
            denoise, noise, self.schedule, options["steps"], eta=options["eta"],
            generator=generators, progress=progress, callback=callback,
        )  # fmt: skip
        return latents, seeds

    def _context(self, prompts: list[str]) -> ContextCache | None:
        if self.dit.config.context_dim is None:
            return None
        encoding = self.text_encoder.encode(prompts)
        states = encoding.states.to(self.device, torch.float32)  # [B, J, D_text]
        return self.dit.prepare_context(states, encoding.mask.to(self.device))

    def _decode(self, latents: torch.Tensor, samples: int) -> np.ndarray:
        audio = self.vae.decode(self._from_dit(latents.float()))[:, 0]  # [B, N']
        audio = audio[:, :samples]
        if audio.shape[-1] < samples:
            audio = torch.nn.functional.pad(audio, (0, samples - audio.shape[-1]))
        return audio.cpu().numpy().astype(np.float32)

    def _load_audio(
        self, audio: str | os.PathLike[str] | np.ndarray | torch.Tensor, sample_rate: int | None
    ) -> np.ndarray:
        if isinstance(audio, (str, os.PathLike)):
            wave, _ = read_audio(audio, self.sample_rate)
            return wave
        array = (
            audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        )
        if sample_rate is None:
            raise InvalidInputError("sample_rate is required when audio is given as an array")
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, numbers.Real)
            or not float(sample_rate).is_integer()
            or sample_rate < 1
        ):
            raise InvalidInputError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if array.ndim == 2:
            # [channels, N], or soundfile's [N, channels] (audio has more samples than channels)
            channel_axis = 1 if array.shape[0] > array.shape[1] else 0
            array = array.mean(axis=channel_axis)  # -> [N]
        if array.ndim != 1:
            raise InvalidInputError(f"audio must be [N] or [channels, N], got shape {array.shape}")
        if array.size == 0:
            raise AudioFileError("the audio holds no samples")
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise InvalidInputError("audio contains NaN or infinite samples")
        return resample(array, int(sample_rate), self.sample_rate)


def load_text_encoder(folder: Path, index: ModelIndex, override: str | None = None) -> TextEncoder:
    """The text encoder a model folder names (or ``override``)."""
    spec = index.text_encoder
    if override is not None:
        return TextEncoder.from_pretrained(override)
    options = {k: spec[k] for k in ("kind", "max_length", "padding") if k in spec}
    if "path" in spec:
        return TextEncoder.from_pretrained(folder / spec["path"], **options)
    return TextEncoder.from_pretrained(spec["name"], **options)
