"""PANNs CNN14 (16 kHz): front end against the original's outputs, official checkpoint layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.eval.panns import (
    Cnn14,
    Cnn14Config,
    Cnn14Output,
    LogMelFrontEnd,
    slaney_mel_filterbank,
    windowed_dft_kernels,
)

LOGMEL_TOLERANCE_DB = 1e-3
MELW_TOLERANCE = 1e-6
SAMPLE_RATE = 16000
REAL_KEY = "spectrogram_extractor.stft.conv_real.weight"
IMAG_KEY = "spectrogram_extractor.stft.conv_imag.weight"
MELW_KEY = "logmel_extractor.melW"
BUFFER_MARKERS = ("running_mean", "running_var", "num_batches_tracked")

REFERENCE_DIR = Path(__file__).parent.parent / "data_files" / "reference"


def reference_io() -> dict[str, torch.Tensor]:
    return load_file(REFERENCE_DIR / "panns_frontend_io.safetensors")


def manifest() -> dict[str, list[int]]:
    data = json.loads((REFERENCE_DIR / "manifest_panns_cnn14_16k.json").read_text())
    return data["state_dict"]


def torchlibrosa_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's STFT conv kernels, derived independently of the code under test.

    torchlibrosa builds the DFT matrix W[x, y] = exp(-2 pi i / N)^(x y), multiplies
    its first N/2 + 1 columns by the periodic Hann window along x and stores the
    transposed real and imaginary parts as Conv1d weights [N/2 + 1, 1, N].
    """
    x, y = np.meshgrid(np.arange(n_fft), np.arange(n_fft))
    dft = np.power(np.exp(-2j * np.pi / n_fft), x * y)  # [N, N] complex128
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann [N]
    windowed = dft[:, : n_fft // 2 + 1] * window[:, None]  # [N, N/2 + 1]
    real = torch.tensor(np.real(windowed).T, dtype=torch.float32)[:, None, :]
    imag = torch.tensor(np.imag(windowed).T, dtype=torch.float32)[:, None, :]
    return real, imag


@pytest.fixture(scope="module")
def model() -> Cnn14:
    """A random CNN14 in eval mode, built once (81 M parameters). Do not mutate."""
    torch.manual_seed(0)
    return Cnn14(Cnn14Config()).eval()


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    """A state dict with the manifest's keys and shapes: random weights, real front end."""
    generator = torch.Generator().manual_seed(1)
    state: dict[str, torch.Tensor] = {}
    for key, shape in manifest().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(12345, dtype=torch.int64)
        elif key.endswith("running_var"):  # must stay positive
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        else:
            state[key] = 0.02 * torch.randn(shape, generator=generator)
    state[REAL_KEY], state[IMAG_KEY] = torchlibrosa_kernels(512)
    state[MELW_KEY] = reference_io()["melW"].clone()
    return state


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory, official_state) -> Path:
    """``official_state`` saved as the PANNs release does: {'model': sd, 'iteration': n}."""
    path = tmp_path_factory.mktemp("panns") / "Cnn14_16k_mAP=0.438.pth"
    torch.save({"model": official_state, "iteration": 0}, path)
    return path


# ---- front end ---------------------------------------------------------------------------


def test_mel_bank_matches_reference() -> None:
    bank = slaney_mel_filterbank(SAMPLE_RATE, 512, 64, 50, 8000)  # [257, 64]
    reference = reference_io()["melW"]
    assert bank.shape == (257, 64) and bank.dtype == np.float64
    error = float(np.abs(bank - reference.double().numpy()).max())
    assert error <= MELW_TOLERANCE, f"melW max abs error {error:.3g}"


@torch.no_grad()
def test_front_end_matches_reference_logmel(model: Cnn14) -> None:
    io = reference_io()
    logmel = LogMelFrontEnd()(io["waveform"])  # [2, 1, 201, 64]
    assert logmel.shape == io["logmel"].shape == (2, 1, 201, 64)
    assert logmel.dtype == torch.float32
    error = float((logmel - io["logmel"]).abs().max())
    assert error <= LOGMEL_TOLERANCE_DB, f"log-mel max abs error {error:.3g} dB"
    assert torch.equal(model.log_mel(io["waveform"]), logmel)


@torch.no_grad()
def test_stft_kernels_are_the_windowed_dft_basis() -> None:
    """Our kernels equal the original's, and running them as convs gives the reference log-mel."""
    real, imag = torchlibrosa_kernels(512)
    ours_real, ours_imag = windowed_dft_kernels(512)
    assert ours_real.shape == ours_imag.shape == (257, 1, 512)
    assert float((ours_real - real.double()).abs().max()) <= 1e-6
    assert float((ours_imag - imag.double()).abs().max()) <= 1e-6

    io = reference_io()
    padded = F.pad(io["waveform"][:, None, :], (256, 256), mode="reflect")  # [2, 1, 32512]
    power = F.conv1d(padded, real, stride=160) ** 2 + F.conv1d(padded, imag, stride=160) ** 2
    mel = power.transpose(1, 2)[:, None] @ io["melW"]  # [2, 1, 201, 64]
    logmel = 10 * torch.log10(mel.clamp(min=1e-10))
    assert float((logmel - io["logmel"]).abs().max()) <= LOGMEL_TOLERANCE_DB


# ---- official checkpoint -----------------------------------------------------------------


def test_official_checkpoint_loads_strictly(official_file: Path, official_state) -> None:
    loaded = Cnn14.from_official(official_file)
    assert not loaded.training
    state = loaded.state_dict()
    assert set(state) == set(manifest()) and len(state) == 84
    for key, value in official_state.items():
        assert torch.equal(state[key], value), key

    shapes = manifest()
    parameters = sum(math.prod(s) for k, s in shapes.items() if not k.endswith(BUFFER_MARKERS))
    assert loaded.num_parameters() == parameters == 81_033_231
    assert sum(v.numel() for v in state.values()) == sum(math.prod(s) for s in shapes.values())
    # the front-end constants are frozen, as in the original
    assert not any(p.requires_grad for n, p in loaded.named_parameters() if "extractor" in n)

    with torch.no_grad():
        out = loaded(reference_io()["waveform"])
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.embedding).all()


def test_official_checkpoint_missing_key_is_named(
    tmp_path: Path, official_state: dict[str, torch.Tensor]
) -> None:
    state = dict(official_state)
    del state["conv_block3.bn1.running_var"]
    path = tmp_path / "missing.pth"
    torch.save({"model": state, "iteration": 0}, path)
    with pytest.raises(CheckpointError, match=r"missing keys \[conv_block3\.bn1\.running_var\]"):
        Cnn14.from_official(path)


@pytest.mark.parametrize(
    ("key", "shape"),
    [("fc1.bias", (2047,)), ("conv_block1.conv1.weight", (64, 1, 3, 5)), (MELW_KEY, (257, 128))],
)
def test_wrong_shape_is_named(model: Cnn14, official_state, key: str, shape) -> None:
    state = {**official_state, key: torch.zeros(shape)}
    with pytest.raises(CheckpointError, match=r"wrong shapes \[" + key.replace(".", r"\.")):
        model.load_checked(state, where="cnn14.pth")


@pytest.mark.parametrize("key", [REAL_KEY, IMAG_KEY, MELW_KEY])
def test_different_front_end_values_are_refused(model: Cnn14, official_state, key: str) -> None:
    state = {**official_state, key: official_state[key] * 1.01}
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.") + " differs"):
        model.load_checked(state, where="cnn14.pth")


def test_not_a_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "Cnn14.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="Cnn14.pth"):
        Cnn14.from_official(path)
    with pytest.raises(CheckpointError, match="not found"):
        Cnn14.from_official(tmp_path / "absent.pth")


# ---- forward -----------------------------------------------------------------------------


@torch.no_grad()
@pytest.mark.parametrize(("seconds", "batch"), [(1, 2), (2, 2), (10, 1)])
def test_forward_shapes_and_finite(model: Cnn14, seconds: int, batch: int) -> None:
    waveform = 0.1 * torch.randn(batch, seconds * SAMPLE_RATE)
    out = model(waveform)
    assert isinstance(out, Cnn14Output)
    assert out.embedding.shape == (batch, 2048)
    assert out.logits.shape == out.probabilities.shape == (batch, 527)
    for tensor in (out.embedding, out.logits, out.probabilities):
        assert torch.isfinite(tensor).all()
    assert (out.embedding >= 0).all()  # ReLU output
    assert torch.equal(out.probabilities, torch.sigmoid(out.logits))


@torch.no_grad()
def test_eval_is_deterministic_and_batch_items_independent(model: Cnn14) -> None:
    waveform = 0.1 * torch.randn(3, SAMPLE_RATE)
    first, second = model(waveform), model(waveform)
    assert torch.equal(first.logits, second.logits)
    assert torch.equal(first.embedding, second.embedding)

    for index in range(3):
        alone = model(waveform[index : index + 1])
        torch.testing.assert_close(alone.logits[0], first.logits[index], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(alone.embedding[0], first.embedding[index], rtol=1e-4, atol=1e-4)

    changed = waveform.clone()
    changed[1] = 0.1 * torch.randn(SAMPLE_RATE)
    other = model(changed)
    torch.testing.assert_close(other.logits[0], first.logits[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(other.logits[1], first.logits[1])


def test_bad_waveforms_are_refused(model: Cnn14) -> None:
    with pytest.raises(InvalidInputError, match=r"\[batch, samples\]"):
        model(torch.zeros(SAMPLE_RATE))
    with pytest.raises(InvalidInputError, match="at least 4960"):
        model(torch.zeros(1, 4959))
    with pytest.raises(InvalidInputError, match="float"):
        model(torch.zeros(1, SAMPLE_RATE, dtype=torch.int16))
    assert model.config.min_samples == 4960
    with torch.no_grad():
        assert model(torch.zeros(1, 4960)).logits.shape == (1, 527)


# ---- folder round trip -------------------------------------------------------------------


@torch.no_grad()
def test_save_and_load_pretrained_round_trip(model: Cnn14, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path / "cnn14")
    loaded = Cnn14.from_pretrained(tmp_path / "cnn14")
    assert loaded.config == model.config
    assert not loaded.training
    original, restored = model.state_dict(), loaded.state_dict()
    assert set(original) == set(restored)
    assert all(torch.equal(original[k], restored[k]) for k in original)
    waveform = 0.1 * torch.randn(2, SAMPLE_RATE)
    assert torch.equal(loaded(waveform).logits, model(waveform).logits)


def test_config_is_validated() -> None:
    with pytest.raises(InvalidInputError, match="fmax"):
        Cnn14Config(fmax=9000.0)
    with pytest.raises(InvalidInputError, match="mel_bins"):
        Cnn14Config(mel_bins=16)
