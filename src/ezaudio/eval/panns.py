"""PANNs CNN14 at 16 kHz in plain torch, loading the official ``Cnn14_16k_mAP=0.438.pth``.

PANNs (Kong et al., 2020, "PANNs: Large-Scale Pretrained Audio Neural Networks
for Audio Pattern Recognition") CNN14 is the AudioSet tagger whose embeddings
and class probabilities the EzAudio paper's objective metrics (FD, KL, IS) are
computed from. The original builds its front end with torchlibrosa; here it is
``torch.stft`` and our own Slaney mel filter bank, with no librosa.

Key layout is the official one, so the official state dict (84 entries) loads
strictly. The original stores its front-end constants in the state dict:
``spectrogram_extractor.stft.conv_real.weight`` / ``conv_imag.weight``
[257, 1, 512] (the Hann-windowed DFT basis, used there as 1-D conv kernels) and
``logmel_extractor.melW`` [257, 64] (the mel bank). They are kept here as
frozen parameters (``requires_grad=False``, as in the original, so the
parameter count is the original's 81,033,231). On every load
(:meth:`Cnn14.load_checked`) their values are checked against the ones we
compute (max abs difference <= 1e-5), so a checkpoint whose front end differs
is refused rather than silently run with ours. The STFT then runs through
``torch.stft`` with a periodic Hann window (the conv kernels are not used in
the forward pass); the mel projection uses the stored ``melW``, which the check
has proved equal to :func:`slaney_mel_filterbank`.

Training-time augmentation of the original (SpecAugment, mixup) is left out:
this network is for evaluation. Dropout is kept and is active only in
training mode.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ezaudio.checkpoints.files import load_state_file
from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.nn.component import Component, check_state_dict

# Log compression of the original (torchlibrosa LogmelFilterBank defaults in CNN14):
# 10 log10(max(x, amin)) - 10 log10(max(amin, ref)), with no top_db clipping.
AMIN = 1e-10
REF = 1.0
# Largest |stored - computed| accepted for the stored front-end tensors (fp32 copies).
FRONT_END_TOLERANCE = 1e-5
# Channels of the six conv blocks of the official CNN14 (the default
# ``Cnn14Config.widths``); every block but the last halves time and mel.
CONV_CHANNELS = (64, 128, 256, 512, 1024, 2048)
POOLED_BLOCKS = 5
OFFICIAL_STATE_KEYS = ("model",)

# Slaney's auditory-toolbox mel scale (librosa htk=False): linear below 1 kHz
# (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP  # 15
_SLANEY_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel_slaney(frequencies: np.ndarray) -> np.ndarray:
    """Hz -> Slaney mel: f / (200/3) below 1 kHz, 15 + ln(f / 1000) / (ln 6.4 / 27) above."""
    frequencies = np.asarray(frequencies, dtype=np.float64)
    linear = frequencies / _SLANEY_F_SP
    safe = np.maximum(frequencies, _SLANEY_MIN_LOG_HZ)
    log = _SLANEY_MIN_LOG_MEL + np.log(safe / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return np.where(frequencies >= _SLANEY_MIN_LOG_HZ, log, linear)


def mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    """Slaney mel -> Hz, the inverse of :func:`hz_to_mel_slaney`."""
    mels = np.asarray(mels, dtype=np.float64)
    linear = _SLANEY_F_SP * mels
    log = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (mels - _SLANEY_MIN_LOG_MEL))
    return np.where(mels >= _SLANEY_MIN_LOG_MEL, log, linear)


# Slaney mel filter bank (as librosa.filters.mel(htk=False, norm='slaney')):
# n_mels + 2 points equally spaced in Slaney mel between fmin and fmax give the
# triangle corners f[i - 1], f[i], f[i + 1] in Hz; filter i at FFT bin frequency
# b is max(0, min((b - f[i-1]) / (f[i] - f[i-1]), (f[i+1] - b) / (f[i+1] - f[i])))
# and is scaled by 2 / (f[i+1] - f[i-1]) so every triangle has unit area in Hz.
def slaney_mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """Mel filter bank [n_fft // 2 + 1, n_mels] (float64), Slaney scale and area normalisation.

    The transpose of ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft,
    n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm='slaney')``: multiply
    a power spectrum [..., n_fft // 2 + 1] by it to get mel energies [..., n_mels].
    """
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise InvalidInputError(
            f"mel bank needs 0 <= fmin < fmax <= sample_rate / 2, got fmin {fmin}, fmax {fmax}, "
            f"sample_rate {sample_rate}"
        )
    if n_fft < 2 or n_mels < 1:
        raise InvalidInputError(f"mel bank needs n_fft >= 2 and n_mels >= 1, got {n_fft}, {n_mels}")
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)  # [F]
    mel_points = np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2)
    hz_points = mel_to_hz_slaney(mel_points)  # [M + 2]
    widths = np.diff(hz_points)  # [M + 1]
    ramps = hz_points[:, None] - fft_freqs[None, :]  # [M + 2, F]
    lower = -ramps[:-2] / widths[:-1, None]  # [M, F] rising edge
    upper = ramps[2:] / widths[1:, None]  # [M, F] falling edge
    weights = np.maximum(0.0, np.minimum(lower, upper))  # [M, F]
    weights *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]  # Slaney area normalisation
    return np.ascontiguousarray(weights.T)  # [F, M]


# Hann-windowed DFT basis, the original's STFT conv kernels (torchlibrosa STFT):
# real[k, 0, n] = w[n] cos(2 pi k n / N), imag[k, 0, n] = -w[n] sin(2 pi k n / N)
# with w the periodic Hann window, k = 0 .. N/2 and n = 0 .. N-1.
def windowed_dft_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary STFT kernels [n_fft // 2 + 1, 1, n_fft] (float64), periodic Hann."""
    n = torch.arange(n_fft, dtype=torch.float64)  # [N]
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)  # [K]
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)  # [N]
    # k * n mod N keeps the angle small, so cos/sin stay exact to float64 precision.
    angle = 2.0 * math.pi * torch.remainder(k[:, None] * n[None, :], n_fft) / n_fft  # [K, N]
    real = (torch.cos(angle) * window)[:, None, :]  # [K, 1, N]
    imag = (-torch.sin(angle) * window)[:, None, :]  # [K, 1, N]
    return real, imag


def _frozen(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor.to(torch.float32).contiguous(), requires_grad=False)


def _compute_dtype(waveform: torch.Tensor) -> torch.dtype:
    return torch.float64 if waveform.dtype == torch.float64 else torch.float32


class _Kernel(nn.Module):
    """Holds one stored conv kernel as ``weight`` (the original's ``nn.Conv1d`` without bias)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = _frozen(weight)  # [K, 1, N]


class Stft(nn.Module):
    """Short-time Fourier transform with a periodic Hann window, centred with reflect padding.

    Holds the original's ``conv_real`` / ``conv_imag`` kernels for checkpoint
    compatibility; the transform itself is ``torch.stft``.
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        real, imag = windowed_dft_kernels(n_fft)
        self.conv_real = _Kernel(real)  # weight [n_fft // 2 + 1, 1, n_fft]
        self.conv_imag = _Kernel(imag)  # weight [n_fft // 2 + 1, 1, n_fft]
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32)  # [N]
        self.register_buffer("window", window, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform [B, N] -> complex spectrum [B, n_fft // 2 + 1, 1 + N // hop_length]."""
        dtype = _compute_dtype(waveform)
        return torch.stft(
            waveform.to(dtype),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window.to(dtype),
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )


class Spectrogram(nn.Module):
    """Power spectrogram |STFT|^2: waveform [B, N] -> [B, 1, T, n_fft // 2 + 1]."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.stft = Stft(n_fft, hop_length)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spectrum = self.stft(waveform)  # [B, F, T] complex
        power = torch.view_as_real(spectrum).pow(2).sum(-1)  # [B, F, T] = re^2 + im^2
        return power.transpose(1, 2)[:, None]  # [B, 1, T, F]


class LogMelFilterBank(nn.Module):
    """Mel projection then 10 log10(max(x, 1e-10)) (ref 1.0, no top_db clipping).

    ``melW`` [n_fft // 2 + 1, mel_bins] is the stored mel bank (the original's
    parameter name), initialised with :func:`slaney_mel_filterbank`.
    """

    def __init__(
        self, sample_rate: int, n_fft: int, mel_bins: int, fmin: float, fmax: float
    ) -> None:
        super().__init__()
        bank = slaney_mel_filterbank(sample_rate, n_fft, mel_bins, fmin, fmax)
        self.melW = _frozen(torch.from_numpy(bank))  # [F, M]

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """Power spectrogram [B, 1, T, F] -> log-mel [B, 1, T, M] in dB."""
        mel = torch.matmul(power, self.melW.to(power.dtype))  # [B, 1, T, M]
        # power_to_db: 10 log10(max(x, amin)) - 10 log10(max(amin, ref))
        return 10.0 * torch.log10(mel.clamp(min=AMIN)) - 10.0 * math.log10(max(AMIN, REF))


def _check_waveform(waveform: torch.Tensor, min_samples: int) -> None:
    if not isinstance(waveform, torch.Tensor):
        raise InvalidInputError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
    if waveform.dim() != 2:
        raise InvalidInputError(
            f"waveform must be [batch, samples], got shape {list(waveform.shape)}"
        )
    if not waveform.is_floating_point():
        raise InvalidInputError(f"waveform must be a float tensor, got {waveform.dtype}")
    if waveform.shape[1] < min_samples:
        raise InvalidInputError(
            f"waveform has {waveform.shape[1]} samples; at least {min_samples} are needed"
        )


class LogMelFrontEnd(nn.Module):
    """CNN14's input features: waveform [B, N] at ``sample_rate`` -> log-mel [B, 1, T, mel_bins].

    T = 1 + N // hop_size frames (centred STFT). The state dict keys are those
    of the original's front end (``spectrogram_extractor.stft.conv_real.weight``,
    ``spectrogram_extractor.stft.conv_imag.weight``, ``logmel_extractor.melW``).
    Computes in float32 (float64 for float64 input).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        window_size: int = 512,
        hop_size: int = 160,
        mel_bins: int = 64,
        fmin: float = 50.0,
        fmax: float = 8000.0,
    ) -> None:
        super().__init__()
        self.spectrogram_extractor = Spectrogram(window_size, hop_size)
        self.logmel_extractor = LogMelFilterBank(sample_rate, window_size, mel_bins, fmin, fmax)
        self.min_samples = window_size // 2 + 1  # reflect padding needs N > n_fft / 2

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        _check_waveform(waveform, self.min_samples)
        return self.logmel_extractor(self.spectrogram_extractor(waveform))  # [B, 1, T, M]


@dataclass(frozen=True)
class Cnn14Config:
    """PANNs CNN14 settings; field names follow the official config (plus ``embedding_dim``).

    The defaults are the 16 kHz model ``Cnn14_16k_mAP=0.438.pth``. ``widths``
    are the output channels of the six conv blocks (smaller ones give the small
    taggers trained on a synthetic world); ``class_names`` names the
    ``classes_num`` outputs (empty: AudioSet's 527, or unnamed).
    """

    sample_rate: int = 16000
    window_size: int = 512
    hop_size: int = 160
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    classes_num: int = 527
    embedding_dim: int = 2048
    widths: tuple[int, ...] = CONV_CHANNELS
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("sample_rate", "window_size", "hop_size", "mel_bins", "classes_num"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"Cnn14Config.{name} must be positive")
        if self.embedding_dim < 1:
            raise InvalidInputError("Cnn14Config.embedding_dim must be positive")
        widths = tuple(self.widths) if isinstance(self.widths, (tuple, list)) else ()
        if len(widths) != len(CONV_CHANNELS) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths
        ):
            raise InvalidInputError(
                f"Cnn14Config.widths must be {len(CONV_CHANNELS)} positive integers, "
                f"got {self.widths!r}"
            )
        if not isinstance(self.class_names, (tuple, list)):
            raise InvalidInputError("Cnn14Config.class_names must be a sequence of strings")
        names = tuple(self.class_names)
        if names:
            if not all(isinstance(n, str) and n for n in names):
                raise InvalidInputError("Cnn14Config.class_names must be non-empty strings")
            if len(names) != self.classes_num:
                raise InvalidInputError(
                    f"Cnn14Config.class_names has {len(names)} names but classes_num is "
                    f"{self.classes_num}"
                )
            if len(set(names)) != len(names):
                raise InvalidInputError("Cnn14Config.class_names must be distinct")
        # Lists (from JSON or callers) become tuples so the frozen config stays hashable.
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "class_names", names)
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise InvalidInputError(
                f"Cnn14Config needs 0 <= fmin < fmax <= sample_rate / 2, got fmin {self.fmin}, "
                f"fmax {self.fmax}, sample_rate {self.sample_rate}"
            )
        if self.mel_bins < 2**POOLED_BLOCKS:
            raise InvalidInputError(
                f"Cnn14Config.mel_bins must be at least {2**POOLED_BLOCKS} (five 2x2 poolings)"
            )

    @property
    def min_samples(self) -> int:
        """Shortest waveform the network takes: 32 frames survive the five 2x2 poolings."""
        frames = 2**POOLED_BLOCKS  # T = 1 + N // hop >= 32
        return max((frames - 1) * self.hop_size, self.window_size // 2 + 1)


class Cnn14Output(NamedTuple):
    """CNN14 outputs: ``embedding`` [B, embedding_dim] and AudioSet ``logits`` [B, classes]."""

    embedding: torch.Tensor
    logits: torch.Tensor

    @property
    def probabilities(self) -> torch.Tensor:
        """Per-class sigmoid probabilities [B, classes] (the original's ``clipwise_output``)."""
        return torch.sigmoid(self.logits)


class ConvBlock(nn.Module):
    """(3x3 conv, no bias -> BatchNorm -> ReLU) x 2, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
        """[B, in, T, M] -> [B, out, T // p0, M // p1]."""
        x = F.relu(self.bn1(self.conv1(x)))  # [B, out, T, M]
        x = F.relu(self.bn2(self.conv2(x)))  # [B, out, T, M]
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(Component):
    """PANNs CNN14 (Kong et al., 2020): waveform [B, N] -> 2048-d embedding and 527 AudioSet logits.

    log-mel [B, 1, T, 64] -> BatchNorm over the mel bands -> six conv blocks
    (``config.widths`` channels, 64 ... 2048 by default; 2x2 average pooling in
    the first five) -> mean over mel -> max + mean over time -> fc1 + ReLU (the
    embedding) -> fc_audioset.
    """

    config_class: ClassVar[type] = Cnn14Config

    def __init__(self, config: Cnn14Config) -> None:
        super().__init__(config)
        self.spectrogram_extractor = Spectrogram(config.window_size, config.hop_size)
        self.logmel_extractor = LogMelFilterBank(
            config.sample_rate, config.window_size, config.mel_bins, config.fmin, config.fmax
        )
        self.bn0 = nn.BatchNorm2d(config.mel_bins)
        widths = (1, *config.widths)
        for index in range(len(config.widths)):
            self.add_module(f"conv_block{index + 1}", ConvBlock(widths[index], widths[index + 1]))
        self.fc1 = nn.Linear(config.widths[-1], config.embedding_dim, bias=True)
        self.fc_audioset = nn.Linear(config.embedding_dim, config.classes_num, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The original's init: Xavier-uniform conv and linear weights, zero biases, BN at 1/0."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    @property
    def conv_blocks(self) -> list[ConvBlock]:
        """``conv_block1`` ... ``conv_block6`` in order."""
        return [getattr(self, f"conv_block{i + 1}") for i in range(len(self.config.widths))]

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform [B, N] -> the network's log-mel input [B, 1, T, mel_bins] (float32)."""
        _check_waveform(waveform, self.config.min_samples)
        return self.logmel_extractor(self.spectrogram_extractor(waveform))

    def forward(self, waveform: torch.Tensor) -> Cnn14Output:
        """Waveform [B, N] at ``config.sample_rate`` -> :class:`Cnn14Output`.

        N must be at least ``config.min_samples`` (4960 at 16 kHz, 0.31 s).
        """
        return self.forward_features(self.log_mel(waveform))

    def forward_features(self, log_mel: torch.Tensor) -> Cnn14Output:
        """Log-mel [B, 1, T, mel_bins] (from :meth:`log_mel`) -> :class:`Cnn14Output`.

        The network after its front end, for callers that change the log-mel first
        (training-time augmentation).
        """
        x = log_mel.to(self.bn0.weight.dtype)  # [B, 1, T, M]
        # BatchNorm over the mel bands: move mel to the channel axis and back.
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # [B, 1, T, M]
        for index, block in enumerate(self.conv_blocks):
            pool = (2, 2) if index < POOLED_BLOCKS else (1, 1)
            x = block(x, pool_size=pool)  # [B, C_i, T / 2^i, M / 2^i]
            x = F.dropout(x, p=0.2, training=self.training)
        x = x.mean(dim=3)  # [B, widths[-1], T']
        x = x.amax(dim=2) + x.mean(dim=2)  # [B, widths[-1]]
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))  # [B, embedding_dim]
        embedding = F.dropout(x, p=0.5, training=self.training)
        # As in the original, the classifier reads fc1's output before the embedding dropout.
        logits = self.fc_audioset(x)  # [B, classes]
        return Cnn14Output(embedding=embedding, logits=logits)

    def load_checked(self, state: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
        """Load ``state`` strictly, and refuse stored front-end tensors that differ from ours.

        Raises :class:`CheckpointError` naming any missing, unexpected or
        mis-shaped key, or a front-end tensor (STFT kernels, ``melW``) further
        than 1e-5 from the values computed here.
        """
        check_state_dict(self, state, where)
        config = self.config
        real, imag = windowed_dft_kernels(config.window_size)  # [K, 1, N] float64 each
        bank = slaney_mel_filterbank(
            config.sample_rate, config.window_size, config.mel_bins, config.fmin, config.fmax
        )  # [K, M] float64
        expected = {
            "spectrogram_extractor.stft.conv_real.weight": real,
            "spectrogram_extractor.stft.conv_imag.weight": imag,
            "logmel_extractor.melW": torch.from_numpy(bank),
        }
        for key, value in expected.items():
            stored = state[key]
            if not stored.is_floating_point():
                raise CheckpointError(f"{where}: {key} must be floating point, got {stored.dtype}")
            # fp32 copies must agree to 1e-5; half precision copies to their own rounding.
            tolerance = max(
                FRONT_END_TOLERANCE, 2 * torch.finfo(stored.dtype).eps * float(value.abs().max())
            )
            error = float((stored.detach().cpu().to(torch.float64) - value).abs().max())
            if not error <= tolerance:
                raise CheckpointError(
                    f"{where}: {key} differs from the CNN14 front end this config computes "
                    f"(max abs difference {error:.3g} > {tolerance:.3g})"
                )
        super().load_checked(state, where)

    @classmethod
    def from_official(cls, path: str | os.PathLike[str]) -> Cnn14:
        """Load the official PANNs ``Cnn14_16k_mAP=0.438.pth`` strictly, in eval mode.

        The file holds ``{'model': state_dict, 'iteration': n}`` (a flat state
        dict or a ``.safetensors`` file with the same keys is also read). Any
        missing, unexpected or mis-shaped key raises :class:`CheckpointError`.
        """
        state = load_state_file(path, *OFFICIAL_STATE_KEYS)
        model = cls(Cnn14Config())
        model.load_checked(state, where=str(path))
        return model.eval()
