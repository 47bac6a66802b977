"""Oobleck waveform VAE: parity with the official outputs, shapes, bottleneck, KL, save/load."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ezaudio.config import VAE_PRESETS, VAEConfig
from ezaudio.errors import InvalidInputError
from ezaudio.nn.oobleck import (
    SnakeBeta,
    WaveformVAE,
    WNConv1d,
    WNConvTranspose1d,
    vae_kl,
)

TOLERANCE = 1e-5
# Layout of the reference model (README "Small VAE").
SMALL = VAEConfig(
    sample_rate=24000, channels=16, c_mults=(1, 2, 4), strides=(2, 4, 5), latent_dim=8
)


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref|."""
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture
def small_vae(reference_dir: Path) -> WaveformVAE:
    model = WaveformVAE(SMALL)
    model.load_checked(load_file(reference_dir / "vae_small_weights.safetensors"))
    return model.eval()


@pytest.fixture
def small_io(reference_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(reference_dir / "vae_small_io.safetensors")


@pytest.fixture
def tiny_vae() -> WaveformVAE:
    torch.manual_seed(0)
    return WaveformVAE(VAE_PRESETS["tiny"]).eval()


def test_reference_config_matches_small_layout(reference_dir: Path) -> None:
    official = json.loads((reference_dir / "vae_small_config.json").read_text())
    decoder = official["model"]["decoder"]["config"]
    assert tuple(decoder["strides"]) == SMALL.strides
    assert tuple(decoder["c_mults"]) == SMALL.c_mults
    assert decoder["channels"] == SMALL.channels
    assert decoder["latent_dim"] == SMALL.latent_dim


def test_state_dict_keys_are_official(small_vae: WaveformVAE, reference_dir: Path) -> None:
    official = load_file(reference_dir / "vae_small_weights.safetensors")
    ours = small_vae.state_dict()
    assert set(ours) == set(official)
    for key, value in official.items():
        assert torch.equal(ours[key], value), key


@torch.no_grad()
def test_encoder_output_matches_reference(
    small_vae: WaveformVAE, small_io: dict[str, torch.Tensor]
) -> None:
    out = small_vae.encoder_output(small_io["audio"])  # [2, 16, 25]
    assert out.shape == small_io["encoder_out"].shape
    assert relative_error(out, small_io["encoder_out"]) <= TOLERANCE


@torch.no_grad()
def test_decode_matches_reference(
    small_vae: WaveformVAE, small_io: dict[str, torch.Tensor]
) -> None:
    audio = small_vae.decode(small_io["latent"])  # [2, 1, 992]
    assert audio.shape == small_io["decoded"].shape
    assert relative_error(audio, small_io["decoded"]) <= TOLERANCE


@pytest.mark.parametrize("transposed", [False, True])
def test_weight_norm_matches_torch(transposed: bool) -> None:
    torch.manual_seed(0)
    cls_ours, cls_torch = (
        (WNConvTranspose1d, nn.ConvTranspose1d) if transposed else (WNConv1d, nn.Conv1d)
    )
    ours = cls_ours(6, 4, kernel_size=4, stride=2, padding=1)
    ref = nn.utils.parametrizations.weight_norm(
        cls_torch(6, 4, kernel_size=4, stride=2, padding=1), dim=0
    )
    with torch.no_grad():
        ours.weight_g.mul_(torch.rand_like(ours.weight_g) + 0.5)
        ref.parametrizations.weight.original0.copy_(ours.weight_g)
        ref.parametrizations.weight.original1.copy_(ours.weight_v)
        ref.bias.copy_(ours.bias)
    # dim 0 is the output channel of a conv and the input channel of a transposed conv
    assert ours.weight_g.shape == (6 if transposed else 4, 1, 1)
    x = torch.randn(2, 6, 11)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-6)


def test_weight_norm_init_starts_at_v() -> None:
    conv = WNConv1d(3, 5, kernel_size=7)
    torch.testing.assert_close(conv.weight, conv.weight_v.detach())


def test_snake_beta_init_and_formula() -> None:
    snake = SnakeBeta(3)
    assert torch.equal(snake.alpha, torch.zeros(3))
    assert torch.equal(snake.beta, torch.zeros(3))
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([0.0, 0.5, -0.3]))
        snake.beta.copy_(torch.tensor([0.2, 0.0, 0.7]))
    x = torch.randn(2, 3, 5)
    alpha = snake.alpha.exp()[None, :, None]
    beta = snake.beta.exp()[None, :, None]
    expected = x + 1 / (beta + 1e-9) * torch.sin(alpha * x) ** 2
    torch.testing.assert_close(snake(x), expected)


@torch.no_grad()
def test_encode_shapes_follow_hop_length(tiny_vae: WaveformVAE) -> None:
    hop = tiny_vae.hop_length
    assert hop == 40
    assert tiny_vae.latent_rate == 16000 / 40
    assert tiny_vae.sample_rate == 16000
    assert tiny_vae.latent_dim == 8
    audio = torch.randn(3, 1, 12 * hop)
    assert tiny_vae.encoder_output(audio).shape == (3, 16, 12)
    latents = tiny_vae.encode(audio)
    assert latents.shape == (3, 8, 12)
    # odd last stride (5): the transposed conv gives 5 L - 1 samples, as officially
    assert tiny_vae.decode(latents).shape == (3, 1, 12 * hop - 8)


@torch.no_grad()
def test_encode_even_strides_round_trip_length() -> None:
    config = dataclasses.replace(VAE_PRESETS["tiny"], strides=(2, 2, 4))
    model = WaveformVAE(config).eval()
    audio = torch.randn(1, 1, 10 * 16)
    latents = model.encode(audio, sample=False)
    assert latents.shape == (1, 8, 10)
    assert model.decode(latents).shape == audio.shape


@torch.no_grad()
def test_encode_mean_and_sampling(tiny_vae: WaveformVAE) -> None:
    audio = torch.randn(2, 1, 400)
    mean, std = tiny_vae.encode_distribution(audio)
    raw_mean, raw_scale = tiny_vae.encoder_output(audio).chunk(2, dim=1)
    torch.testing.assert_close(mean, raw_mean)
    torch.testing.assert_close(std, nn.functional.softplus(raw_scale) + 1e-4)
    torch.testing.assert_close(tiny_vae.encode(audio, sample=False), mean)

    first = tiny_vae.encode(audio, generator=torch.Generator().manual_seed(7))
    second = tiny_vae.encode(audio, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert not torch.allclose(first, mean)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, mean + std * noise)


def test_vae_kl_matches_hand_computation() -> None:
    mean = torch.tensor([[[0.5, -1.0]], [[0.0, 2.0]]]).repeat(1, 2, 1)  # [2, 2, 2]
    std = torch.tensor([[[1.0, 0.5]], [[2.0, 1.0]]]).repeat(1, 2, 1)
    # per element: mean^2 + var - log var - 1, summed over 2 channels, mean over B x L
    terms = [
        0.25 + 1 - 0 - 1,
        1 + 0.25 - math.log(0.25) - 1,
        0 + 4 - math.log(4) - 1,
        4 + 1 - 0 - 1,
    ]
    expected = 2 * sum(terms) / 4
    assert vae_kl(mean, std).item() == pytest.approx(expected, rel=1e-6)
    assert vae_kl(torch.zeros(2, 3, 4), torch.ones(2, 3, 4)).item() == 0.0


def test_forward_returns_reconstruction_and_kl(tiny_vae: WaveformVAE) -> None:
    audio = torch.randn(2, 1, 400)
    decoded, kl = tiny_vae(audio, generator=torch.Generator().manual_seed(0))
    assert decoded.shape == (2, 1, 392)
    assert kl.dim() == 0 and kl.item() >= 0
    (decoded.square().mean() + kl).backward()
    assert tiny_vae.encoder.layers[0].weight_g.grad is not None


@torch.no_grad()
def test_save_load_round_trip(tiny_vae: WaveformVAE, tmp_path: Path) -> None:
    audio = torch.randn(2, 1, 400)
    tiny_vae.save_pretrained(tmp_path / "vae")
    loaded = WaveformVAE.from_pretrained(tmp_path / "vae")
    assert loaded.config == tiny_vae.config
    assert torch.equal(loaded.encoder_output(audio), tiny_vae.encoder_output(audio))
    latents = tiny_vae.encode(audio, sample=False)
    assert torch.equal(loaded.decode(latents), tiny_vae.decode(latents))


@torch.no_grad()
def test_elu_and_final_tanh_variant() -> None:
    config = dataclasses.replace(VAE_PRESETS["tiny"], use_snake=False, final_tanh=True)
    model = WaveformVAE(config).eval()
    assert not any(k.endswith((".alpha", ".beta")) for k in model.state_dict())
    decoded = model.decode(torch.randn(1, 8, 5) * 10)
    assert decoded.abs().max() <= 1


def test_bad_inputs_are_refused(tiny_vae: WaveformVAE) -> None:
    with pytest.raises(InvalidInputError, match="audio must be"):
        tiny_vae.encode(torch.randn(1, 2, 400))
    with pytest.raises(InvalidInputError, match="audio must be"):
        tiny_vae.encode(torch.randn(1, 400))
    with pytest.raises(InvalidInputError, match="at least 40 samples"):
        tiny_vae.encode(torch.randn(1, 1, 39))
    with pytest.raises(InvalidInputError, match="latents must be"):
        tiny_vae.decode(torch.randn(1, 7, 5))
