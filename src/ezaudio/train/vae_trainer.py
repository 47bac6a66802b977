"""The waveform VAE trainer: the Oobleck VAE with the official GAN losses, on accelerate.

As the official trainer (stable-audio-tools' ``AutoencoderTrainingWrapper``, run with
the official ``config.json``), every step encodes a batch of audio clips, samples the
posterior and decodes, then updates *one* network: the discriminator on odd steps and
the autoencoder on even steps (every step before ``loss.discriminator_start_step``, or
when the adversarial and feature-matching weights are 0). Each network has its AdamW
optimiser and its InverseLR schedule, which advances when that network is updated.

The autoencoder minimises
    mrstft * MRSTFT(x, x_hat) + kl * KL + l1 * |x - x_hat| + adversarial * L_G
    + feature_matching * L_FM [+ latent_spectrum * L_spec + latent_pitch * L_pitch]
and the discriminator the hinge loss L_D (see :mod:`ezaudio.train.vae_losses`). The
bracketed terms are this project's optional heads on the posterior means
(:mod:`ezaudio.train.latent_heads`; off in the official recipe).

The run has the DiT trainer's guarantees: every random draw (posterior noise, polarity
flips) comes from one CPU generator per process that is checkpointed, crops come from
the dataset's (seed, epoch, index), the data order is a seeded permutation per epoch
sharded by rank, and ``--resume`` continues exactly as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from ezaudio.checkpoints.files import load_torch_file
from ezaudio.config import VAEConfig
from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.model_folder import INDEX_NAME, read_index
from ezaudio.nn.component import config_from_dict, config_to_dict, load_safetensors
from ezaudio.nn.oobleck import WaveformVAE, vae_kl
from ezaudio.train import checkpointing as ckpt
from ezaudio.train.ema import EMA
from ezaudio.train.engine_utils import (
    DataPosition,
    append_jsonl,
    check_ranks_in_sync,
    make_accelerator,
    process_generator,
    stop_for_time,
    tensorboard_writer,
    trainer_batches,
    truncate_jsonl,
)
from ezaudio.train.latent_heads import HeadLosses, LatentHeads
from ezaudio.train.vae_losses import (
    MultiResolutionSTFTLoss,
    MultiScaleSTFTDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    split_batch,
)
from ezaudio.train.vae_recipe import VAERecipe, vae_recipe_to_dict

# What every step logs (averaged over micro-batches and processes). ``loss`` is the
# autoencoder's weighted objective, ``disc_loss`` the discriminator's hinge loss; both
# are computed on every step, whichever network it updates.
TERMS = (
    "loss", "mrstft", "kl", "l1", "adversarial", "feature_matching", "disc_loss",
    "latent_spectrum", "latent_pitch",
)  # fmt: skip
# Extra files of a VAE checkpoint folder (beside checkpointing's model/ema/optimizer/...).
DISCRIMINATOR_NAME = "discriminator.safetensors"
DISC_OPTIMIZER_NAME = "disc_optimizer.pt"
DISC_SCHEDULER_NAME = "disc_scheduler.json"
HEADS_NAME = "latent_heads.safetensors"
CHECKPOINT_KIND = "vae"


def inverse_lr_factor(step: int, gamma: float, power: float, warmup: float) -> float:
    """InverseLR (stable-audio-tools): (1 - warmup^(n + 1)) * (1 + n / gamma)^-power."""
    return (1.0 - warmup ** (step + 1)) * (1.0 + step / gamma) ** -power


def read_vae_source(source: str | Path) -> WaveformVAE:
    """A VAE to start from: a VAE folder, a model folder (its ``vae/``) or a VAE training
    checkpoint (its EMA weights when it has them, else its weights)."""
    source = Path(source)
    if (source / ckpt.STATE_NAME).is_file():
        state = json.loads((source / ckpt.STATE_NAME).read_text())
        if state.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{source}: not a VAE training checkpoint")
        config = config_from_dict(VAEConfig, state["vae_config"], where=str(source))
        ema = load_safetensors(source / "ema.safetensors")
        weights = ema or load_safetensors(source / "model.safetensors")
        with torch.random.fork_rng(devices=[]):
            vae = WaveformVAE(config)
        vae.load_checked(weights, where=str(source))
        return vae
    if (source / INDEX_NAME).is_file():
        return WaveformVAE.from_pretrained(source / read_index(source).vae)
    return WaveformVAE.from_pretrained(source)


def decoded_length(config: VAEConfig, samples: int) -> int:
    """Samples the VAE returns for ``samples`` input samples: each encoder block's strided
    conv (kernel 2s, stride s, padding ceil(s/2)) rounds down, each decoder block's
    transposed conv multiplies back; 0 when the clip is shorter than one latent frame."""
    if samples < config.hop_length:
        return 0
    length = samples
    for stride in config.strides:
        length = (length + 2 * math.ceil(stride / 2) - 2 * stride) // stride + 1
    for stride in reversed(config.strides):
        length = (length - 1) * stride - 2 * math.ceil(stride / 2) + 2 * stride
    return length


def match_length(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop [B, C, N] and [B, C, N'] to their common length (a decoder may round N)."""
    length = min(real.shape[-1], fake.shape[-1])
    return real[..., :length], fake[..., :length]


class Autoencoded(NamedTuple):
    """One training forward of the VAE."""

    decoded: torch.Tensor  # [B, C, N'] the decoding of a posterior sample
    mean: torch.Tensor  # [B, D, L] posterior means
    std: torch.Tensor  # [B, D, L] posterior standard deviations
    heads: HeadLosses  # the latent heads' losses (zeros without heads)


class _Autoencode(nn.Module):
    """The VAE's training forward: audio [B, C, N] -> :class:`Autoencoded`.

    One module with one forward, so DDP sees a single forward per update (the latent heads,
    when the recipe has them, live here for the same reason); the posterior noise is drawn
    on the CPU from the trainer's generator. With ``freeze_encoder`` the encoder runs
    without gradients (its parameters are not trained); with ``heads_reach_encoder`` False
    the heads learn from detached means (their warm-up).
    """

    def __init__(
        self,
        vae: WaveformVAE,
        freeze_encoder: bool = False,
        posterior_noise: float = 1.0,
        heads: LatentHeads | None = None,
    ) -> None:
        super().__init__()
        self.vae = vae
        self.freeze_encoder = freeze_encoder
        self.posterior_noise = posterior_noise
        self.heads = heads

    def forward(
        self, audio: torch.Tensor, generator: torch.Generator, heads_reach_encoder: bool = True
    ) -> Autoencoded:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            mean, std = self.vae.encode_distribution(audio)  # [B, D, L]
        noise = torch.randn(mean.shape, generator=generator).to(mean.device)
        latents = mean + self.posterior_noise * std * noise  # [B, D, L]
        if self.heads is None:
            zero = mean.new_zeros((), dtype=torch.float32)
            heads = HeadLosses(zero, zero)
        else:
            heads = self.heads(audio, mean if heads_reach_encoder else mean.detach())
        return Autoencoded(self.vae.decode(latents), mean, std, heads)


class VAETrainer:
    """Train a :class:`~ezaudio.nn.oobleck.WaveformVAE` from a :class:`VAERecipe`."""

    def __init__(self, recipe: VAERecipe, resume: bool | str | Path = False) -> None:
        from ezaudio.data.dataset import AudioClipDataset
        from ezaudio.data.manifest import read_manifest

        self.recipe = recipe
        self.run_dir = Path(recipe.run.output_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        optim, loss = recipe.optim, recipe.loss
        self.accelerator = make_accelerator(optim.mixed_precision, optim.grad_accum)
        acc = self.accelerator
        self.device = acc.device

        torch.manual_seed(recipe.run.seed)  # the same initial weights on every process
        if recipe.model.init_from:
            vae = read_vae_source(recipe.model.init_from)
        else:
            vae = WaveformVAE(recipe.vae_config())
        if vae.config.audio_channels != 1:
            raise InvalidInputError(
                f"the VAE has {vae.config.audio_channels} audio channels; training reads mono clips"
            )
        vae.train()
        self.clip_samples = recipe.check_audio_length(
            vae.sample_rate, lambda n: decoded_length(vae.config, n)
        )
        discriminator = MultiScaleSTFTDiscriminator(
            loss.disc_filters, loss.disc_n_ffts, loss.disc_hop_lengths, loss.disc_win_lengths,
            in_channels=vae.config.audio_channels,
        )  # fmt: skip
        self.mrstft = MultiResolutionSTFTLoss(
            loss.stft_fft_sizes, loss.stft_hop_sizes, loss.stft_win_lengths,
            sample_rate=vae.sample_rate, perceptual_weighting=loss.perceptual_weighting,
        ).to(self.device)  # fmt: skip
        freeze_encoder = recipe.model.freeze_encoder
        if freeze_encoder:
            vae.encoder.requires_grad_(False)
        heads = None
        if loss.uses_latent_heads:
            with torch.random.fork_rng(devices=[]):  # the VAE's start does not depend on them
                heads = LatentHeads(
                    vae.config.latent_dim, vae.sample_rate, vae.config.hop_length,
                    spectrum=loss.latent_spectrum > 0, pitch=loss.latent_pitch > 0,
                )  # fmt: skip
        betas = tuple(optim.betas)
        groups = [{"params": [p for p in vae.parameters() if p.requires_grad]}]
        if heads is not None:
            groups.append({"params": list(heads.parameters()), "lr": optim.head_lr})
        optimizer = torch.optim.AdamW(
            groups, lr=optim.lr, betas=betas, weight_decay=optim.weight_decay
        )
        disc_optimizer = torch.optim.AdamW(
            discriminator.parameters(), lr=optim.disc_lr, betas=betas,
            weight_decay=optim.weight_decay,
        )  # fmt: skip

        def factor(step: int) -> float:
            return inverse_lr_factor(
                step, optim.inverse_lr_gamma, optim.inverse_lr_power, optim.inverse_lr_warmup
            )

        # Not prepared: accelerate would step a prepared scheduler once per process.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        self.disc_scheduler = torch.optim.lr_scheduler.LambdaLR(disc_optimizer, factor)
        self.autoencoder, self.discriminator, self.optimizer, self.disc_optimizer = acc.prepare(
            _Autoencode(vae, freeze_encoder, float(recipe.model.posterior_noise), heads),
            discriminator,
            optimizer,
            disc_optimizer,
        )
        self.vae = vae  # the network itself (prepare moves it in place)
        self.heads = heads  # likewise (None without latent heads)
        # after prepare, so that the average lives on the same device as the weights
        self.ema = EMA(vae, optim.ema_decay) if optim.ema_decay is not None else None

        entries = read_manifest(recipe.data.manifest, split=recipe.data.split)
        self.dataset = AudioClipDataset(
            entries, sample_rate=vae.sample_rate, clip_seconds=recipe.data.clip_seconds,
            seed=recipe.run.seed, crop_candidates=recipe.data.crop_candidates,
        )  # fmt: skip
        per_rank = len(self.dataset) // acc.num_processes
        if per_rank // optim.batch_size < 1:
            raise InvalidInputError(
                f"{recipe.data.manifest}: {len(self.dataset)} clips is fewer than one batch of "
                f"{optim.batch_size} per process ({acc.num_processes} processes)"
            )
        self.generator = process_generator(recipe.run.seed, acc.process_index)
        self.step = 0
        self.position = DataPosition()
        self._writer = None
        self._validation: list[tuple[str, torch.Tensor]] | None = None
        if resume:
            self._resume(resume)

    # ------------------------------------------------------------ state
    @property
    def uses_discriminator(self) -> bool:
        return self.recipe.loss.uses_discriminator

    def discriminator_active(self, step: int | None = None) -> bool:
        """Whether the adversarial terms are on at ``step`` (default: the next step)."""
        step = self.step if step is None else step
        return self.uses_discriminator and step >= self.recipe.loss.discriminator_start_step

    def updates_discriminator(self, step: int | None = None) -> bool:
        """Whether ``step`` (default: the next) updates the discriminator (odd steps, once on)."""
        step = self.step if step is None else step
        return self.discriminator_active(step) and step % 2 == 1

    def _head_names(self) -> list[str]:
        """The latent heads this run trains ("spectrum", "pitch"), as its checkpoints record."""
        if self.heads is None:
            return []
        return [n for n in ("spectrum", "pitch") if getattr(self.heads, n) is not None]

    def _resume(self, resume: bool | str | Path) -> None:
        folder = ckpt.latest_checkpoint(self.checkpoint_dir) if resume is True else Path(resume)
        if folder is None:
            raise CheckpointError(f"{self.checkpoint_dir}: no checkpoint to resume from")
        state = ckpt.read_checkpoint(folder, self.accelerator.process_index)
        trainer = state["trainer"]
        if trainer.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{folder}: not a VAE training checkpoint")
        if trainer.get("vae_config") != config_to_dict(self.vae.config):
            raise CheckpointError(f"{folder}: holds a VAE of another configuration than the recipe")
        heads = trainer.get("latent_heads", [])
        if heads != self._head_names():
            raise CheckpointError(
                f"{folder}: trained with latent heads {heads or 'none'}, the recipe has "
                f"{self._head_names() or 'none'} (loss.latent_spectrum / loss.latent_pitch "
                "must stay on or off through a run)"
            )
        self.vae.load_checked(state["model"], where=str(folder / "model.safetensors"))
        if self.ema is not None:
            if state["ema"]:
                self.ema.load_state_dict(state["ema"], trainer["ema_updates"])
            else:  # EMA switched on at resume: start it from the resumed weights
                self.ema = EMA(self.vae, self.ema.decay)
        discriminator = self.accelerator.unwrap_model(self.discriminator)
        discriminator.load_state_dict(load_safetensors(folder / DISCRIMINATOR_NAME))
        if self.heads is not None:
            self.heads.load_state_dict(load_safetensors(folder / HEADS_NAME))
        self.optimizer.load_state_dict(state["optimizer"])
        self.disc_optimizer.load_state_dict(load_torch_file(folder / DISC_OPTIMIZER_NAME))
        self.scheduler.load_state_dict(state["scheduler"])
        self.disc_scheduler.load_state_dict(json.loads((folder / DISC_SCHEDULER_NAME).read_text()))
        self.step = trainer["step"]
        self.position = DataPosition(trainer["epoch"], trainer["batch_in_epoch"])
        ckpt.restore_rng_state(state["rng"], self.generator)
        self._say(f"resumed from {folder} at step {self.step}")

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (all processes must call this)."""
        acc = self.accelerator
        main = acc.is_main_process
        trainer_state = {
            "kind": CHECKPOINT_KIND,
            "step": self.step,
            "epoch": self.position.epoch,
            "batch_in_epoch": self.position.batch,
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "processes": acc.num_processes,
            "vae_config": config_to_dict(self.vae.config),
            "latent_heads": self._head_names(),
            "recipe": vae_recipe_to_dict(self.recipe),
        }
        staging = ckpt.write_checkpoint(
            self.checkpoint_dir, self.step,
            self.vae.state_dict() if main else None,
            self.ema.state_dict() if main and self.ema is not None else None,
            self.optimizer.state_dict() if main else None,
            self.scheduler.state_dict() if main else None,
            trainer_state if main else None,
            ckpt.rng_state(self.generator), acc.process_index, main,
        )  # fmt: skip
        if main:
            from safetensors.torch import save_file

            discriminator = acc.unwrap_model(self.discriminator)
            state = {
                k: v.detach().contiguous().cpu() for k, v in discriminator.state_dict().items()
            }
            save_file(state, staging / DISCRIMINATOR_NAME)
            if self.heads is not None:
                heads = {
                    k: v.detach().contiguous().cpu() for k, v in self.heads.state_dict().items()
                }
                save_file(heads, staging / HEADS_NAME)
            torch.save(self.disc_optimizer.state_dict(), staging / DISC_OPTIMIZER_NAME)
            (staging / DISC_SCHEDULER_NAME).write_text(
                json.dumps(self.disc_scheduler.state_dict(), default=float)
            )
        acc.wait_for_everyone()
        folder = ckpt.step_folder(self.checkpoint_dir, self.step)
        if main:
            ckpt.finish_checkpoint(self.checkpoint_dir, self.step, self.recipe.run.keep_last)
        acc.wait_for_everyone()
        return folder

    # ------------------------------------------------------------- data
    def _batches(self):
        """This process's batches from the current data position on (seeded, sharded)."""
        return trainer_batches(self)

    def _audio(self, batch: dict[str, Any] | None) -> tuple[torch.Tensor, float]:
        """A micro-batch's audio [B, 1, N] on the device and its loss weight.

        A batch whose files were all unreadable (None) becomes one silent clip with weight
        0: every process still runs the same forward and backward passes, and the result
        does not depend on earlier batches (so resuming stays exact).
        """
        if batch is None:
            return torch.zeros(1, 1, self.clip_samples, device=self.device), 0.0
        audio = batch["audio"]  # [B, 1, N]
        flip_prob = self.recipe.data.phase_flip_prob
        if flip_prob > 0:  # random polarity inversion, as the official loader
            flip = torch.rand(audio.shape[0], generator=self.generator) < flip_prob  # [B]
            audio = torch.where(flip[:, None, None], -audio, audio)
        return audio.to(self.device), 1.0

    # ------------------------------------------------------------- loss
    def _reconstruction_terms(self, real, decoded, mean, std):
        """-> (real, fake cropped to one length, MR-STFT, KL, L1)."""
        real, fake = match_length(real, decoded.float())
        # argument order of the official trainer: (reals, decoded)
        mrstft = self.mrstft(real, fake)
        kl = vae_kl(mean.float(), std.float())
        l1 = (fake - real).abs().mean()
        return real, fake, mrstft, kl, l1

    def _objective(self, mrstft, kl, l1, adversarial, matching, heads: HeadLosses | None = None):
        """The autoencoder's weighted objective (a 0-dim tensor)."""
        w = self.recipe.loss
        objective = (
            w.mrstft * mrstft + w.kl * kl + w.l1 * l1 + w.adversarial * adversarial
            + w.feature_matching * matching
        )  # fmt: skip
        if heads is not None and w.uses_latent_heads:
            objective = (
                objective + w.latent_spectrum * heads.spectrum + w.latent_pitch * heads.pitch
            )
        return objective

    def heads_reach_encoder(self, step: int | None = None) -> bool:
        """Whether the latent heads' gradients reach the encoder at ``step`` (default: the
        next step): after ``loss.latent_head_warmup`` steps."""
        step = self.step if step is None else step
        return step >= self.recipe.loss.latent_head_warmup

    def _adversarial_terms(self, logits, features, batch: int):
        """Discriminator outputs on [real; fake] -> (L_G, L_FM, L_D)."""
        real_logits, fake_logits = split_batch(logits, batch)
        real_features, fake_features = split_batch(features, batch)
        adversarial = generator_adversarial_loss(fake_logits)
        matching = feature_matching_loss(
            real_features, fake_features, normalize=self.recipe.loss.feature_matching_normalize
        )
        return adversarial, matching, discriminator_hinge_loss(real_logits, fake_logits)

    def generator_pass(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Autoencoder objective of audio [B, 1, N] (with gradients) and the logged terms."""
        decoded, mean, std, heads = self.autoencoder(
            audio, self.generator, self.heads_reach_encoder()
        )
        real, fake, mrstft, kl, l1 = self._reconstruction_terms(audio, decoded, mean, std)
        zero = mrstft.new_zeros(())
        adversarial = matching = disc_loss = zero
        if self.discriminator_active():
            discriminator = self.accelerator.unwrap_model(self.discriminator)
            logits, features = discriminator.frozen(torch.cat([real, fake]))
            adversarial, matching, disc_loss = self._adversarial_terms(
                logits, features, real.shape[0]
            )
        objective = self._objective(mrstft, kl, l1, adversarial, matching, heads)
        terms = torch.stack([objective, mrstft, kl, l1, adversarial, matching, disc_loss, *heads])
        return objective, terms.detach()

    def discriminator_pass(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Discriminator hinge loss on audio [B, 1, N] and its reconstruction, and the terms."""
        with torch.no_grad():
            autoencoder = self.accelerator.unwrap_model(self.autoencoder)
            decoded, mean, std, heads = autoencoder(audio, self.generator)
            real, fake, mrstft, kl, l1 = self._reconstruction_terms(audio, decoded, mean, std)
        logits, features = self.discriminator(torch.cat([real, fake]))
        adversarial, matching, disc_loss = self._adversarial_terms(logits, features, real.shape[0])
        objective = self._objective(mrstft, kl, l1, adversarial, matching, heads).detach()
        terms = torch.stack([objective, mrstft, kl, l1, adversarial, matching, disc_loss, *heads])
        return disc_loss, terms.detach()

    def train_step(self, micro_batches: list[dict[str, Any] | None]) -> dict[str, Any]:
        """One update of one network over ``micro_batches`` (gradients accumulated).

        Returns ``update`` ("autoencoder" or "discriminator") and the :data:`TERMS`,
        averaged over the micro-batches and the processes.
        """
        acc, optim = self.accelerator, self.recipe.optim
        update_disc = self.updates_discriminator()
        network, optimizer, scheduler, run_pass = (
            (self.discriminator, self.disc_optimizer, self.disc_scheduler, self.discriminator_pass)
            if update_disc
            else (self.autoencoder, self.optimizer, self.scheduler, self.generator_pass)
        )
        total = torch.zeros(len(TERMS), device=self.device)
        for batch in micro_batches:
            audio, weight = self._audio(batch)
            with acc.accumulate(self.autoencoder, self.discriminator):
                objective, terms = run_pass(audio)
                acc.backward(objective * weight)
                if acc.sync_gradients and optim.max_grad_norm > 0:
                    acc.unscale_gradients(optimizer)
                    torch.nn.utils.clip_grad_norm_(network.parameters(), optim.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            total += terms * (weight / len(micro_batches))
        scheduler.step()
        if not update_disc and self.ema is not None:
            self.ema.update(self.vae)
        self.step += 1
        values = acc.reduce(total, reduction="mean").tolist()
        return {"update": "discriminator" if update_disc else "autoencoder",
                **dict(zip(TERMS, values))}  # fmt: skip

    # ------------------------------------------------------------ train
    def train(self) -> Path:
        """Train to ``optim.max_steps``, checkpointing on the way; returns the last checkpoint."""
        acc, recipe = self.accelerator, self.recipe
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "recipe.yaml").write_text(yaml.safe_dump(vae_recipe_to_dict(recipe)))
            truncate_jsonl(self.run_dir / "metrics.jsonl", self.step)
            truncate_jsonl(self.run_dir / "validation.jsonl", self.step)
        self._writer = tensorboard_writer(acc, self.run_dir / "logs")
        self.autoencoder.train()
        self.discriminator.train()
        progress = tqdm(
            total=recipe.optim.max_steps, initial=self.step, desc="vae",
            disable=not acc.is_main_process,
        )  # fmt: skip
        last = None
        started, started_step = time.perf_counter(), self.step
        batches = self._batches()
        while self.step < recipe.optim.max_steps:
            micro_batches = [next(batches) for _ in range(recipe.optim.grad_accum)]
            record = self.train_step(micro_batches)
            progress.update(1)
            progress.set_postfix(mrstft=f"{record['mrstft']:.4f}")
            if acc.is_main_process:
                self._log_metrics(record, started, started_step)
            if self.step % recipe.run.checkpoint_every == 0 or self.step == recipe.optim.max_steps:
                last = self.save_checkpoint()
            if recipe.run.validate_every and self.step % recipe.run.validate_every == 0:
                self.validate()
            stop = stop_for_time(self, started)
            if stop is not None:
                last = stop
                break
        progress.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.check_ranks_in_sync()
        return last or ckpt.step_folder(self.checkpoint_dir, self.step)

    def check_ranks_in_sync(self) -> list[str]:
        """Hash every process's VAE and discriminator weights into ``rank_weights.json``;
        fail loudly if the processes have drifted apart."""
        modules = {
            "vae": self.vae,
            "discriminator": self.accelerator.unwrap_model(self.discriminator),
        }
        if self.heads is not None:
            modules["latent_heads"] = self.heads
        return check_ranks_in_sync(self.accelerator, modules, self.run_dir / "rank_weights.json")

    def _log_metrics(self, record: dict[str, Any], started: float, started_step: int) -> None:
        rate = (self.step - started_step) / max(time.perf_counter() - started, 1e-9)
        record = {
            "step": self.step, **record, "lr": self.scheduler.get_last_lr()[0],
            "disc_lr": self.disc_scheduler.get_last_lr()[0], "steps_per_s": rate,
        }  # fmt: skip
        append_jsonl(self.run_dir / "metrics.jsonl", record)
        if self._writer is not None and self.step % self.recipe.run.log_every == 0:
            for name in (*TERMS, "lr", "disc_lr", "steps_per_s"):
                self._writer.add_scalar(f"train/{name}", record[name], self.step)

    # ------------------------------------------------------- validation
    def trained_vae(self) -> WaveformVAE:
        """A CPU float32 copy of the VAE with the EMA weights (the weights without EMA)."""
        with torch.random.fork_rng(devices=[]):  # building it must not move any RNG
            model = WaveformVAE(self.vae.config)
        if self.ema is not None:
            self.ema.copy_to(model)
        else:
            model.load_state_dict({k: v.detach().cpu() for k, v in self.vae.state_dict().items()})
        return model.eval()

    def _validation_clips(self) -> list[tuple[str, torch.Tensor]]:
        """Up to ``run.validation_clips`` readable clips [1, n]: the first
        ``run.validation_seconds`` of each file (or the whole of a shorter one)."""
        if self._validation is None:
            from ezaudio.data.dataset import AudioClipDataset
            from ezaudio.data.manifest import read_manifest

            data, run = self.recipe.data, self.recipe.run
            entries = read_manifest(data.manifest, split=data.validation_split or data.split)
            seconds = max(run.validation_seconds, data.clip_seconds)
            dataset = AudioClipDataset(
                entries, sample_rate=self.vae.sample_rate, clip_seconds=seconds,
                seed=run.seed, random_crop=False,
            )  # fmt: skip
            clips = []
            for index in range(len(dataset)):
                if len(clips) == run.validation_clips:
                    break
                item = dataset[index]
                if item is not None:  # the real samples, not the padding (but >= one clip)
                    length = max(int(item["valid"].sum()), self.clip_samples)
                    clips.append((item["id"], item["audio"][:, :length]))
            self._validation = clips
        return self._validation

    @torch.no_grad()
    def validate(self) -> list[Path]:
        """Write reconstructions (posterior mean) of the validation clips under
        ``samples/step-N/`` with their originals, and log their MR-STFT (main process)."""
        from ezaudio.data.audio import write_audio

        paths: list[Path] = []
        if self.accelerator.is_main_process:
            model = self.trained_vae().to(self.device)
            folder = self.run_dir / "samples" / f"step-{self.step:08d}"
            rate = self.vae.sample_rate
            distances = []
            for index, (clip_id, audio) in enumerate(self._validation_clips()):
                audio = audio[None].to(self.device)  # [1, 1, N]
                decoded = model.decode(model.encode(audio, sample=False)).float()
                real, fake = match_length(audio, decoded)
                distances.append(self.mrstft(real, fake).item())
                stem = f"{index:02d}-{clip_id}"
                paths.append(write_audio(folder / f"{stem}-real.wav", real[0].cpu().numpy(), rate))
                paths.append(write_audio(folder / f"{stem}-recon.wav", fake[0].cpu().numpy(), rate))
                if self._writer is not None:
                    self._writer.add_audio(f"recon/{stem}", fake[0, 0].cpu(), self.step, rate)
            if distances:
                value = sum(distances) / len(distances)
                append_jsonl(
                    self.run_dir / "validation.jsonl", {"step": self.step, "mrstft": value}
                )
                if self._writer is not None:
                    self._writer.add_scalar("validation/mrstft", value, self.step)
        self.accelerator.wait_for_everyone()
        return paths

    def export(self, folder: str | Path) -> Path:
        """Write the VAE (EMA weights if any) as a folder ``WaveformVAE.from_pretrained`` loads."""
        folder = Path(folder)
        if self.accelerator.is_main_process:
            self.trained_vae().save_pretrained(folder)
        self.accelerator.wait_for_everyone()
        return folder

    def _say(self, message: str) -> None:
        if self.accelerator.is_main_process:
            tqdm.write(message)
