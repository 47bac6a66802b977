"""The latent heads of the VAE trainer (loss.latent_spectrum / loss.latent_pitch): their
targets on known signals, their warm-up, checkpoints, resume and export."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import RATE, tiny_vae_recipe

from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.train.latent_heads import (
    BINS_PER_OCTAVE,
    LOW_HZ,
    N_FFT,
    LatentHeads,
    frame_power,
    log_frequency_filters,
    pitch_targets,
    spectrum_targets,
)
from ezaudio.train.vae_recipe import vae_recipe_from_dict
from ezaudio.train.vae_trainer import HEADS_NAME, VAETrainer

HOP = 640  # the shipped VAE's latent hop at 16 kHz


pytestmark = pytest.mark.usefixtures("one_thread")


def sine(hz: float, seconds: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    return (amplitude * torch.sin(2 * math.pi * hz * t))[None, None]  # [1, 1, N]


def centre_hz(index: int) -> float:
    return LOW_HZ * 2.0 ** (index / BINS_PER_OCTAVE)


# ------------------------------------------------------------------------ targets
def test_log_frequency_filters_cover_40_hz_to_7_6_khz_in_24ths_of_an_octave():
    filters = log_frequency_filters(16000)
    assert filters.shape == (182, N_FFT // 2 + 1)  # int(log2(7600 / 40) * 24) + 1 bins
    torch.testing.assert_close(filters.sum(dim=1), torch.ones(182))
    peaks = filters.argmax(dim=1) * 16000 / N_FFT  # Hz of each row's largest weight
    for index in (0, 60, 120, 181):
        assert abs(peaks[index] - centre_hz(index)) <= 16000 / N_FFT, index
    # a lower rate stops the grid under its Nyquist frequency
    assert centre_hz(log_frequency_filters(8000).shape[0] - 1) <= 0.475 * 8000
    with pytest.raises(InvalidInputError, match="no log-frequency bins"):
        log_frequency_filters(80)


@pytest.mark.parametrize("hz", [110.0, 440.0, 1234.0, 3000.0])
def test_the_pitch_target_of_a_sine_is_its_frequency_and_tonal(hz):
    filters = log_frequency_filters(RATE)
    frames = RATE // HOP
    index, tonal = pitch_targets(frame_power(sine(hz), HOP, frames), filters)  # [1, 25]
    inner = slice(2, frames - 2)  # windows wholly inside the clip
    assert tonal[0, inner].all()
    for bin_index in index[0, inner].tolist():
        # within half a grid step (1/48 octave), plus the FFT's 7.8 Hz resolution at 110 Hz
        assert abs(math.log2(centre_hz(bin_index) / hz)) <= 1 / 48 + 0.06, (hz, bin_index)


def test_noise_and_silence_are_not_tonal():
    filters = log_frequency_filters(RATE)
    noise = 0.3 * torch.randn(1, 1, RATE, generator=torch.Generator().manual_seed(0))
    _, tonal = pitch_targets(frame_power(noise, HOP, 25), filters)
    assert not tonal.any()
    _, tonal = pitch_targets(frame_power(torch.zeros(1, 1, RATE), HOP, 25), filters)
    assert not tonal.any()  # faint
    _, tonal = pitch_targets(frame_power(sine(440.0, amplitude=1e-4), HOP, 25), filters)
    assert not tonal.any()  # a tone ~74 dB under full scale is faint too


def test_the_spectrum_target_is_the_log_power_in_each_band():
    filters = log_frequency_filters(RATE)
    quiet = spectrum_targets(frame_power(sine(440.0, amplitude=0.1), HOP, 25), filters)
    loud = spectrum_targets(frame_power(sine(440.0, amplitude=0.4), HOP, 25), filters)
    band = round(math.log2(440.0 / LOW_HZ) * BINS_PER_OCTAVE)
    # 4x the amplitude is 16x the power: log 16 more in the tone's band, nothing elsewhere
    assert abs(float(loud[0, band, 12] - quiet[0, band, 12]) - math.log(16.0)) < 0.01
    far = band + 2 * BINS_PER_OCTAVE  # two octaves up: only the floor
    assert abs(float(loud[0, far, 12] - quiet[0, far, 12])) < 0.01
    with pytest.raises(InvalidInputError, match="longer than"):
        frame_power(sine(440.0), N_FFT + 1, 3)


def test_the_heads_learn_their_targets():
    torch.manual_seed(0)
    heads = LatentHeads(latent_dim=8, sample_rate=RATE, hop=HOP, spectrum=True, pitch=True)
    audio = torch.cat([sine(220.0), sine(660.0), sine(1500.0)])  # [3, 1, N]
    # stand-in latents that carry the pitch: one channel per clip
    mean = torch.zeros(3, 8, 25)
    mean[torch.arange(3), torch.arange(3)] = 1.0
    optimizer = torch.optim.Adam(heads.parameters(), lr=3e-3)
    first = heads(audio, mean)
    for _ in range(60):
        optimizer.zero_grad()
        losses = heads(audio, mean)
        (losses.spectrum + losses.pitch).backward()
        optimizer.step()
    last = heads(audio, mean)
    assert last.spectrum < 0.3 * first.spectrum, (first, last)
    assert last.pitch < 0.1 * first.pitch, (first, last)  # from ~log(182) = 5.2


def test_a_head_that_is_off_costs_nothing_and_no_tonal_frame_gives_zero():
    heads = LatentHeads(latent_dim=8, sample_rate=RATE, hop=HOP, spectrum=False, pitch=True)
    assert heads.spectrum is None
    noise = 0.3 * torch.randn(2, 1, RATE, generator=torch.Generator().manual_seed(1))
    mean = torch.randn(2, 8, 25, requires_grad=True)
    losses = heads(noise, mean)
    assert losses.spectrum == 0 and losses.pitch == 0
    losses.pitch.backward()  # the head still took part (every parameter has a gradient)
    assert all(p.grad is not None for p in heads.pitch.parameters())


# ------------------------------------------------------------------------ trainer
def heads_recipe(world, run_dir, **loss):
    """Only the heads' losses (the reconstruction weights 0, no weight decay), so that the
    encoder moves only through them."""
    return tiny_vae_recipe(
        world, run_dir,
        optim={"weight_decay": 0.0, "max_steps": 4},
        data={"phase_flip_prob": 0.0},
        loss={"adversarial": 0.0, "feature_matching": 0.0, "mrstft": 0.0, "kl": 0.0,
              "latent_spectrum": 1.0, "latent_pitch": 0.5, "latent_head_warmup": 2, **loss},
    )  # fmt: skip


def test_the_heads_reach_the_encoder_only_after_their_warm_up(world, tmp_path):
    trainer = VAETrainer(vae_recipe_from_dict(heads_recipe(world, tmp_path / "r")).validate())
    assert trainer._head_names() == ["spectrum", "pitch"]

    def encoder():
        return {k: v.clone() for k, v in trainer.vae.encoder.state_dict().items()}

    def heads():
        return {k: v.clone() for k, v in trainer.heads.state_dict().items()}

    batches = trainer._batches()
    start, start_heads = encoder(), heads()
    for _ in range(2):  # the warm-up: the heads learn, the encoder does not move
        record = trainer.train_step([next(batches)])
        assert record["latent_spectrum"] > 0 and math.isfinite(record["latent_pitch"])
    assert all(torch.equal(v, start[k]) for k, v in encoder().items())
    assert any(not torch.equal(v, start_heads[k]) for k, v in heads().items())
    trainer.train_step([next(batches)])
    assert any(not torch.equal(v, start[k]) for k, v in encoder().items())


def test_heads_are_checkpointed_resumed_and_left_out_of_the_export(world, tmp_path):
    straight = VAETrainer(vae_recipe_from_dict(heads_recipe(world, tmp_path / "a")).validate())
    straight.train()
    final = tmp_path / "a" / "checkpoints" / "step-00000004"
    assert (final / HEADS_NAME).is_file()
    # a second run resumed from step 2 ends where the straight one did, heads included
    recipe = vae_recipe_from_dict(heads_recipe(world, tmp_path / "a")).validate()
    resumed = VAETrainer(recipe, resume=tmp_path / "a" / "checkpoints" / "step-00000002")
    assert resumed.step == 2
    recipe.run.output_dir = str(tmp_path / "b")
    resumed.run_dir, resumed.checkpoint_dir = tmp_path / "b", tmp_path / "b" / "checkpoints"
    resumed.train()
    for name in ("model.safetensors", HEADS_NAME):
        a, b = (
            load_file(final / name),
            load_file(tmp_path / "b" / "checkpoints" / final.name / name),
        )
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    exported = straight.export(tmp_path / "vae")
    assert (
        WaveformVAE.from_pretrained(exported).state_dict().keys()
        == straight.vae.state_dict().keys()
    )
    assert not any("head" in k for k in load_file(exported / "model.safetensors"))
    # heads switched off (or on) within a run: refused in one line
    off = vae_recipe_from_dict(heads_recipe(world, tmp_path / "a", latent_spectrum=0.0)).validate()
    with pytest.raises(CheckpointError, match=r"latent heads \['spectrum', 'pitch'\].*\['pitch'\]"):
        VAETrainer(off, resume=final)


@pytest.mark.parametrize(
    ("loss", "model", "message"),
    [
        ({"latent_pitch": -1.0}, {}, "loss.latent_pitch must be >= 0"),
        ({"latent_spectrum": "x"}, {}, "loss.latent_spectrum must be a number"),
        ({"latent_head_warmup": -1}, {}, "loss.latent_head_warmup must be an integer >= 0"),
        ({"latent_pitch": 0.5}, {"freeze_encoder": True}, "must be 0 with model.freeze_encoder"),
    ],
)
def test_bad_head_settings_are_refused(world, tmp_path, loss, model, message):
    recipe = tiny_vae_recipe(world, tmp_path / "r", loss=loss)
    recipe["model"].update(model)
    if model.get("freeze_encoder"):
        recipe["model"]["init_from"] = str(world / "vae")
        del recipe["model"]["vae_preset"]
    with pytest.raises(InvalidInputError, match=message):
        vae_recipe_from_dict(recipe).validate()
    recipe = tiny_vae_recipe(world, tmp_path / "r", optim={"head_lr": 0.0})
    with pytest.raises(InvalidInputError, match="optim.head_lr must be positive"):
        vae_recipe_from_dict(recipe).validate()
