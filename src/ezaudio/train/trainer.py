"""The DiT trainer: the paper's three stages on Hugging Face accelerate (II-C).

One code path from a laptop CPU to many GPUs: ``accelerate launch`` (or
``torchrun``) sets up DDP; mixed precision, gradient accumulation and gradient
checkpointing come from the recipe. Every random draw of a step comes from one
CPU generator per process whose state is checkpointed, and the data order is a
seeded permutation per epoch, so a resumed run continues exactly as if it had
never stopped.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from ezaudio.config import dit_preset
from ezaudio.diffusion.schedule import NoiseSchedule
from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.model_folder import INDEX_NAME, read_index
from ezaudio.nn.component import CONFIG_NAME, WEIGHTS_NAME, load_safetensors
from ezaudio.nn.dit import EzAudioDiT
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.train import checkpointing as ckpt
from ezaudio.train.diffusion_loss import masked_modelling_loss
from ezaudio.train.ema import EMA
from ezaudio.train.engine_utils import (
    DataPosition,
    append_jsonl,
    check_ranks_in_sync,
    full_tensors,
    is_fsdp,
    make_accelerator,
    process_generator,
    register_block_methods,
    stop_for_time,
    tensorboard_writer,
    trainer_batches,
    truncate_jsonl,
)
from ezaudio.train.recipe import Recipe, recipe_to_dict

# Parameters that only exist once a DiT has text: stage 2 adds them to a stage-1 model.
TEXT_PATH_MARKERS = ("context_embed.", ".cross_attn.", ".norm2.", ".norm_context.")


def is_text_path(name: str) -> bool:
    """True for parameters of the cross-attention text path."""
    return name.startswith("context_embed.") or any(m in name for m in TEXT_PATH_MARKERS[1:])


def read_dit_weights(source: str | Path) -> dict[str, torch.Tensor]:
    """DiT weights from a training checkpoint (its EMA), a model folder or a ``dit/`` folder."""
    source = Path(source)
    if (source / ckpt.STATE_NAME).is_file():
        return load_safetensors(source / "ema.safetensors")
    if (source / INDEX_NAME).is_file():
        return load_safetensors(source / read_index(source).dit / WEIGHTS_NAME)
    if (source / CONFIG_NAME).is_file():
        return load_safetensors(source / WEIGHTS_NAME)
    raise CheckpointError(f"{source}: not a training checkpoint, model folder or DiT folder")


def load_initial_weights(
    model: EzAudioDiT, state: dict[str, torch.Tensor], where: str
) -> list[str]:
    """Load ``state`` into ``model``, allowing only the text path to be missing.

    Returns the names that kept their fresh initialisation. The text path's
    output projections start at zero, so the model computes exactly what the
    source model did (paper II-C-2: cross-attention added to the stage-1 model).
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    not_text = [k for k in missing if not is_text_path(k)]
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if not_text or unexpected or shapes:
        raise CheckpointError(
            f"{where} does not fit this DiT: missing {not_text[:8]}, unexpected {unexpected[:8]}, "
            f"wrong shapes {sorted(shapes)[:8]}"
        )
    model.load_state_dict(state, strict=False)
    return missing


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up, then constant, cosine or linear decay to 0 at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - progress


class DiTTrainer:
    """Train an EzAudio-DiT for one stage of the recipe."""

    def __init__(self, recipe: Recipe, resume: bool | str | Path = False) -> None:
        from ezaudio.data.dataset import AudioClipDataset
        from ezaudio.data.manifest import read_manifest

        self.recipe = recipe
        self.run_dir = Path(recipe.run.output_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        optim = recipe.optim
        self.accelerator = make_accelerator(
            optim.mixed_precision, optim.grad_accum, recipe.run.distributed
        )
        acc = self.accelerator
        self.device = acc.device

        self.vae = WaveformVAE.from_pretrained(recipe.model.vae).to(self.device).eval()
        self.vae.requires_grad_(False)
        self.text_encoder = None
        if recipe.stage > 1:
            from ezaudio.text import TextEncoder

            self.text_encoder = TextEncoder.from_pretrained(recipe.model.text_encoder)
            self.text_encoder.to(self.device)
        self.text_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        config = dataclasses.replace(
            dit_preset(recipe.model.dit_preset),
            **recipe.model.dit_overrides,
            latent_channels=self.vae.latent_dim,
            context_dim=self.text_encoder.dim if self.text_encoder is not None else None,
        )
        if not config.masked_modelling:
            raise InvalidInputError("training needs a DiT with masked_modelling")
        torch.manual_seed(recipe.run.seed)  # the same initial weights on every process
        model = EzAudioDiT(config)
        self.fresh_text_path: list[str] = []
        if recipe.model.init_from and not resume:
            source = recipe.model.init_from
            self.fresh_text_path = load_initial_weights(model, read_dit_weights(source), source)
        model.gradient_checkpointing = optim.gradient_checkpointing
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=optim.lr, betas=tuple(optim.betas),
            weight_decay=optim.weight_decay,
        )  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, optim.warmup_steps, optim.max_steps, optim.schedule),
        )
        self.model, self.optimizer = acc.prepare(model, optimizer)
        if is_fsdp(acc):
            register_block_methods(acc.unwrap_model(self.model))
        # After prepare, so the EMA lives on the model's device.
        self.ema = EMA(acc.unwrap_model(self.model), optim.ema_decay)
        self.schedule = NoiseSchedule.from_config()

        if recipe.data.latents:  # a latent cache: the VAE's posteriors, cropped in frames
            self.dataset = self._latent_dataset()
        else:
            entries = read_manifest(recipe.data.manifest, split=recipe.data.split)
            self.dataset = AudioClipDataset(
                entries, sample_rate=self.vae.sample_rate, clip_seconds=recipe.data.clip_seconds,
                seed=recipe.run.seed,
            )  # fmt: skip
        per_rank = len(self.dataset) // acc.num_processes
        self.batches_per_epoch = per_rank // optim.batch_size
        if self.batches_per_epoch < 1:
            raise InvalidInputError(
                f"{recipe.data.latents or recipe.data.manifest}: {len(self.dataset)} clips is "
                f"fewer than one batch of {optim.batch_size} per process "
                f"({acc.num_processes} processes)"
            )
        self.generator = process_generator(recipe.run.seed, acc.process_index)
        self.step = 0
        self.skipped_steps = 0  # fp16: optimizer steps the loss scaler skipped (inf/NaN grads)
        self.position = DataPosition()
        self.last_good_batch: dict[str, Any] | None = None
        if resume:
            self._resume(resume)

    # ------------------------------------------------------------ state
    def _resume(self, resume: bool | str | Path) -> None:
        folder = ckpt.latest_checkpoint(self.checkpoint_dir) if resume is True else Path(resume)
        if folder is None:
            raise CheckpointError(f"{self.checkpoint_dir}: no checkpoint to resume from")
        acc = self.accelerator
        state = ckpt.read_checkpoint(folder, acc.process_index)
        trainer = state["trainer"]
        distributed = trainer.get("distributed", "ddp")
        if distributed != self.recipe.run.distributed:
            raise CheckpointError(
                f"{folder} was written under run.distributed={distributed}; "
                f"resume with the same setting (not {self.recipe.run.distributed})"
            )
        if is_fsdp(acc):  # full states in the checkpoint; every process takes its shards
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            full = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.model, state["model"], options=full)
            set_optimizer_state_dict(
                self.model, self.optimizer.optimizer, state["optimizer"], options=full
            )
        else:
            acc.unwrap_model(self.model).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"], trainer["ema_updates"])
        self.scheduler.load_state_dict(state["scheduler"])
        if acc.scaler is not None and trainer.get("grad_scaler"):
            acc.scaler.load_state_dict(trainer["grad_scaler"])
        self.step = trainer["step"]
        self.skipped_steps = trainer.get("skipped_steps", 0)
        self.position = DataPosition(trainer["epoch"], trainer["batch_in_epoch"])
        ckpt.restore_rng_state(state["rng"], self.generator)
        self._say(f"resumed from {folder} at step {self.step}")

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (all processes must call this)."""
        acc = self.accelerator
        main = acc.is_main_process
        unwrapped = acc.unwrap_model(self.model)
        trainer_state = {
            "step": self.step,
            "epoch": self.position.epoch,
            "batch_in_epoch": self.position.batch,
            "ema_updates": self.ema.updates,
            "skipped_steps": self.skipped_steps,
            "processes": acc.num_processes,
            "distributed": self.recipe.run.distributed,
            "grad_scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
            "dit_config": dataclasses.asdict(unwrapped.config),
            "recipe": recipe_to_dict(self.recipe),
        }
        # Full (gathered) states: collectives under FSDP, so every process computes them.
        model_state = acc.get_state_dict(self.model)
        ema_state = self.ema.full_state_dict()
        optimizer_state = self._full_optimizer_state()
        ckpt.write_checkpoint(
            self.checkpoint_dir, self.step,
            model_state if main else None,
            ema_state if main else None,
            optimizer_state if main else None,
            self.scheduler.state_dict() if main else None,
            trainer_state if main else None,
            ckpt.rng_state(self.generator), acc.process_index, main,
        )  # fmt: skip
        acc.wait_for_everyone()
        folder = ckpt.step_folder(self.checkpoint_dir, self.step)
        if main:
            ckpt.finish_checkpoint(self.checkpoint_dir, self.step, self.recipe.run.keep_last)
        acc.wait_for_everyone()
        return folder

    def _full_optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state; under FSDP gathered into one full state dict on the main
        process (keyed by parameter name; every process must call this)."""
        if not is_fsdp(self.accelerator):
            return self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.model, self.optimizer.optimizer, options=options)

    # ------------------------------------------------------------- data
    def _latent_dataset(self):
        """The recipe's latent cache, refused unless it was encoded by the recipe's VAE."""
        from ezaudio.data.latent_cache import LatentClipDataset, vae_fingerprint

        data = self.recipe.data
        frames = max(1, round(data.clip_seconds * self.vae.latent_rate))
        dataset = LatentClipDataset(data.latents, frames, self.recipe.run.seed, split=data.split)
        if dataset.fingerprint != vae_fingerprint(self.vae):
            raise InvalidInputError(
                f"{data.latents}: stale latent cache, encoded by another VAE than model.vae "
                f"{self.recipe.model.vae} (fingerprint {dataset.fingerprint[:12]}); "
                "re-encode it with `ezaudio data encode`"
            )
        return dataset

    def _batches(self):
        """This process's batches from the current data position on (seeded, sharded)."""
        return trainer_batches(self)

    def _silent_batch(self) -> dict[str, Any]:
        """A batch of silence with no valid frame: its loss is 0 but it runs like any other."""
        size = self.recipe.optim.batch_size
        if self.recipe.data.latents:
            frames = max(1, round(self.recipe.data.clip_seconds * self.vae.latent_rate))
            zeros = torch.zeros(size, self.vae.latent_dim, frames)
            return {
                "mean": zeros,
                "std": zeros,
                "valid": torch.zeros(size, frames, dtype=torch.bool),
                "caption": [""] * size,
            }
        samples = max(1, round(self.recipe.data.clip_seconds * self.vae.sample_rate))
        return {
            "audio": torch.zeros(size, 1, samples),
            "valid": torch.zeros(size, samples, dtype=torch.bool),
            "caption": [""] * size,
        }

    # ------------------------------------------------------------- loss
    def _randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator).to(self.device)

    @torch.no_grad()
    def _text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        drop = torch.rand(len(captions), generator=self.generator)
        captions = [
            "" if d < self.recipe.masking.caption_drop_prob else c for d, c in zip(drop, captions)
        ]
        if not self.recipe.data.cache_text:
            encoding = self.text_encoder.encode(captions)
            return encoding.states.float(), encoding.mask
        missing = sorted({c for c in captions if c not in self.text_cache})
        if missing:
            encoding = self.text_encoder.encode(missing)
            for index, caption in enumerate(missing):
                self.text_cache[caption] = (
                    encoding.states[index].float().cpu(),
                    encoding.mask[index].cpu(),
                )
        states = torch.stack([self.text_cache[c][0] for c in captions]).to(self.device)
        mask = torch.stack([self.text_cache[c][1] for c in captions]).to(self.device)
        return states, mask

    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, 1, N] -> sampled VAE latents [B, C, L] and valid frames [B, L].

        A latent-cache batch carries the posterior (``mean``, ``std`` [B, C, L]) instead of
        audio; its latents are sampled with the same draw from the trainer's generator.
        The noise is scaled by ``data.posterior_noise`` (0: the posterior means; the draw
        is made all the same, so the other draws do not move)."""
        from ezaudio.data.dataset import latent_valid_mask

        noise_scale = float(self.recipe.data.posterior_noise)

        if "mean" in batch:
            mean, std = batch["mean"].to(self.device), batch["std"].to(self.device)
            latents = mean + noise_scale * std * self._randn(tuple(mean.shape))
            return latents, batch["valid"].to(self.device)
        audio = batch["audio"].to(self.device)  # [B, 1, N]
        mean, std = self.vae.encode_distribution(audio)  # [B, C, L]
        latents = mean + noise_scale * std * self._randn(tuple(mean.shape))
        valid = latent_valid_mask(batch["valid"], self.vae.hop_length, latents.shape[-1])
        return latents, valid.to(self.device)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The training loss of one batch of audio (see :meth:`latent_loss`)."""
        latents, valid = self.encode(batch)
        return self.latent_loss(latents, valid, list(batch["caption"]))

    def latent_loss(
        self, latents: torch.Tensor, valid: torch.Tensor, captions: list[str]
    ) -> torch.Tensor:
        """Masked v-prediction loss (paper II-C-1): span-mask the latents, noise them at a
        random timestep, predict the velocity of the masked frames given the rest
        (:func:`~ezaudio.train.diffusion_loss.masked_modelling_loss`)."""
        text = None
        if self.text_encoder is not None:
            text = lambda: self._text(captions)  # noqa: E731  (drawn after the noise)
        return masked_modelling_loss(
            self.model, self.schedule, latents, valid, self.recipe.masking, self.generator,
            text=text, autocast=self.accelerator.autocast,
            min_snr_gamma=self.recipe.optim.min_snr_gamma,
            activity_weight=self.recipe.optim.activity_weight,
            activity_scale=self.recipe.optim.activity_scale,
        )  # fmt: skip

    # ------------------------------------------------------------ train
    def train(self) -> Path:
        """Train to ``optim.max_steps``, checkpointing on the way; returns the last checkpoint."""
        acc, recipe = self.accelerator, self.recipe
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_dict(recipe)))
            truncate_jsonl(self.run_dir / "metrics.jsonl", self.step)
        writer = tensorboard_writer(acc, self.run_dir / "logs")
        self.model.train()
        progress = tqdm(
            total=recipe.optim.max_steps, initial=self.step, desc=f"stage {recipe.stage}",
            disable=not acc.is_main_process,
        )  # fmt: skip
        last = None
        started, started_step = time.perf_counter(), self.step
        batches = self._batches()
        while self.step < recipe.optim.max_steps:
            total = torch.zeros((), device=self.device)
            for _ in range(recipe.optim.grad_accum):
                batch = next(batches)
                scale = 1.0
                if batch is None:  # every file of this batch was unreadable: skipped
                    # A weight-0 pass keeps the step count, the accumulation and the
                    # processes in step (a rank that skipped its backward would hang DDP).
                    batch, scale = self.last_good_batch or self._silent_batch(), 0.0
                self.last_good_batch = batch
                with acc.accumulate(self.model):
                    loss = self.loss(batch) * scale
                    acc.backward(loss)
                    if acc.sync_gradients and recipe.optim.max_grad_norm > 0:
                        acc.clip_grad_norm_(self.model.parameters(), recipe.optim.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                total += loss.detach() / recipe.optim.grad_accum
            # fp16: the loss scaler skips a step whose gradients hold inf/NaN (and lowers
            # the scale); the weights did not move, so neither do the schedule and the EMA.
            if getattr(self.optimizer, "step_was_skipped", False):
                self.skipped_steps += 1
            else:
                self.scheduler.step()
                self.ema.update(acc.unwrap_model(self.model))
            self.step += 1
            mean_loss = acc.reduce(total, reduction="mean").item()
            progress.update(1)
            progress.set_postfix(loss=f"{mean_loss:.4f}")
            if acc.is_main_process:
                self._log_metrics(writer, mean_loss, started, started_step)
            if self.step % recipe.run.checkpoint_every == 0 or self.step == recipe.optim.max_steps:
                last = self.save_checkpoint()
            if recipe.run.validate_every and self.step % recipe.run.validate_every == 0:
                self.validate()
            stop = stop_for_time(self, started)
            if stop is not None:
                last = stop
                break
        progress.close()
        if writer is not None:
            writer.close()
        self.check_ranks_in_sync()
        return last or ckpt.step_folder(self.checkpoint_dir, self.step)

    def check_ranks_in_sync(self) -> list[str]:
        """Hash every process's weights into ``rank_weights.json``; fail loudly if they differ."""
        model = self.accelerator.unwrap_model(self.model)
        weights: Any = model
        if is_fsdp(self.accelerator):  # shards differ by design: hash the gathered weights
            weights = full_tensors(model.state_dict())
        return check_ranks_in_sync(
            self.accelerator, {"dit": weights}, self.run_dir / "rank_weights.json"
        )

    def _log_metrics(self, writer, loss: float, started: float, started_step: int) -> None:
        rate = (self.step - started_step) / max(time.perf_counter() - started, 1e-9)
        lr = self.scheduler.get_last_lr()[0]
        record = {"step": self.step, "loss": loss, "lr": lr, "steps_per_s": rate}
        scaler = self.accelerator.scaler
        if scaler is not None:  # fp16
            record["loss_scale"] = float(scaler.get_scale())
            record["skipped_steps"] = self.skipped_steps
        append_jsonl(self.run_dir / "metrics.jsonl", record)
        if writer is not None and self.step % self.recipe.run.log_every == 0:
            writer.add_scalar("train/loss", loss, self.step)
            writer.add_scalar("train/lr", lr, self.step)
            writer.add_scalar("train/steps_per_s", rate, self.step)

    # ------------------------------------------------------- validation
    def ema_model(self, ema_state: dict[str, torch.Tensor] | None = None) -> EzAudioDiT:
        """A CPU float32 copy of the DiT carrying the EMA weights.

        ``ema_state``: the gathered EMA (:meth:`EMA.full_state_dict`); under FSDP gather it
        on every process first and pass it here (the gather is a collective)."""
        unwrapped = self.accelerator.unwrap_model(self.model)
        model = EzAudioDiT(unwrapped.config)
        state = ema_state if ema_state is not None else self.ema.full_state_dict()
        own = model.state_dict()
        model.load_state_dict({k: v.to("cpu", own[k].dtype) for k, v in state.items()})
        return model.eval()

    def pipeline(self, ema_state: dict[str, torch.Tensor] | None = None):
        """An :class:`~ezaudio.pipeline.EzAudio` with the EMA weights (CPU, float32);
        ``ema_state`` as for :meth:`ema_model`."""
        from ezaudio.pipeline import EzAudio
        from ezaudio.text import TextEncoder

        text = self.text_encoder or TextEncoder.from_pretrained(self.recipe.model.text_encoder)
        vae = WaveformVAE.from_pretrained(self.recipe.model.vae)
        return EzAudio(
            self.ema_model(ema_state),
            vae,
            text,
            device="cpu",
            name=f"stage{self.recipe.stage}",
            posterior_noise=self.recipe.data.posterior_noise,
        )

    def validate(self) -> list[Path]:
        """Write validation samples as audio under ``samples/step-N/`` (main process)."""
        from ezaudio.data.audio import write_audio

        paths: list[Path] = []
        ema_state = self.ema.full_state_dict()  # every process: a collective under FSDP
        if self.accelerator.is_main_process:
            run = self.recipe.run
            pipe = self.pipeline(ema_state)
            prompts = list(run.validation_prompts) if self.recipe.stage > 1 else [""]
            audio = pipe.generate(
                prompts, seconds=run.validation_seconds, steps=run.validation_steps,
                seed=run.seed, progress=False,
            )  # fmt: skip
            folder = self.run_dir / "samples" / f"step-{self.step:08d}"
            for index, wave in enumerate(audio.waveforms):
                paths.append(write_audio(folder / f"{index:02d}.wav", wave, audio.sample_rate))
        self.accelerator.wait_for_everyone()
        return paths

    def export(self, folder: str | Path) -> Path:
        """Write the EMA weights as a native model folder that ``EzAudio.from_pretrained`` loads."""
        folder = Path(folder)
        ema_state = self.ema.full_state_dict()  # every process: a collective under FSDP
        if self.accelerator.is_main_process:
            self.pipeline(ema_state).save_pretrained(folder)
        self.accelerator.wait_for_everyone()
        return folder

    def _say(self, message: str) -> None:
        if self.accelerator.is_main_process:
            tqdm.write(message)
